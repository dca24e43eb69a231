"""Plain helpers shared by the test modules (fixtures live in conftest.py, which imports from here).

Import as ``from helpers import ...`` (pytest puts tests/ on sys.path; so do the scripts some tests start).
Names here are public on purpose: tests must not import private (``_name``) helpers from one another.
"""

from __future__ import annotations

import os
from pathlib import Path

import depth_pose  # noqa: F401  (first: sets the project-local caches and offline env vars; see conftest.py)

# isort: split
import torch

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def compose(config_name: str, overrides: list[str] | tuple[str, ...] = (), return_hydra_config: bool = False):
    """Hydra compose of ``config_name`` (``generate``, ``eval``, ``camera/default``, ...) from conf/."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(
            config_name=config_name, overrides=list(overrides), return_hydra_config=return_hydra_config
        )


def real_data_dir() -> Path | None:
    """``../shared/data/real`` beside the checkout (or $DEPTH_POSE_REAL_DATA), when present."""
    env = os.environ.get("DEPTH_POSE_REAL_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "real"
    return path if path.is_dir() else None


# 1.75 m adult, world frame (Z up, facing -Y, left = +X), mid-hip at X = Y = 0, feet on the floor; COCO order.
STANDING = torch.tensor(
    [
        [0.0, -0.10, 1.62],
        [0.03, -0.08, 1.66],
        [-0.03, -0.08, 1.66],
        [0.075, 0.0, 1.63],
        [-0.075, 0.0, 1.63],
        [0.18, 0.0, 1.42],
        [-0.18, 0.0, 1.42],
        [0.22, 0.0, 1.12],
        [-0.22, 0.0, 1.12],
        [0.24, -0.02, 0.85],
        [-0.24, -0.02, 0.85],
        [0.09, 0.0, 0.92],
        [-0.09, 0.0, 0.92],
        [0.10, -0.01, 0.50],
        [-0.10, -0.01, 0.50],
        [0.10, 0.02, 0.08],
        [-0.10, 0.02, 0.08],
    ]
)


def standing(n: int):
    """``n`` copies of :data:`STANDING` as generation.types.PosedBodies (body index 0)."""
    from generation.types import PosedBodies

    return PosedBodies(
        keypoints=STANDING.expand(n, 17, 3).clone(), body_index=torch.zeros(n, dtype=torch.long)
    )


def render_camera(seed: int = 0):
    """A sampled camera (K, R, t, w, h) looking at a rest-pose-sized point cloud at the origin."""
    from depth_pose import geometry

    g = torch.Generator().manual_seed(seed)
    R = geometry.camera_rotation(torch.tensor(-0.2), torch.tensor(0.05)) @ geometry.rot_z(torch.tensor(0.7))
    t = torch.tensor([0.3, 0.4, 6.0]) + 0.1 * torch.randn(3, generator=g)
    K = geometry.intrinsics(900.0, 900.0, 700.0, 330.0)
    return K.double().numpy(), R.double().numpy(), t.double().numpy(), 1280, 720
