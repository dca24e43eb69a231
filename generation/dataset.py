"""Dataset identity, layout and resume: the id of the data a config determines, the per-shard seeds and row
layout, and the output folder's manifest (new, resumed, or refused when it holds a different set).

* :func:`dataset_id` is a short hash of everything that determines the data; ``${dp_dataset_id:}`` in a config
  (``conf/generate.yaml``'s ``out_dir``) resolves to it.
* Shard ``i`` is generated from its own generator seeded by :func:`shard_seed` ``(seed, i)``: a killed run
  resumes at the first missing shard and yields exactly the data of an uninterrupted run.
* :func:`shard_span`: ``shard_range=[a, b]`` makes a run write only shards ``a..b-1`` (the same bytes as those
  shards of a one-go run); :mod:`generation.merge` joins such parts into one set.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from depth_pose import shards
from depth_pose.schema import ALL_COLS
from generation.bank import body_id_config
from generation.config import GenerationConfigError, resolved, with_defaults

# Config entries that determine the data (hashed into the dataset id and compared on resume).
ID_KEYS = (
    "body",
    "pose_sampling",
    "camera",
    "noise",
    "render",
    "project",
    "num_samples",
    "samples_per_pose",
    "seed",
    "shard_size",
)
# Bumped whenever the generator's code draws different data for the same config (RNG layout, formulas), so a
# set made by older code is never reused as if it were this code's (it is part of the dataset id).
# 2: planar noise draws (2, B, 17), sqrt visible confidences (2026-11-25).
# 3: joint-major planar layout (noise draws (2, 17, B), (8, B)); dense occluder branch (2026-11-26).
# (noise.hip_shift, default 0, came later without a bump: the data of every existing config is unchanged.)
GENERATOR_VERSION = 3
GENERATED_FILES = (shards.MANIFEST, "contact_sheet.png")


def id_payload(cfg: DictConfig) -> dict:
    """The data-determining entries of ``cfg`` (:data:`ID_KEYS`, :data:`GENERATOR_VERSION`, a
    non-CPU device)."""
    cfg = with_defaults(cfg)
    payload = {k: resolved(cfg[k]) if k in cfg else None for k in ID_KEYS}
    payload["body"] = body_id_config(payload["body"])  # body=bank: the config its bank was made from
    if isinstance(payload["render"], dict) and payload["render"].get("shard_range") is not None:
        payload["render"] = {**payload["render"], "shard_range": None}  # which shards a run writes: no data
    payload["generator_version"] = GENERATOR_VERSION
    if str(cfg.get("device", "cpu")) != "cpu":  # a different RNG stream: a different set
        payload["device"] = str(cfg.device)
    return payload


def dataset_id(cfg: DictConfig | dict) -> str:
    """Short hash (12 hex) of the data-determining config: body, pose_sampling, camera, noise, render,
    project, num_samples, samples_per_pose, seed, shard_size (and device when not cpu)
    and :data:`GENERATOR_VERSION`."""
    blob = json.dumps(id_payload(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def default_out_dir(data_dir: str | Path, cfg: DictConfig | dict) -> Path:
    """Where a set is kept by default: ``<data_dir>/synthetic/<dataset id>`` (as ``conf/generate.yaml``'s
    ``out_dir``), so every command that makes or reuses the same data finds the same folder."""
    return Path(data_dir) / "synthetic" / dataset_id(cfg)


def shard_seed(seed: int, index: int) -> int:
    """Deterministic 63-bit seed of shard ``index`` of a set with ``seed``."""
    return (
        int.from_bytes(hashlib.sha256(f"depth_pose:{int(seed)}:{int(index)}".encode()).digest()[:8], "little")
        >> 1
    )


def plan(num_samples: int, shard_size: int, samples_per_pose: int) -> list[tuple[int, int, int]]:
    """(rows, row_offset, pose_offset) of each shard."""
    n_shards = math.ceil(num_samples / shard_size)
    poses_per_shard = -(-shard_size // samples_per_pose)
    return [
        (min(shard_size, num_samples - i * shard_size), i * shard_size, i * poses_per_shard)
        for i in range(n_shards)
    ]


def shard_span(cfg: DictConfig, n_shards: int) -> tuple[int, int]:
    """``(a, b)``: the shards ``a..b-1`` this run writes; ``shard_range`` (or the render path's
    ``render.shard_range``) ``[a, b]``, ``b`` clipped to ``n_shards``; all shards when unset."""
    top = cfg.get("shard_range")
    render = cfg.get("render")
    inner = render.get("shard_range") if render is not None else None
    if top is not None and inner is not None and list(top) != list(inner):
        raise GenerationConfigError(f"shard_range={list(top)} and render.shard_range={list(inner)} differ")
    span = top if top is not None else inner
    if span is None:
        return 0, n_shards
    values = list(span) if OmegaConf.is_list(span) or isinstance(span, list | tuple) else [span]
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise GenerationConfigError(f"shard_range must be [a, b] (two integers), got {values!r}")
    a, b = values
    if not 0 <= a < b:
        raise GenerationConfigError(f"shard_range=[{a}, {b}] needs 0 <= a < b")
    if a >= n_shards:
        raise GenerationConfigError(f"shard_range=[{a}, {b}] starts past the last of {n_shards} shards")
    return a, min(b, n_shards)


def new_manifest(cfg: DictConfig, did: str, n_shards: int) -> dict:
    """A manifest for a new, still empty set (``complete`` false, no shards)."""
    return {
        "format": shards.FORMAT,
        "dataset_id": did,
        "seed": int(cfg.seed),
        "num_samples": int(cfg.num_samples),
        "samples_per_pose": int(cfg.samples_per_pose),
        "shard_size": int(cfg.shard_size),
        "num_shards": n_shards,
        "source": "analytic",
        "device": str(cfg.device),
        "columns": list(ALL_COLS),
        "id_config": id_payload(cfg),
        "config": resolved(cfg),
        "complete": False,
        "shards": [],
    }


def _clear(out_dir: Path) -> None:
    """Remove the files a previous generation wrote (shards, manifest, contact sheet) and nothing else."""
    for p in out_dir.glob(shards.SHARD_GLOB):
        p.unlink()
    for name in GENERATED_FILES:
        (out_dir / name).unlink(missing_ok=True)


def prepare_out_dir(cfg: DictConfig, out_dir: Path, did: str, n_shards: int) -> dict:
    """Existing manifest to resume, or a fresh one; refuses a directory holding a different set."""
    overwrite = bool(cfg.overwrite)
    if (out_dir / shards.MANIFEST).exists():
        try:
            old = shards.load_manifest(out_dir)
        except (ValueError, json.JSONDecodeError) as e:
            if not overwrite:
                raise GenerationConfigError(
                    f"{out_dir}: unreadable manifest ({e}); pass overwrite=true"
                ) from e
            old = None
        if old is not None and not overwrite:
            if old.get("dataset_id") != did:
                theirs, ours = old.get("id_config", {}), id_payload(cfg)
                diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
                raise GenerationConfigError(
                    f"{out_dir} already holds a different dataset "
                    f"(dataset_id {old.get('dataset_id')} != {did}; "
                    f"differs in: {', '.join(diff) or '?'}). Use another out_dir or overwrite=true."
                )
            for tmp in out_dir.glob(".*.tmp"):  # half-written files of a killed run
                tmp.unlink()
            return old
        _clear(out_dir)
    elif any(out_dir.glob(shards.SHARD_GLOB)):
        if not overwrite:
            raise GenerationConfigError(
                f"{out_dir} has shards but no manifest; pass overwrite=true to replace them"
            )
        _clear(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for tmp in out_dir.glob(".*.tmp"):  # half-written files of a killed run
        tmp.unlink()
    manifest = new_manifest(cfg, did, n_shards)
    shards.write_manifest(out_dir, manifest)
    return manifest


def _dataset_id_resolver(*, _root_: DictConfig) -> str:
    return dataset_id(_root_)


if not OmegaConf.has_resolver("dp_dataset_id"):
    OmegaConf.register_new_resolver("dp_dataset_id", _dataset_id_resolver)
