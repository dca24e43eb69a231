"""Training entry: ``train(cfg) -> (metrics, objects)`` (Hydra config ``conf/train.yaml``).

Data: ``data.dir`` if set, else a synthetic set generated (or reused) from the generation groups at the top
level of the config (body, pose_sampling, camera, noise, render) + ``data.num_samples``,
``data.samples_per_pose``, ``data.gen_seed`` via :func:`generation.pipeline.ensure_dataset`, so
``dp-train -m pose_sampling=uniform,normal,hybrid`` trains one model per sampling strategy.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from depth_pose.errors import InputError
from depth_pose.features import from_config as features_from_config
from depth_pose.fileio import check_outputs, real_path, refuse_non_directory
from depth_pose.final_eval import final_scores
from depth_pose.shards import MANIFEST, load_manifest
from depth_pose.tracking import close_loggers, fill_identity, flat_config, git_commit, log_summary
from generation.config import with_defaults
from generation.dataset import default_out_dir
from generation.pipeline import ensure_dataset

log = logging.getLogger(__name__)

GEN_GROUPS = ("body", "pose_sampling", "camera", "noise", "render", "project", "framing_cut")
# data.* keys that configure generation rather than the datamodule.
GEN_DATA_KEYS = {
    "num_samples": "num_samples",
    "samples_per_pose": "samples_per_pose",
    "gen_seed": "seed",
    "gen_shard_size": "shard_size",
    "gen_batch_size": "batch_size",
    "gen_device": "device",
}
DM_EXCLUDE = set(GEN_DATA_KEYS) | {"dir", "gen_out_dir"}


def generation_config(cfg: DictConfig) -> DictConfig:
    """The ``dp-generate`` config described by a train config (generation groups + ``data.*`` keys); every
    other generation setting keeps its ``conf/generate.yaml`` default
    (:func:`generation.config.with_defaults`)."""
    gen: dict[str, Any] = {}
    for g in GEN_GROUPS:
        if g in cfg:
            gen[g] = OmegaConf.to_container(cfg[g], resolve=True)
    for src, dst in GEN_DATA_KEYS.items():
        if src in cfg.data and cfg.data[src] is not None:
            gen[dst] = cfg.data[src]
    gen.update(
        {
            "overwrite": False,
            "progress": bool(cfg.get("progress", True)),
            "contact_sheet": False,
            "paths": OmegaConf.to_container(cfg.paths, resolve=True),
        }
    )
    gen_cfg = with_defaults(gen)
    out_dir = cfg.data.get("gen_out_dir")
    if out_dir is None:
        out_dir = str(default_out_dir(cfg.paths.data_dir, gen_cfg))
    gen_cfg.out_dir = str(out_dir)
    return gen_cfg


class DataDirError(InputError, FileNotFoundError):
    """``data.dir`` is not a readable depth_pose dataset."""


class CheckpointPathError(InputError, FileNotFoundError):
    """``ckpt_path`` names no checkpoint."""


def resolve_data_dir(cfg: DictConfig) -> tuple[Path, str]:
    """Dataset directory (generating it if needed) and its id (manifest ``dataset_id`` or the path)."""
    if cfg.data.get("dir"):
        path = Path(cfg.data.dir)
        if not path.exists():
            raise DataDirError(f"data.dir={path}: no such folder (a dataset folder of dp-generate)")
        if not path.is_dir():
            raise DataDirError(
                f"data.dir={path} is a file, not a dataset folder (Parquet shards + manifest.json from "
                "dp-generate)"
            )
    else:
        path = Path(ensure_dataset(generation_config(cfg)))
    try:
        manifest = load_manifest(path)
    except (OSError, ValueError) as e:
        raise DataDirError(f"data.dir={path}: {e}") from e
    return path, str(manifest.get("dataset_id", path.name))


def check_output_dirs(cfg: DictConfig, data_dir: Path) -> None:
    """``paths.output_dir`` (logs, final scores), every callback's ``dirpath`` (checkpoints) and logger's
    ``save_dir`` must be folders (or not there yet) that neither are, lie inside nor contain the dataset or
    ``data.extra_dir``: a checkpoint or a log is never written into a set.
    :class:`~depth_pose.fileio.OutputPathError` (exit 2) before anything is built otherwise."""
    outputs = [("paths.output_dir", cfg.paths.output_dir)]
    for group, key in (("callbacks", "dirpath"), ("logger", "save_dir")):  # every checkpoint and log folder
        for name, node in (cfg.get(group) or {}).items():
            path = node.get(key) if isinstance(node, DictConfig | dict) else None
            if path:
                outputs.append((f"{group}.{name}.{key}", path))
    inputs = [("data.dir" if cfg.data.get("dir") else "dataset", data_dir)]
    if cfg.data.get("extra_dir"):
        extra = Path(str(cfg.data.extra_dir)).expanduser()
        if not (extra / MANIFEST).is_file():
            raise InputError(f"data.extra_dir='{extra}' holds no {MANIFEST}: not a dataset folder")
        if real_path(extra) == real_path(data_dir):
            raise InputError(f"data.extra_dir='{extra}' is data.dir: validation rows would be trained on")
        inputs.append(("data.extra_dir", extra))
    for name, path in outputs:
        refuse_non_directory(str(path), name)
        check_outputs([(name, str(path))], inputs)


# Entries of a run's config that do not change what a resumed run computes, as fnmatch patterns over the
# flattened keys: where things go and what is logged, how long it runs (``trainer.max_epochs``, and the
# scheduler horizon interpolated from it: the checkpoint restores the scheduler's own state), the hardware,
# the end-of-run extras, and how the set is made or found (the set itself is compared by its dataset id).
RESUME_IGNORED = (
    "paths.*",
    "logger",
    "logger.*",
    "callbacks.*.dirpath",
    "progress",
    "ckpt_path",
    "test",
    "final_eval.*",
    "optimized_metric",
    "task_name",
    "trainer.max_epochs",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "model.scheduler.T_max",
    "data.dir",
    "data.gen_out_dir",
    "data.verify",
    "data.device",
    "data.eval_batch_size",
    "data.memory_margin",
    *(f"data.{k}" for k in GEN_DATA_KEYS),
    *GEN_GROUPS,
    *(f"{g}.*" for g in GEN_GROUPS),
)


def check_config(cfg: DictConfig) -> None:
    """Values ``train`` cannot run with, refused (:class:`~depth_pose.errors.InputError`, exit 2) before
    anything is read or built: ``trainer.max_epochs`` below 1 (nothing would be trained), ``vis_threshold``
    outside [0, 1], batch sizes below 1, a learning rate that is not a positive number. The model's own
    arguments (widths, dropout, ...) are checked where it is built (:func:`build`)."""
    epochs = cfg.trainer.get("max_epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"trainer.max_epochs={epochs} must be an integer >= 1 (epochs to train)")
    vis = cfg.get("vis_threshold")
    if vis is not None and (isinstance(vis, bool) or not isinstance(vis, int | float) or not 0 <= vis <= 1):
        raise InputError(f"vis_threshold={vis} must be a number in [0, 1] (keypoint confidence)")
    for key in ("batch_size", "eval_batch_size"):
        v = (cfg.get("data") or {}).get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise InputError(f"data.{key}={v!r} must be an integer >= 1")
    opt = (cfg.get("model") or {}).get("optimizer") or {}
    lr = opt.get("lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf):
        raise InputError(f"model.optimizer.lr={lr!r} must be a positive number")


def run_identity(resolved: dict[str, Any]) -> dict[str, Any]:
    """The flattened entries of a resolved run config that a resumed run must share (all but
    :data:`RESUME_IGNORED`), as the JSON a checkpoint stores them in."""
    flat = flat_config(json.loads(json.dumps(resolved, default=str)))
    return {k: v for k, v in flat.items() if not any(fnmatch(k, pat) for pat in RESUME_IGNORED)}


def resume_mismatch(stored: dict[str, Any] | None, resolved: dict[str, Any], data_id: str) -> str | None:
    """What makes a checkpoint's run (its ``depth_pose`` entry: config + data id) another run than this one
    (``resolved`` config on the set ``data_id``); None when it is the same run (or the checkpoint predates the
    entry). Keys the stored config lacks (added to the code later) are not held against it."""
    if not isinstance(stored, dict):
        return None
    theirs_id = stored.get("data_id")
    if theirs_id is not None and str(theirs_id) != str(data_id):
        return f"dataset {theirs_id} != {data_id}"
    if not isinstance(stored.get("config"), dict):
        return None
    theirs, ours = run_identity(stored["config"]), run_identity(resolved)
    diff = [f"{k}: {theirs[k]!r} -> {ours.get(k)!r}" for k in sorted(theirs) if theirs[k] != ours.get(k)]
    if not diff:
        return None
    more = f" (+{len(diff) - 4} more)" if len(diff) > 4 else ""
    return "config differs in " + ", ".join(diff[:4]) + more


def read_checkpoint_run(path: Path) -> dict[str, Any] | None:
    """The ``depth_pose`` entry (config + data id) of the Lightning checkpoint ``path``;
    :class:`CheckpointPathError` when the file is not one."""
    import torch

    if not path.is_file():
        what = "a folder" if path.is_dir() else "not there"
        raise CheckpointPathError(f"ckpt_path={path} is {what}; give a Lightning checkpoint (.ckpt) or last")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001  (any failure to read it means: not a usable checkpoint)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if isinstance(e, pickle.UnpicklingError):  # never torch's advice to unpickle it after all
            first = "it holds pickled Python objects beyond tensors and plain values, never loaded"
        raise CheckpointPathError(
            f"ckpt_path={path} is not a readable Lightning checkpoint ({type(e).__name__}: {first})"
        ) from e
    if not isinstance(ck, dict) or "state_dict" not in ck or "loops" not in ck:
        raise CheckpointPathError(
            f"ckpt_path={path} is not a Lightning training checkpoint (no state_dict/loops; an exported "
            ".safetensors model cannot be resumed)"
        )
    run = ck.get("depth_pose")
    return run if isinstance(run, dict) else None


def resolve_ckpt_path(cfg: DictConfig, data_id: str, resolved: dict[str, Any] | None = None) -> str | None:
    """``ckpt_path``: null, a checkpoint file, or ``last`` = the newest ``last.ckpt`` of a run of this config
    on this set (this output dir's first, then any train run under ``paths.log_dir``).

    A checkpoint of another run (different dataset id, or a config that differs in anything but
    :data:`RESUME_IGNORED`) is never resumed: :class:`CheckpointPathError` (exit 2) naming what differs; so
    is a file that is not a Lightning checkpoint."""
    ck = cfg.get("ckpt_path")
    if not ck:
        return None
    resolved = resolved_config(cfg) if resolved is None else resolved
    if ck != "last":
        path = Path(str(ck))
        why = resume_mismatch(read_checkpoint_run(path), resolved, data_id)
        if why:
            raise CheckpointPathError(f"ckpt_path={path} is a checkpoint of another run ({why})")
        return str(path)
    cbs = cfg.get("callbacks") or {}
    ckpt_dir = (cbs.get("last_checkpoint") or cbs.get("model_checkpoint") or {}).get("dirpath")
    here = Path(str(ckpt_dir or Path(cfg.paths.output_dir) / "checkpoints")) / "last.ckpt"
    runs = sorted(
        Path(cfg.paths.log_dir).glob("train*/**/checkpoints/last.ckpt"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    candidates = [here] if here.is_file() else []
    candidates += [p for p in runs if not (here.is_file() and p.resolve() == here.resolve())]
    refused: list[tuple[Path, str]] = []
    for path in candidates:
        try:
            why = resume_mismatch(read_checkpoint_run(path), resolved, data_id)
        except CheckpointPathError as e:
            why = str(e)
        if why is None:
            log.info("resuming from %s", path)
            return str(path)
        refused.append((path, why))
    if not refused:
        raise CheckpointPathError(
            f"ckpt_path=last but no last.ckpt under {cfg.paths.log_dir}; nothing to resume"
        )
    path, why = refused[0]
    raise CheckpointPathError(
        f"ckpt_path=last: none of the {len(refused)} last.ckpt under {cfg.paths.log_dir} is a run of this "
        f"config and dataset (newest, {path}: {why}); start a new run (ckpt_path=null) or name a checkpoint"
    )


def build(cfg: DictConfig, data_dir: Path | None = None) -> dict[str, Any]:
    """Instantiate datamodule, model, callbacks, loggers and trainer from ``cfg``."""
    feat_norm, feat_aug = features_from_config(OmegaConf.to_container(cfg.features, resolve=True))
    dm_kwargs = {
        k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in DM_EXCLUDE
    }
    datamodule = hydra.utils.instantiate(dm_kwargs, dir=str(data_dir) if data_dir is not None else None)
    try:
        model = hydra.utils.instantiate(
            cfg.model, features=feat_norm.to_dict(), augment=vars(feat_aug), _recursive_=False
        )
    except InstantiationException as e:  # a bad model value (width 0, dropout 1.5, ...): one line, exit 2
        cause = e.__cause__ if isinstance(e.__cause__, ValueError | TypeError) else None
        if cause is None:
            raise
        raise InputError(f"bad model config: {cause}") from e
    callbacks = [
        hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c
    ]
    loggers = [hydra.utils.instantiate(c) for c in fill_identity(cfg).values() if c and "_target_" in c]
    if not loggers:  # logger=none: a learning-rate monitor has nowhere to write (Lightning refuses it)
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return {
        "datamodule": datamodule,
        "model": model,
        "trainer": trainer,
        "callbacks": callbacks,
        "loggers": loggers,
    }


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as plain resolved containers (without Hydra's own node)."""
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
        if k != "hydra"
    }


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit (and optionally test) a depth model, score it on ``final_eval``'s sets; returns (metrics, objects).

    ``metrics``: the final ``val/*`` (and ``test/*``) values as floats, plus ``best_val`` (best monitored
    score of the checkpoint callback) and the ``final/*`` scores. ``objects``: trainer, model, datamodule,
    data_dir, data_id, best_ckpt. Every logger is closed when this returns or raises (one tracking run per
    job).
    """
    check_config(cfg)
    L.seed_everything(int(cfg.get("seed", 0)), workers=False)
    data_dir, data_id = resolve_data_dir(cfg)
    check_output_dirs(cfg, data_dir)
    ckpt_path = resolve_ckpt_path(cfg, data_id)  # before any logger run exists: a refusal leaves nothing
    objs = build(cfg, data_dir)
    ok = False
    try:
        metrics = fit(cfg, objs, data_dir, data_id, ckpt_path)
        final = (
            final_scores(cfg, objs["best_ckpt"], Path(cfg.paths.output_dir) / "final_eval")
            if objs["best_ckpt"]
            else {}
        )
        log_summary(
            objs["loggers"], final | {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
        )
        metrics |= final
        ok = True
    finally:
        close_loggers(objs["loggers"], ok)
    return metrics, objs


def fit(
    cfg: DictConfig, objs: dict[str, Any], data_dir: Path, data_id: str, ckpt_path: str | None = None
) -> dict[str, float]:
    """``trainer.fit`` (resuming ``ckpt_path``, a checkpoint :func:`resolve_ckpt_path` accepted), then
    ``trainer.test`` when ``cfg.test``; the metrics."""
    model, trainer, dm = objs["model"], objs["trainer"], objs["datamodule"]
    resolved = resolved_config(cfg)
    model.augment_seed = int(cfg.get("seed", 0))  # augmentation draws: a function of (seed, epoch, batch)
    model.extra_checkpoint = json.loads(
        json.dumps({"config": resolved, "data_id": data_id, "data_dir": str(data_dir)}, default=str)
    )
    run_config = flat_config(resolved) | {
        "data_id": data_id,
        "data_dir": str(data_dir),
        "git_commit": git_commit(),
    }
    for lg in objs["loggers"]:
        try:
            lg.log_hyperparams(run_config)
        except Exception as err:  # a logger that cannot store the config must not stop training
            log.warning("logger %s could not store the config: %s", type(lg).__name__, err)
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if trainer.interrupted:  # Lightning's graceful shutdown on Ctrl-C ends in exit(1): say what it was
            raise KeyboardInterrupt from None
        raise
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
    ckpt_cb = trainer.checkpoint_callback
    best = getattr(ckpt_cb, "best_model_path", "") if ckpt_cb is not None else ""
    if ckpt_cb is not None and ckpt_cb.best_model_score is not None:
        metrics["best_val"] = float(ckpt_cb.best_model_score)
    if cfg.get("test", False):
        res = (
            trainer.test(model, datamodule=dm, ckpt_path=best or None, weights_only=True)
            if best
            else trainer.test(model, datamodule=dm)
        )
        metrics.update({k: float(v) for k, v in (res[0] if res else {}).items()})
    objs.update({"data_dir": data_dir, "data_id": data_id, "best_ckpt": best})
    return metrics
