"""``dp-generate`` as a plain function: body bank -> poses -> cameras -> projection -> detector noise -> shards.

* :func:`generate` writes ``out_dir`` (Parquet shards + ``manifest.json``, see :mod:`generation.shards`).
* Shard ``i`` is generated from its own generator seeded by ``(seed, i)``: a killed run resumes at the first
  missing shard and yields exactly the data of an uninterrupted run; the same config gives the same data.
  All randomness of a shard is drawn for the whole shard at once (``shard_size`` bounds memory); ``batch_size``
  only chunks the (deterministic) body posing, so it does not change the data.
* Speed knobs that do not change the data (not in the dataset id): ``compile`` (fused kernels, see
  :mod:`generation.kernels`; equal to eager up to float round-off), ``workers`` (shards written by that many
  forked processes, 0 = one per core; default 1) and ``threads`` (torch intra-op threads while sampling,
  default 1: on the 2-core box 2 threads made the chain ~6x slower, see docs/bench_generation.md) and
  ``keep_heap`` (glibc: keep freed memory in the process instead of returning it to the OS, see
  :func:`keep_freed_memory`).
* :func:`dataset_id` is a short hash of everything that determines the data, :func:`ensure_dataset`
  generates a set if it is absent or incomplete and reuses it otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from depth_pose import geometry
from depth_pose.errors import InputError
from depth_pose.keypoints import COCO_NAMES
from depth_pose.schema import ALL_COLS, TAG_COLS
from generation import kernels, shards
from generation.lifetime import die_with_parent
from generation.types import BodyShapes, Cameras, Observations, PoseBatch, PosedBodies

log = logging.getLogger(__name__)

# Defaults for keys a caller (e.g. the trainer) may leave out.
DEFAULTS: dict[str, Any] = {
    "samples_per_pose": 8,
    "seed": 0,
    "shard_size": 100000,
    "batch_size": 65536,
    "device": "cpu",
    "overwrite": False,
    "contact_sheet": False,
    "progress": True,
    "workers": 1,  # processes generating shards in parallel (0: one per CPU core); the data does not change
    "threads": 1,  # torch intra-op threads while sampling (0: unchanged); 1 was 6x faster than 2 on 2 busy cores
    "keep_heap": True,  # glibc malloc keeps freed memory (no page faults on every multi-MB tensor); data unchanged
    "compile": "auto",  # fused kernels (generation.kernels): true | false | auto (CPU sets >= 1 M rows)
    "project": {"self_occlusion": True},
    "render": {"name": "none"},
}
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
_BODY_CACHE: dict[str, Any] = {}  # the last body banks built in this process (oldest first)
_BODY_CACHE_SIZE = 2


class GenerationConfigError(InputError):
    """A bad ``dp-generate`` configuration (the CLI turns it into a clear message and exit code 2)."""


# ---------------------------------------------------------------------------------------------- config
def _container(node: Any) -> Any:
    """Resolved plain container of a config node; unresolvable interpolations are kept as their text."""
    if not OmegaConf.is_config(node):
        return node
    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception:  # noqa: BLE001  (e.g. ${hydra:...} outside a Hydra app)
        if isinstance(node, DictConfig):
            out = {}
            for k in node.keys():
                try:
                    out[k] = _container(node[k])
                except Exception:  # noqa: BLE001
                    out[k] = OmegaConf.to_container(node, resolve=False)[k]
            return out
        return OmegaConf.to_container(node, resolve=False)


def with_defaults(cfg: DictConfig | dict) -> DictConfig:
    """``cfg`` with :data:`DEFAULTS` filled in for missing keys (a new config; struct mode off)."""
    cfg = cfg if OmegaConf.is_config(cfg) else OmegaConf.create(cfg)
    base = OmegaConf.create(DEFAULTS)
    out = OmegaConf.merge(base, cfg)
    OmegaConf.set_struct(out, False)
    return out


def _id_payload(cfg: DictConfig) -> dict:
    cfg = with_defaults(cfg)
    payload = {k: _container(cfg[k]) if k in cfg else None for k in ID_KEYS}
    payload["generator_version"] = GENERATOR_VERSION
    if str(cfg.get("device", "cpu")) != "cpu":  # a different RNG stream: a different set
        payload["device"] = str(cfg.device)
    return payload


def dataset_id(cfg: DictConfig | dict) -> str:
    """Short hash (12 hex) of the data-determining config: body, pose_sampling, camera, noise, render, project,
    num_samples, samples_per_pose, seed, shard_size (and device when not cpu) and :data:`GENERATOR_VERSION`."""
    blob = json.dumps(_id_payload(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def shard_seed(seed: int, index: int) -> int:
    """Deterministic 63-bit seed of shard ``index`` of a set with ``seed``."""
    return (
        int.from_bytes(hashlib.sha256(f"depth_pose:{int(seed)}:{int(index)}".encode()).digest()[:8], "little")
        >> 1
    )


def validate(cfg: DictConfig) -> None:
    """Raise :class:`GenerationConfigError` naming the first bad top-level value."""

    def need_int(key: str, lo: int) -> int:
        v = cfg.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise GenerationConfigError(f"{key} must be an integer >= {lo}, got {v!r}")
        return v

    need_int("num_samples", 1)
    need_int("samples_per_pose", 1)
    need_int("shard_size", 1)
    need_int("batch_size", 1)
    need_int("seed", 0)
    need_int("workers", 0)
    need_int("threads", 0)
    if not cfg.get("out_dir"):
        raise GenerationConfigError("out_dir must be set")
    for group in ("body", "pose_sampling", "camera", "noise"):
        if cfg.get(group) is None:
            raise GenerationConfigError(f"config group {group!r} is missing (e.g. {group}=...)")
    dev = str(cfg.device)
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise GenerationConfigError(f"device={dev} but CUDA is not available")


def _instantiate(group: str, node: DictConfig, **kwargs):
    import hydra.utils

    try:
        return hydra.utils.instantiate(node, **kwargs)
    except Exception as e:  # noqa: BLE001
        cause = e
        while getattr(cause, "__cause__", None) is not None:
            cause = cause.__cause__
        if isinstance(cause, ValueError | TypeError | KeyError):
            raise GenerationConfigError(f"bad {group} config: {cause}") from e
        raise


# ---------------------------------------------------------------------------------------------- stages
def build_stages(cfg: DictConfig) -> dict[str, Any]:
    """The cheap stages (camera, noise, pose sampler) from their config groups; bad values raise
    :class:`GenerationConfigError`."""
    return {g: _instantiate(g, cfg[g]) for g in ("camera", "noise", "pose_sampling")}


class Generator:
    """The analytic stages built from a config; :meth:`shard` makes the columns of one shard."""

    def __init__(self, cfg: DictConfig, stages: dict[str, Any] | None = None) -> None:
        """``stages``: already built {"camera", "noise", "pose_sampling"} objects to reuse."""
        self.cfg = cfg
        self.device = torch.device(str(cfg.device))
        self.spp = int(cfg.samples_per_pose)
        self.threads = int(cfg.get("threads", 1))
        self.self_occlusion = bool(cfg.project.get("self_occlusion", True))
        self.compiled = kernels.configure(
            kernels.resolve(cfg.get("compile", "auto"), int(cfg.get("num_samples", 0)), str(self.device))
        )
        if self.compiled:
            log.info(
                "fused generator kernels on (compile=%s): a one-off compile of ~20 s (~1 min the first time "
                "on a machine), then ~2x the eager rate",
                cfg.get("compile", "auto"),
            )
        stages = stages if stages is not None else build_stages(cfg)
        self.camera, self.noise, self.pose_sampler = (
            stages["camera"],
            stages["noise"],
            stages["pose_sampling"],
        )
        body_kwargs = {} if "seed" in cfg.body else {"seed": int(cfg.seed)}
        if "device" not in cfg.body:
            body_kwargs["device"] = str(self.device)
        key = json.dumps([_container(cfg.body), body_kwargs], sort_keys=True, default=str)
        if (
            key not in _BODY_CACHE
        ):  # the bank is deterministic and costly (~10 ms/body): build once per process
            while len(_BODY_CACHE) >= _BODY_CACHE_SIZE:
                _BODY_CACHE.pop(next(iter(_BODY_CACHE)))
            _BODY_CACHE[key] = _instantiate("body", cfg.body, **body_kwargs)
        self.body = _BODY_CACHE[key]

    def warm_up(self) -> None:
        """Compile the fused kernels now (when on) with a tiny throw-away batch, e.g. before forking workers."""
        if self.compiled:
            with torch.no_grad():
                self.sample(64, torch.Generator(device=self.device).manual_seed(0))

    def sample(
        self,
        n_rows: int,
        g: torch.Generator,
        batch_size: int | None = None,
        g_pose: torch.Generator | None = None,
    ) -> tuple[PoseBatch, PosedBodies, Cameras, Observations, Tensor]:
        """``n_rows`` samples: ceil(n_rows / spp) poses x spp cameras (truncated), all stages, in memory.

        ``g_pose`` (CPU) draws poses and body indices, ``g`` (on the device) cameras and noise; one CPU
        generator may serve both.
        """
        from generation.pose import torch_threads

        with torch_threads(self.threads if self.device.type == "cpu" else 0):
            return self._sample(n_rows, g, batch_size, g_pose)

    def _sample(
        self, n_rows: int, g: torch.Generator, batch_size: int | None, g_pose: torch.Generator | None
    ) -> tuple[PoseBatch, PosedBodies, Cameras, Observations, Tensor]:
        g_pose = g if g_pose is None else g_pose
        n_poses = -(-n_rows // self.spp)
        poses = self.pose_sampler.sample(n_poses, g_pose)
        body_index = torch.randint(len(self.body.shapes), (n_poses,), generator=g_pose, device=g_pose.device)
        body_index = body_index.to(self.device)
        chunk = max(1, (batch_size or n_poses * self.spp) // self.spp)
        kps = []
        for s in range(0, n_poses, chunk):
            sub = _slice_poses(poses, s, s + chunk)
            kps.append(self.body.pose(body_index[s : s + chunk], sub).keypoints)
        kp = geometry.planar(kps[0] if len(kps) == 1 else torch.cat(kps)).to(self.device, torch.float32)
        rep = torch.arange(n_poses, device=self.device).repeat_interleave(self.spp)[:n_rows]
        # Row r shows pose r // spp. Planar (3, 17, rows) storage, the samples innermost: every later stage
        # runs long contiguous vector ops over samples; PosedBodies.keypoints is its (rows, 17, 3) view.
        kp = kp[..., None].expand(*kp.shape, self.spp).reshape(*kp.shape[:2], -1)[..., :n_rows].contiguous()
        kp = kp.permute(2, 1, 0)
        bi = body_index[:, None].expand(n_poses, self.spp).reshape(-1)[:n_rows]
        posed = PosedBodies(keypoints=kp, body_index=bi)
        cams, proj = self.camera.sample(posed, g, return_projection=True)
        from generation.project import observe

        obs = observe(posed, cams, self_occlusion=self.self_occlusion, projection=proj)
        det = self.noise(obs, g, cams)
        obs.det_xyc = det
        return poses, posed, cams, obs, rep

    def shard(
        self,
        index: int,
        n_rows: int,
        row_offset: int,
        pose_offset: int,
        seed: int,
        batch_size: int | None = None,
    ) -> dict[str, Any]:
        """Columns (depth_pose.schema.ALL_COLS) of shard ``index``."""
        base = shard_seed(seed, index)
        g_pose = torch.Generator().manual_seed(base)  # pose samplers draw on the CPU
        g = g_pose if self.device.type == "cpu" else torch.Generator(device=self.device).manual_seed(base ^ 1)
        with torch.no_grad():
            poses, posed, cams, obs, rep = self.sample(n_rows, g, batch_size, g_pose)
        return columns(poses, posed, cams, obs, rep, self.body.shapes, row_offset, pose_offset)


def _slice_poses(p: PoseBatch, a: int, b: int) -> PoseBatch:
    if a == 0 and b >= len(p):
        return p
    return PoseBatch(
        bone_names=p.bone_names,
        rotations=p.rotations[a:b],
        joint_names=p.joint_names,
        angles_deg=p.angles_deg[a:b],
        strategy=p.strategy,
        preset=p.preset[a:b],
        tags={k: v[a:b] for k, v in p.tags.items()},
    )


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _dictionary(values: list[str], rows: np.ndarray) -> pa.Array:
    """``values[rows]`` as an Arrow dictionary array (no per-row Python strings)."""
    names: dict[str, int] = {}
    codes = np.fromiter((names.setdefault(v, len(names)) for v in values), np.int32, len(values))
    return pa.DictionaryArray.from_arrays(
        pa.array(codes[rows] if len(values) else np.zeros(len(rows), np.int32)),
        pa.array(list(names) or [""], pa.string()),
    )


def columns(
    poses: PoseBatch,
    posed: PosedBodies,
    cams: Cameras,
    obs: Observations,
    rep: Tensor,
    shapes: BodyShapes,
    row_offset: int = 0,
    pose_offset: int = 0,
) -> dict[str, Any]:
    """Shard columns from the stage outputs (``rep``: pose index of each row)."""
    n = len(rep)
    rep_np = _np(rep)
    det = _np(geometry.planar(obs.det_xyc.float()))  # (3, 17, B): every column is a contiguous row
    gt = _np(geometry.planar(obs.gt_px.float()))
    K = _np(cams.K.float())
    cols: dict[str, Any] = {}
    for j, name in enumerate(COCO_NAMES):
        cols[f"{name}_x"], cols[f"{name}_y"], cols[f"{name}_c"] = det[0, j], det[1, j], det[2, j]
        cols[f"gt_{name}_x"], cols[f"gt_{name}_y"] = gt[0, j], gt[1, j]
    bits = (obs.gt_visible.to(torch.int64) << torch.arange(17, device=rep.device)).sum(-1)
    hip = _np(obs.hip_cam.float())
    ground = _np(obs.ground_cam.float())
    cols.update(
        sample_id=np.arange(row_offset, row_offset + n, dtype=np.int64),
        source="analytic",
        gt_vis_mask=_np(bits),
        fx=K[:, 0, 0],
        fy=K[:, 1, 1],
        cx=K[:, 0, 2],
        cy=K[:, 1, 2],
        skew=K[:, 0, 1],
        img_w=_np(cams.img_w),
        img_h=_np(cams.img_h),
        z_m=_np(obs.z_m.float()),
        dist_m=np.linalg.norm(hip, axis=1),
        hip_cam_x_m=hip[:, 0],
        hip_cam_y_m=hip[:, 1],
        hip_cam_z_m=hip[:, 2],
        ground_cam_x_m=ground[:, 0],
        ground_cam_y_m=ground[:, 1],
        ground_cam_z_m=ground[:, 2],
        cam_height_m=_np(cams.height_m),
        tilt_deg=_np(cams.tilt_deg),
        roll_deg=_np(cams.roll_deg),
        yaw_deg=_np(cams.yaw_deg),
        hfov_deg=_np(cams.hfov_deg),
        person_px_height=_np(obs.person_px_height),
        pose_id=rep_np.astype(np.int64) + pose_offset,
        strategy=poses.strategy,
        preset=_dictionary(poses.preset, rep_np),
        hip_height_m=_np(0.5 * (posed.keypoints[:, 11, 2] + posed.keypoints[:, 12, 2])),
        scale=np.full(n, np.nan, np.float32),
        det_conf=np.full(n, np.nan, np.float32),
        oks=np.full(n, np.nan, np.float32),
    )
    for t in TAG_COLS:
        v = poses.tags.get(t)
        cols[t] = np.zeros(n, bool) if v is None else _np(v.bool())[rep_np]
    bi = posed.body_index.to(shapes.stature_m.device)
    cols["body_id"] = _np(posed.body_index)
    cols["stature_m"] = _np(shapes.stature_m[bi])
    cols["age_years"] = _np(shapes.age_years[bi])
    cols["gender"] = _np(shapes.gender[bi].float())
    labels = list(shapes.phenotype_labels)
    for lab in ("weight", "muscle", "proportions"):
        cols[lab] = (
            _np(shapes.phenotypes[bi, labels.index(lab)]) if lab in labels else np.full(n, np.nan, np.float32)
        )
    missing = set(ALL_COLS) - set(cols)
    assert not missing, f"pipeline does not fill columns {missing}"
    return cols


# ---------------------------------------------------------------------------------------------- driver
def plan(num_samples: int, shard_size: int, samples_per_pose: int) -> list[tuple[int, int, int]]:
    """(rows, row_offset, pose_offset) of each shard."""
    n_shards = math.ceil(num_samples / shard_size)
    poses_per_shard = -(-shard_size // samples_per_pose)
    return [
        (min(shard_size, num_samples - i * shard_size), i * shard_size, i * poses_per_shard)
        for i in range(n_shards)
    ]


def _new_manifest(cfg: DictConfig, did: str, n_shards: int) -> dict:
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
        "id_config": _id_payload(cfg),
        "config": _container(cfg),
        "complete": False,
        "shards": [],
    }


def _clear(out_dir: Path) -> None:
    """Remove the files a previous generation wrote (shards, manifest, contact sheet) and nothing else."""
    for p in out_dir.glob(shards.SHARD_GLOB):
        p.unlink()
    for name in GENERATED_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _prepare_out_dir(cfg: DictConfig, out_dir: Path, did: str, n_shards: int) -> dict:
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
                theirs, ours = old.get("id_config", {}), _id_payload(cfg)
                diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
                raise GenerationConfigError(
                    f"{out_dir} already holds a different dataset (dataset_id {old.get('dataset_id')} != {did}; "
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
    manifest = _new_manifest(cfg, did, n_shards)
    shards.write_manifest(out_dir, manifest)
    return manifest


def generate(cfg: DictConfig | dict) -> Path:
    """Generate (or resume) the synthetic set described by ``cfg`` (keys as conf/generate.yaml); returns out_dir."""
    cfg = with_defaults(cfg)
    validate(cfg)
    out_dir = Path(str(cfg.out_dir))
    if str(cfg.render.get("name", "none")) != "none":
        from generation.render.pipeline import render_dataset

        render_dataset(cfg, out_dir)
        return out_dir
    torch.manual_seed(int(cfg.seed))  # anything outside our generators (should be nothing) is seeded too
    if bool(cfg.get("keep_heap", True)):
        keep_freed_memory()
    did = dataset_id(cfg)
    layout = plan(int(cfg.num_samples), int(cfg.shard_size), int(cfg.samples_per_pose))
    stages = build_stages(cfg)  # validates the groups before touching the disk
    manifest = _prepare_out_dir(cfg, out_dir, did, len(layout))
    done = {s["index"] for s in manifest["shards"] if (out_dir / s["file"]).exists()}
    manifest["shards"] = [s for s in manifest["shards"] if s["index"] in done]
    todo = [i for i in range(len(layout)) if i not in done]
    if todo:
        gen = Generator(cfg, stages)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=int(cfg.num_samples),
            unit="rows",
            desc=f"dp-generate {did}",
            disable=not bool(cfg.progress),
            initial=sum(s["rows"] for s in manifest["shards"]),
        )
        tasks = [(i, *layout[i], int(cfg.seed), int(cfg.batch_size), str(out_dir)) for i in todo]
        for entry in _run_shards(gen, tasks, _n_workers(cfg, len(todo))):
            manifest["shards"] = sorted([*manifest["shards"], entry], key=lambda s: s["index"])
            shards.write_manifest(out_dir, manifest)
            bar.update(entry["rows"])
        bar.close()
    if not manifest.get("complete"):
        manifest["complete"] = True
        shards.write_manifest(out_dir, manifest)
    if bool(cfg.contact_sheet) and not (out_dir / "contact_sheet.png").exists():
        write_contact_sheet(cfg, out_dir / "contact_sheet.png", stages)
    log.info("dataset %s: %d rows in %d shards at %s", did, cfg.num_samples, len(layout), out_dir)
    return out_dir


_WORKER_GEN: Generator | None = None  # the Generator a forked shard worker inherits


def _n_workers(cfg: DictConfig, n_tasks: int) -> int:
    """Worker processes for ``n_tasks`` shards: ``cfg.workers`` (0: one per CPU core), at most one per shard;
    1 (in-process) on CUDA or where ``fork`` is unavailable."""
    import multiprocessing as mp
    import os

    w = int(cfg.get("workers", 1))
    if w < 0:
        raise GenerationConfigError(f"workers must be >= 0, got {w}")
    if w == 0:
        w = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if str(cfg.device) != "cpu" or "fork" not in mp.get_all_start_methods():
        return 1
    return max(1, min(w, n_tasks))


def _write_one(gen: Generator, task: tuple) -> dict:
    i, rows, row_off, pose_off, seed, batch, out_dir = task
    cols = gen.shard(i, rows, row_off, pose_off, seed, batch)
    return shards.write_shard(out_dir, i, shards.to_table(cols))


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process (no mmap for blocks below 1 GiB, no trimming).

    The generator allocates and frees dozens of tensors of several MB per batch; by default each comes from a
    fresh ``mmap`` and is page-faulted in again (measured: the noise stage took 47-76 ms per 65,536 rows
    without, a steady 47 ms with). Process-wide and irreversible (the heap stays at its peak size), so only
    dp-generate's own processes call it. Returns False where it does not apply (not glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
            libc.mallopt(m_trim_threshold, 2**31 - 1)
        )
    except (OSError, AttributeError):
        return False


def _worker_init(threads: int, keep_heap: bool = True, parent_pid: int | None = None) -> None:
    if parent_pid is not None:
        die_with_parent(parent_pid)
    torch.set_num_threads(max(1, threads))
    if keep_heap:
        keep_freed_memory()


def _worker_task(task: tuple) -> dict:
    assert _WORKER_GEN is not None
    return _write_one(_WORKER_GEN, task)


def _run_shards(gen: Generator, tasks: list[tuple], workers: int):
    """Write the shards of ``tasks``, yielding manifest entries as they finish. ``workers`` > 1: forked processes
    (one per core, each torch with ``gen.threads`` threads) share the parent's body bank copy-on-write; each
    shard depends only on its own seed, so the data is identical to a single-process run."""
    if workers <= 1:
        for t in tasks:
            yield _write_one(gen, t)
        return
    import multiprocessing as mp

    global _WORKER_GEN
    _WORKER_GEN = gen
    gen.warm_up()  # compile once here; the forked workers inherit the compiled kernels
    try:
        init = (gen.threads or 1, bool(gen.cfg.get("keep_heap", True)), os.getpid())
        with mp.get_context("fork").Pool(workers, initializer=_worker_init, initargs=init) as pool:
            yield from pool.imap_unordered(_worker_task, tasks)
    finally:
        _WORKER_GEN = None


def write_contact_sheet(cfg: DictConfig, path: Path, stages: dict[str, Any] | None = None) -> Path:
    """Contact sheet of sampled skeletons: the configured strategy first, then the repo's other plain strategies."""
    from generation.contact_sheet import contact_sheet

    gen = Generator(cfg, stages)
    samplers = {str(cfg.pose_sampling.get("name", "configured")): gen.pose_sampler}
    conf_dir = Path(__file__).resolve().parents[1] / "conf" / "pose_sampling"
    for f in sorted(conf_dir.glob("*.yaml")):
        node = OmegaConf.load(f)
        if f.stem not in samplers and "defaults" not in node:  # composed ones (mixture) only when configured
            samplers[f.stem] = _instantiate("pose_sampling", node)
    return contact_sheet(gen.body, samplers, path, seed=int(cfg.seed))


def ensure_dataset(cfg: DictConfig | dict) -> Path:
    """``out_dir`` of ``cfg``: reused when complete with the same dataset id, else generated/resumed."""
    cfg = with_defaults(cfg)
    out_dir = Path(str(cfg.out_dir))
    if (out_dir / shards.MANIFEST).exists():
        m = shards.load_manifest(out_dir)
        if m.get("complete") and m.get("dataset_id") == dataset_id(cfg):
            return out_dir
    return generate(cfg)


def _dataset_id_resolver(*, _root_: DictConfig) -> str:
    return dataset_id(_root_)


if not OmegaConf.has_resolver("dp_dataset_id"):
    OmegaConf.register_new_resolver("dp_dataset_id", _dataset_id_resolver)
