"""The analytic generator: body bank -> poses -> cameras -> projection -> detector noise, in memory, and the
shard columns (:data:`depth_pose.schema.ALL_COLS`) made from the stage outputs.

All randomness of a shard is drawn for the whole shard at once; ``batch_size`` only chunks the deterministic
body posing, so it does not change the data.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from omegaconf import DictConfig
from torch import Tensor

from depth_pose import geometry
from depth_pose.keypoints import COCO_NAMES
from depth_pose.schema import ALL_COLS, TAG_COLS
from generation import kernels
from generation.config import build_framing_cut, build_stages, instantiate_stage, pose_device, resolved
from generation.dataset import shard_seed
from generation.project import observe
from generation.threads import torch_threads
from generation.types import BodyShapes, Cameras, Observations, PoseBatch, PosedBodies

log = logging.getLogger(__name__)
_BODY_CACHE: dict[str, Any] = {}  # the last body banks built in this process (oldest first)
_BODY_CACHE_SIZE = 2


def body_stage(cfg: DictConfig) -> Any:
    """The body bank of ``cfg.body`` (:class:`GenerationConfigError` for a bad value), cached: the bank is
    deterministic and costly (docs/bench_body.md), so it is built once per process."""
    body_kwargs = {} if "seed" in cfg.body else {"seed": int(cfg.seed)}
    if "device" not in cfg.body:
        body_kwargs["device"] = str(cfg.device)
    key = json.dumps([resolved(cfg.body), body_kwargs], sort_keys=True, default=str)
    if key not in _BODY_CACHE:
        while len(_BODY_CACHE) >= _BODY_CACHE_SIZE:
            _BODY_CACHE.pop(next(iter(_BODY_CACHE)))
        _BODY_CACHE[key] = instantiate_stage("body", cfg.body, **body_kwargs)
    return _BODY_CACHE[key]


class Generator:
    """The analytic stages built from a config; :meth:`shard` makes the columns of one shard."""

    def __init__(self, cfg: DictConfig, stages: dict[str, Any] | None = None) -> None:
        """``stages``: already built {"camera", "noise", "pose_sampling"} objects to reuse."""
        self.cfg = cfg
        self.device = torch.device(str(cfg.device))
        self.spp = int(cfg.samples_per_pose)
        self.pose_device = pose_device(cfg)  # cpu | device: where shards draw their poses
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
        self.framing_cut = build_framing_cut(cfg)  # people cut by the frame (off unless its share > 0)
        self.body = body_stage(cfg)

    def warm_up(self) -> None:
        """Compile the fused kernels now (when on) with a tiny throw-away batch, e.g. before
        forking workers."""
        if self.compiled:
            g, g_pose = self.generators(0)
            with torch.no_grad():
                self.sample(64, g, g_pose=g_pose)

    def generators(self, seed: int) -> tuple[torch.Generator, torch.Generator]:
        """``(g, g_pose)`` seeded from ``seed`` as every shard draws: ``g`` on the device (cameras, noise; the
        CPU generator itself on the CPU), ``g_pose`` where :attr:`pose_device` says (poses, body indices)."""
        g_cpu = torch.Generator().manual_seed(seed)
        g = g_cpu if self.device.type == "cpu" else torch.Generator(device=self.device).manual_seed(seed ^ 1)
        return g, (g if self.pose_device == "device" else g_cpu)

    def sample(
        self,
        n_rows: int,
        g: torch.Generator,
        batch_size: int | None = None,
        g_pose: torch.Generator | None = None,
    ) -> tuple[PoseBatch, PosedBodies, Cameras, Observations, Tensor]:
        """``n_rows`` samples: ceil(n_rows / spp) poses x spp cameras (truncated), all stages, in memory.

        ``g_pose`` draws poses and body indices on its own device (the CPU, or the device: ``pose_device``),
        ``g`` (on the device) cameras and noise; one generator may serve both.
        """
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
            sub = slice_poses(poses, s, s + chunk)
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
        if self.framing_cut.enabled:  # draws random numbers only when on: other sets stay byte-identical
            cams, proj = self.framing_cut(posed, cams, proj, g)
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
        g, g_pose = self.generators(shard_seed(seed, index))
        with torch.no_grad():
            poses, posed, cams, obs, rep = self.sample(n_rows, g, batch_size, g_pose)
        return columns(poses, posed, cams, obs, rep, self.body.shapes, row_offset, pose_offset)


def slice_poses(p: PoseBatch, a: int, b: int) -> PoseBatch:
    """Poses ``a:b`` of ``p`` (``p`` itself when that is all of it)."""
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
