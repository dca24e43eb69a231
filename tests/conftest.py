"""Shared fixtures. Importing depth_pose first sets the project-local caches and offline env vars."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import real_data_dir

import depth_pose  # noqa: F401


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """``../shared/data/real`` (or $DEPTH_POSE_REAL_DATA); the test is skipped when it is absent."""
    path = real_data_dir()
    if path is None:
        pytest.skip("../shared/data/real is not present (set DEPTH_POSE_REAL_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained model in the shipped safetensors + JSON format (plumbing tests need no accuracy)."""
    from depth_pose.models.module import DepthModule
    from depth_pose.predictor import export_model

    m = DepthModule()
    m.set_target_stats(0.0, 1.0, 12.0)
    return export_model(
        m, tmp_path_factory.mktemp("model") / "tiny.safetensors", {"note": "untrained test model"}
    )


# ---- training fixtures (owner: training engineer) -------------------------------------------------------
# A small Parquet set in the depth_pose.schema layout, made from a rigid template skeleton (NOT the project's
# generator): lets the datamodule / model / DDP tests run without Anny. Learnable: depth follows from size.
TOY_SKELETON = [  # (x lateral, z up) of a 1.75 m person, metres, COCO order; y (depth offset) = 0
    (0.0, 1.62),
    (-0.03, 1.66),
    (0.03, 1.66),
    (-0.07, 1.63),
    (0.07, 1.63),
    (-0.19, 1.42),
    (0.19, 1.42),
    (-0.22, 1.12),
    (0.22, 1.12),
    (-0.24, 0.85),
    (0.24, 0.85),
    (-0.10, 0.93),
    (0.10, 0.93),
    (-0.10, 0.50),
    (0.10, 0.50),
    (-0.10, 0.08),
    (0.10, 0.08),
]


def write_toy_set(out_dir: Path, n: int, seed: int = 0, samples_per_pose: int = 4) -> Path:
    """Write ``n`` rows (shards of <= n/2 rows + manifest) with random stature, pose jitter, cameras."""
    import numpy as np
    import torch

    from depth_pose import geometry, shards
    from depth_pose.keypoints import COCO_NAMES
    from depth_pose.schema import ALL_COLS, TAG_COLS

    g = np.random.default_rng(seed)
    n_pose = -(-n // samples_per_pose)
    sk = np.array(TOY_SKELETON, dtype=np.float32)
    stature = g.uniform(1.45, 1.95, n_pose).astype(np.float32)
    hands_up = g.random(n_pose) < 0.2
    pts = np.zeros((n_pose, 17, 3), np.float32)
    pts[:, :, 0] = sk[:, 0]
    pts[:, :, 2] = sk[:, 1]
    pts[hands_up, 9, 2] = pts[hands_up, 10, 2] = 2.0
    pts += g.normal(0, 0.02, pts.shape).astype(np.float32)
    pts *= (stature / 1.75)[:, None, None]
    pts = np.repeat(pts, samples_per_pose, 0)[:n]
    pose_id = np.repeat(np.arange(n_pose), samples_per_pose)[:n]
    yaw = g.uniform(0, 2 * np.pi, n)
    c, s = np.cos(yaw), np.sin(yaw)
    rx = pts[..., 0] * c[:, None] - pts[..., 1] * s[:, None]
    ry = pts[..., 0] * s[:, None] + pts[..., 1] * c[:, None]
    z = g.uniform(3.0, 40.0, n)
    xlat = g.uniform(-0.3, 0.3, n) * z
    cam_h = g.uniform(1.0, 2.0, n)
    cam = np.stack([rx + xlat[:, None], cam_h[:, None] - pts[..., 2], ry + z[:, None]], -1).astype(np.float32)
    fx = g.uniform(600, 1400, n).astype(np.float32)
    K = geometry.intrinsics(torch.from_numpy(fx), torch.from_numpy(fx), 620.0, 190.0)
    px = geometry.project(torch.from_numpy(cam), K).numpy()
    hip = 0.5 * (cam[:, 11] + cam[:, 12])
    height_px = px[..., 1].max(1) - px[..., 1].min(1)
    px = px + g.normal(0, 1, px.shape) * (0.01 * height_px)[:, None, None]
    conf = np.where(g.random((n, 17)) < 0.15, 0.01, 0.9).astype(np.float32)
    cols: dict = {}
    for j, name in enumerate(COCO_NAMES):
        cols[f"{name}_x"], cols[f"{name}_y"], cols[f"{name}_c"] = px[:, j, 0], px[:, j, 1], conf[:, j]
        cols[f"gt_{name}_x"], cols[f"gt_{name}_y"] = px[:, j, 0], px[:, j, 1]
    cols.update(
        fx=fx,
        fy=fx,
        cx=np.full(n, 620.0),
        cy=np.full(n, 190.0),
        skew=np.zeros(n),
        img_w=np.full(n, 1242),
        img_h=np.full(n, 375),
        z_m=hip[:, 2],
        dist_m=np.linalg.norm(hip, axis=1),
        hip_cam_x_m=hip[:, 0],
        hip_cam_y_m=hip[:, 1],
        hip_cam_z_m=hip[:, 2],
        ground_cam_x_m=hip[:, 0],
        ground_cam_y_m=cam_h,
        ground_cam_z_m=hip[:, 2],
        sample_id=np.arange(n),
        source="analytic",
        gt_vis_mask=np.full(n, (1 << 17) - 1),
        pose_id=pose_id,
        strategy="toy",
        preset=np.where(np.repeat(hands_up, samples_per_pose)[:n], "", ""),
        hands_up=np.repeat(hands_up, samples_per_pose)[:n],
        hip_height_m=np.zeros(n),
    )
    for t in TAG_COLS:
        cols.setdefault(t, np.zeros(n, bool))
    for k in ALL_COLS:  # body/camera/render bookkeeping columns: not used by training
        cols.setdefault(k, np.zeros(n))
    entries = []
    half = max(1, n // 2)
    for i, a in enumerate(range(0, n, half)):
        part = {k: (v if isinstance(v, str) else v[a : a + half]) for k, v in cols.items()}
        entries.append(shards.write_shard(out_dir, i, shards.to_table(part)))
    shards.write_manifest(
        out_dir,
        {
            "format": shards.FORMAT,
            "dataset_id": f"toy_{n}_s{seed}",
            "seed": seed,
            "config": {},
            "num_samples": n,
            "shard_size": half,
            "num_shards": len(entries),
            "columns": ALL_COLS,
            "complete": True,
            "shards": entries,
        },
    )
    return out_dir


@pytest.fixture(scope="session")
def toy_set_dir(tmp_path_factory) -> Path:
    """A 24k-row toy set (see :func:`write_toy_set`)."""
    return write_toy_set(tmp_path_factory.mktemp("toy_set"), 24000, seed=0)


# ---- end of training fixtures ---------------------------------------------------------------------------
