"""End-of-job scores, so every job of a sweep is compared on the SAME people (``final_eval`` in
``conf/train.yaml``).

* ``heldout``: one synthetic set made from ``conf/generate.yaml`` with fixed overrides (its own seed), the
  same for every job whatever the job sweeps; made once (reused by its dataset id); errors per pose.
* ``suite``: the pose-invariance suite (median |z/true - 1| per pose and over the non-standing poses, 1 sigma
  coverage).
* ``kitti`` / ``phone``: the real dev sets when they are present (``../shared/data/real``): KITTI dev
  pedestrians (keypoints) and the phone frames (YOLO on the images).

Every set goes through ``dp-eval``'s own :func:`depth_pose.evaluate.evaluate` on the job's best checkpoint;
the scores come back as flat ``final/...`` numbers for the trackers' summaries
(:func:`depth_pose.tracking.log_summary`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from depth_pose.env import config_dir
from depth_pose.evaluate import evaluate
from generation.dataset import default_out_dir
from generation.pipeline import ensure_dataset

log = logging.getLogger(__name__)


@contextlib.contextmanager
def hydra_ready() -> Iterator[None]:
    """Hydra's compose API usable here: inside a running app it is already; else for this block."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield


def _compose(name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose

    return compose(config_name=name, overrides=overrides)


def _finite(d: dict[str, float | None]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if v is not None and math.isfinite(float(v))}


def people_scores(metrics: dict, prefix: str) -> dict[str, float]:
    """ALE, median relative error, bias and 1 sigma coverage of the model on a people set."""
    m = metrics["methods"]["model"]
    keys = ("ale_m", "median_rel", "bias_rel", "cov_1sigma")
    return _finite({f"{prefix}/{k}": m.get(k) for k in keys} | {f"{prefix}/n": m.get("n")})


def suite_scores(metrics: dict, prefix: str = "final/suite") -> dict[str, float]:
    """The invariance suite: median per pose, over the non-standing poses, and 1 sigma coverage."""
    out = {f"{prefix}/median/{pose}": row["model"]["median"] for pose, row in metrics["per_pose"].items()}
    out[f"{prefix}/median_non_standing"] = metrics["overall_non_standing"]["model_median"]
    out[f"{prefix}/cov_1sigma"] = metrics["coverage_1sigma"]
    return _finite(out)


def enabled(value: bool | str) -> bool:
    """``final_eval.enabled``: true/false, or ``auto`` = in a multirun (a sweep, where jobs are compared)."""
    if isinstance(value, bool):
        return value
    if str(value).lower() != "auto":
        from depth_pose.errors import InputError

        raise InputError(f"final_eval.enabled must be true, false or auto, got {value!r}")
    from depth_pose.tracking import hydra_job

    return hydra_job()[1] is not None


def heldout_dir(cfg: DictConfig) -> Path:
    """The sweep-wide held-out set (generated on first use, reused by its dataset id)."""
    fe = cfg.final_eval
    gen = _compose("generate", [*fe.heldout.overrides, f"paths.root_dir={cfg.paths.root_dir}"])
    gen.out_dir = str(default_out_dir(cfg.paths.data_dir, gen))
    gen.progress = bool(cfg.get("progress", True))
    return Path(ensure_dataset(gen))


def final_scores(cfg: DictConfig, ckpt: str | Path, out_dir: Path) -> dict[str, float]:
    """The ``final/...`` scores of the model at ``ckpt`` on every set ``cfg.final_eval`` names (writing each
    set's predictions and report under ``out_dir``)."""
    fe = cfg.get("final_eval")
    if not fe or not enabled(fe.get("enabled", False)):
        return {}
    common = [f"ckpt={ckpt}", "plots=false", "progress=false", f"paths.root_dir={cfg.paths.root_dir}"]
    scores: dict[str, float] = {}
    with hydra_ready():
        if fe.get("heldout"):
            d = heldout_dir(cfg)
            rows = int(fe.heldout.max_rows)
            m = evaluate(
                _compose(
                    "eval",
                    [*common, f"dataset={d}", f"dataset_max_rows={rows}", f"out={out_dir}/heldout/p.jsonl"],
                )
            )
            scores |= people_scores(m, "final/heldout")
            by_pose = m.get("by_group", {}).get("pose", {}).get("model", {})
            scores |= _finite({f"final/heldout/median/{g}": r["median_rel"] for g, r in by_pose.items()})
        if fe.get("suite"):
            m = evaluate(
                _compose("eval", [*common, "suite=invariance", f"out={out_dir}/suite/samples.jsonl"])
            )
            scores |= suite_scores(m)
        real = Path(str(fe.real_data_dir))
        kitti = real / "kitti_pedestrians_dev.jsonl"
        if fe.get("kitti") and kitti.is_file():
            m = evaluate(_compose("eval", [*common, f"keypoints={kitti}", f"out={out_dir}/kitti/p.jsonl"]))
            scores |= people_scores(m, "final/kitti")
        phone = real / "phone_3to6m"
        if fe.get("phone") and (phone / "gt.json").is_file():
            m = evaluate(_compose("eval", [*common, f"images={phone}", f"out={out_dir}/phone/p.jsonl"]))
            scores |= people_scores(m, "final/phone")
    log.info("final scores: %s", {k: round(v, 4) for k, v in scores.items()})
    return scores
