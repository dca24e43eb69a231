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
from generation.config import (
    RENDER_TRUST_KEYS,
    GenerationConfigError,
    framing_cut_share,
    pose_device,
    resolved,
    with_defaults,
)
from generation.pose import pose_files_digest

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
# Options that came later, off by default and then drawing nothing: in the id only when on, so every set made
# before them keeps its id. ``framing_cut`` (top level, when its share > 0) and the noise model's border
# behaviour (these keys, when ``border_clamp_prob`` > 0).
BORDER_NOISE_KEYS = ("border_clamp_prob", "border_clamp_decay", "border_conf_min", "border_conf_max")
# Later still, in the id only when the logistic shape is on (border_clamp_midpoint > 0).
BORDER_LOGISTIC_KEYS = ("border_clamp_midpoint", "border_clamp_width")
GENERATED_FILES = (shards.MANIFEST, "contact_sheet.png")


def id_payload(cfg: DictConfig) -> dict:
    """The data-determining entries of ``cfg`` (:data:`ID_KEYS`, :data:`GENERATOR_VERSION`, a
    non-CPU device)."""
    cfg = with_defaults(cfg)
    payload = {k: resolved(cfg[k]) if k in cfg else None for k in ID_KEYS}
    payload["body"] = body_id_config(payload["body"])  # body=bank: the config its bank was made from
    if isinstance(payload["render"], dict) and payload["render"].get("shard_range") is not None:
        payload["render"] = {**payload["render"], "shard_range": None}  # which shards a run writes: no data
    if isinstance(payload["render"], dict):  # how the user vouches for the detector's weights: no data
        payload["render"] = {k: v for k, v in payload["render"].items() if k not in RENDER_TRUST_KEYS}
    noise = payload["noise"]
    if isinstance(noise, dict) and not noise.get("border_clamp_prob"):  # the border behaviour, off: no data
        payload["noise"] = noise = {k: v for k, v in noise.items() if k not in BORDER_NOISE_KEYS}
    if isinstance(noise, dict) and not noise.get("border_clamp_midpoint"):  # exponential (or no) border shape
        payload["noise"] = {k: v for k, v in noise.items() if k not in BORDER_LOGISTIC_KEYS}
    if framing_cut_share(cfg) > 0:  # people cut by the frame: in the id only when on (other sets keep theirs)
        payload["framing_cut"] = resolved(cfg.framing_cut)
    # the preset and joint-limit files the pose sampler reads (issue 19: new presets change the default data)
    payload["pose_files"] = pose_files_digest(payload["pose_sampling"])
    payload["generator_version"] = GENERATOR_VERSION
    if str(cfg.get("device", "cpu")) != "cpu":  # a different RNG stream: a different set
        payload["device"] = str(cfg.device)
        if pose_device(cfg) == "device":  # poses drawn there too: another stream again
            payload["pose_device"] = "device"
    return payload


def dataset_id(cfg: DictConfig | dict) -> str:
    """Short hash (12 hex) of the data-determining config: body, pose_sampling, camera, noise, render,
    project, num_samples, samples_per_pose, seed, shard_size (and device and pose_device when not cpu), the
    sha256 of the preset and joint-limit files the pose sampler reads and :data:`GENERATOR_VERSION`. A GPU
    set's numbers may also depend on the GPU model (CUDA's random kernels size their grids by it)."""
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


# Sizes of a request, checked before anything is drawn or written (measured on the analytic path, default
# groups: shards hold ~375 B/row in Parquet; one shard of 200k rows in 65k-row batches peaks ~460 MB).
PARQUET_BYTES_PER_ROW = 400  # disk per written row
PARQUET_BYTES_PER_SHARD = 32 * 1024  # disk per shard file (footer, column metadata)
SHARD_BYTES_PER_ROW = 1_600  # host memory per row of the shard being assembled (columns + Arrow table)
BATCH_BYTES_PER_ROW = 4_000  # host memory per row of one body-model batch (posed bodies, cameras, noise)
DISK_MARGIN = 1.1  # refuse unless free disk >= this x the estimate
MEMORY_SHARE = 0.8  # refuse unless the estimate fits in this share of the available memory


def n_shards_of(cfg: DictConfig) -> int:
    """Number of shards of the whole set (``ceil(num_samples / shard_size)``), without listing them."""
    return -(-int(cfg.num_samples) // int(cfg.shard_size))


def rows_in_span(cfg: DictConfig, lo: int, hi: int) -> int:
    """Rows of shards ``lo..hi-1`` (integer arithmetic: no per-shard list)."""
    n, size = int(cfg.num_samples), int(cfg.shard_size)
    return max(0, min(hi * size, n) - lo * size)


def available_memory() -> int:
    """Host memory this process may still use: MemAvailable, capped by a cgroup limit (SLURM ``--mem``)."""
    import os

    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free is None:
        free = int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit, usage = Path(limit_file).read_text().strip(), Path(usage_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and usage.isdigit() and int(limit) < 2**60:
            free = min(free, max(0, int(limit) - int(usage)))
        break
    return free


def _size(n: float) -> str:
    if n < 2**30:
        return f"{n / 2**20:,.0f} MiB"
    return f"{n / 2**30:,.1f} GiB" if n < 2**40 else f"{n / 2**40:,.1f} TiB"


def check_resources(cfg: DictConfig, out_dir: Path, workers: int = 1, analytic: bool = True) -> None:
    """Refuse (:class:`GenerationConfigError`, exit 2), before anything is drawn or written, a request whose
    estimated size does not fit: the shards of this run (``shard_range`` or all) on the free disk at
    ``out_dir`` (shards already there count as free: kept on resume, replaced on overwrite), and, on the
    analytic path, ``workers`` shards in memory at once (``shard_size`` rows each, assembled in
    ``batch_size``-row batches) in the available host memory. Integer arithmetic only: a request of 10^13
    rows is refused at once."""
    import shutil

    n_shards = n_shards_of(cfg)
    lo, hi = shard_span(cfg, n_shards)
    rows = rows_in_span(cfg, lo, hi)
    need = int(DISK_MARGIN * (rows * PARQUET_BYTES_PER_ROW + (hi - lo) * PARQUET_BYTES_PER_SHARD))
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
        free = usage.free if usage.total > 0 else None  # /proc and other pseudo file systems: no size
    except OSError:
        free = None
    if free is not None and out_dir.is_dir():
        free += sum(p.stat().st_size for p in out_dir.glob(shards.SHARD_GLOB) if p.is_file())
    if free is not None and need > free:
        raise GenerationConfigError(
            f"num_samples={int(cfg.num_samples)}: {rows:,} rows need about {_size(need)} of disk at "
            f"{out_dir}, but {_size(free)} is free; write fewer rows (num_samples, shard_range) "
            "or choose another out_dir"
        )
    if not analytic:
        return
    shard_rows = min(int(cfg.shard_size), int(cfg.num_samples))
    per_worker = shard_rows * SHARD_BYTES_PER_ROW + min(int(cfg.batch_size), shard_rows) * BATCH_BYTES_PER_ROW
    mem_need, mem_free = max(1, workers) * per_worker, available_memory()
    if mem_need > MEMORY_SHARE * mem_free:
        raise GenerationConfigError(
            f"shard_size={int(cfg.shard_size):,}, batch_size={int(cfg.batch_size):,} with {max(1, workers)} "
            f"worker(s) need about {_size(mem_need)} of memory, but {_size(mem_free)} is available (limit "
            f"{MEMORY_SHARE:.0%}); lower shard_size (it bounds memory; the set's size does not), batch_size "
            "or workers"
        )


def check_writable(out_dir: Path) -> None:
    """Refuse (:class:`GenerationConfigError`, exit 2) an ``out_dir`` that cannot be created or written,
    by trying (a temporary folder made and removed there; nothing is left behind)."""
    import tempfile

    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise GenerationConfigError(f"out_dir={out_dir} cannot be created: {probe} is not a folder")
    try:
        Path(tempfile.mkdtemp(prefix=".dp-write-test-", dir=probe)).rmdir()
    except OSError as e:
        raise GenerationConfigError(
            f"out_dir={out_dir} is not writable ({e.strerror or type(e).__name__} in {probe})"
        ) from e


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
            shards.check_manifest(out_dir, old)  # a malformed shard list: refused like an unreadable file
        except (ValueError, json.JSONDecodeError, shards.CorruptSetError) as e:
            if not overwrite:
                raise GenerationConfigError(
                    f"{out_dir}: unreadable manifest ({e}); pass overwrite=true"
                ) from e
            old = None
        if old is not None and not overwrite:
            if old.get("dataset_id") != did:
                theirs = old.get("id_config") if isinstance(old.get("id_config"), dict) else {}
                ours = id_payload(cfg)
                diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
                hint = (
                    " (a GPU set made with its poses drawn on the CPU: add pose_device=cpu to resume it)"
                    if diff == ["pose_device"] and "pose_device" not in theirs
                    else ""
                )
                raise GenerationConfigError(
                    f"{out_dir} already holds a different dataset "
                    f"(dataset_id {old.get('dataset_id')} != {did}; "
                    f"differs in: {', '.join(diff) or '?'}). Use another out_dir or overwrite=true{hint}."
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
