"""Where a person is, in metres (camera frame: x right, y down, z forward): the mid-hip point at the predicted
depth and the floor point under them.

* ``hip_xyz_m``: the mid-hip pixel (mean of the seen hips; the box centre when no hip is seen) back-projected
  at the predicted depth z (:func:`depth_pose.geometry.backproject`).
* ``ground_xyz_m``: with a seen ankle, the mid-ankle pixel's ray met with the vertical plane through the hip
  that faces the camera (its normal the camera's forward axis made horizontal), then moved
  :data:`~depth_pose.scene.floor.ANKLE_HEIGHT_M` down: an upright person's feet are under their hips. A level
  camera (the default when the up direction is unknown) makes that plane ``z = z_hip``: the ankle at the
  hip's depth. A camera looking within ~6° of straight down has no such plane; there the point of the ankle's
  ray nearest the hip's vertical is used. Without a seen ankle (or a ray that does not reach the plane):
  the hip point moved the mid-hip's height above the floor down (``ground_from``: ``hip``).
  "Down" is minus the camera's up direction when known (given or self-calibrated), else the camera's +y.
"""

from __future__ import annotations

import numpy as np
import torch

from depth_pose import geometry
from depth_pose.keypoints import L_ANKLE, L_HIP, R_ANKLE, R_HIP
from depth_pose.scene.floor import ANKLE_HEIGHT_M, HIP_ABOVE_ANKLE_M

HIP_HEIGHT_M = HIP_ABOVE_ANKLE_M + ANKLE_HEIGHT_M  # the mid-hip keypoint above the floor (standing adult)
LEVEL_UP = np.array([0.0, -1.0, 0.0])
MIN_FORWARD = 0.1  # |horizontal part of the optical axis| below this (pitch beyond ~84°): no facing plane


def _mid_seen(kp: np.ndarray, a: int, b: int, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Per person: mean pixel of the seen keypoints among (a, b) and whether any was seen."""
    seen = kp[:, [a, b], 2] >= thr
    w = seen.astype(np.float64)
    xy = (kp[:, [a, b], :2] * w[..., None]).sum(1) / np.maximum(w.sum(1), 1)[:, None]
    return xy, seen.any(1)


def _ray_depth(rays: np.ndarray, hip: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Per person, ``t`` with ``t * rays`` the point under the hip (module docstring); NaN where none."""
    forward = np.array([0.0, 0.0, 1.0]) - up[2] * up
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.linalg.norm(forward) >= MIN_FORWARD:
            n = forward / np.linalg.norm(forward)
            t = (hip @ n) / (rays @ n)
        else:  # nearest point of the ray to the line hip + s * up
            au, hu = rays @ up, hip @ up
            t = (np.einsum("ij,ij->i", rays, hip) - au * hu) / (np.einsum("ij,ij->i", rays, rays) - au**2)
    return np.where(np.isfinite(t) & (t > 0), t, np.nan)


def positions(
    kp: np.ndarray,
    boxes: np.ndarray,
    z: np.ndarray,
    K: np.ndarray,
    thr: float,
    up: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mid-hip 3D points (N, 3), ground points (N, 3) and the ground rule used (``ankles`` / ``hip``), per
    person (module docstring); ``up`` (3,) the camera's up direction, None = level."""
    hip_px, hip_seen = _mid_seen(kp, L_HIP, R_HIP, thr)
    box_c = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)
    hip_px = np.where(hip_seen[:, None], hip_px, box_c)
    ank_px, ank_seen = _mid_seen(kp, L_ANKLE, R_ANKLE, thr)
    Kt = torch.as_tensor(K, dtype=torch.float64)
    hip = geometry.backproject(
        torch.as_tensor(hip_px, dtype=torch.float64), torch.as_tensor(z, dtype=torch.float64), Kt
    ).numpy()
    rays = geometry.backproject(
        torch.as_tensor(ank_px, dtype=torch.float64), torch.ones(len(kp), dtype=torch.float64), Kt
    ).numpy()
    u = LEVEL_UP if up is None else np.asarray(up, np.float64) / np.linalg.norm(up)
    t = _ray_depth(rays, hip, u)
    from_ankles = ank_seen & (np.isfinite(t) | ~np.isfinite(z))  # no depth: no point either way
    ground = np.where(from_ankles[:, None], t[:, None] * rays - ANKLE_HEIGHT_M * u, hip - HIP_HEIGHT_M * u)
    rule = ["ankles" if s else "hip" for s in from_ankles]
    return hip, ground, rule
