"""Synthetic scenes for the scene-calibration tests: stick-figure people on a floor, seen by a fixed camera.

A person is 17 COCO keypoints built from a 1.7 m template (ankles 0.08 m, knees 0.46, hips 0.84, shoulders
1.36, head 1.51 above the floor: the proportions of the model's training bodies, whose mid-hip stands
:data:`depth_pose.scene.floor.HIP_ABOVE_ANKLE_M` above the mid-ankle on average), scaled per person,
turned to a random heading and placed on the floor (``floor(x, y)`` gives its height, for steps and
ramps). People walk in tracks; some sit, lie or bend (pose outliers), and some frames have lifted feet. The
camera sits ``height`` m above the floor at the world origin, looks along +Y with
:func:`depth_pose.geometry.camera_rotation` (pitch, roll). Everything through depth_pose.geometry, nothing
from generation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from depth_pose import geometry

W, H = 1280, 720
HFOV = 70.0

# (x right, y forward = facing, z up) of a 1.7 m person, COCO order.
STAND = np.array(
    [
        (0.0, 0.10, 1.51),
        (-0.03, 0.08, 1.55),
        (0.03, 0.08, 1.55),
        (-0.07, 0.0, 1.53),
        (0.07, 0.0, 1.53),
        (-0.19, 0.0, 1.36),
        (0.19, 0.0, 1.36),
        (-0.22, 0.0, 1.06),
        (0.22, 0.0, 1.06),
        (-0.24, 0.02, 0.78),
        (0.24, 0.02, 0.78),
        (-0.10, 0.0, 0.84),
        (0.10, 0.0, 0.84),
        (-0.10, 0.02, 0.46),
        (0.10, 0.02, 0.46),
        (-0.10, 0.0, 0.08),
        (0.10, 0.0, 0.08),
    ]
)
SIT = np.array(
    [
        (0.0, 0.08, 1.12),
        (-0.03, 0.06, 1.16),
        (0.03, 0.06, 1.16),
        (-0.07, -0.02, 1.14),
        (0.07, -0.02, 1.14),
        (-0.19, -0.05, 0.95),
        (0.19, -0.05, 0.95),
        (-0.22, 0.05, 0.70),
        (0.22, 0.05, 0.70),
        (-0.20, 0.30, 0.60),
        (0.20, 0.30, 0.60),
        (-0.10, 0.0, 0.45),
        (0.10, 0.0, 0.45),
        (-0.10, 0.45, 0.50),
        (0.10, 0.45, 0.50),
        (-0.10, 0.45, 0.08),
        (0.10, 0.45, 0.08),
    ]
)
STAND_HIP_ABOVE_ANKLE_M = float(STAND[11, 2] - STAND[15, 2])
BEND = STAND.copy()
BEND[[0, 1, 2, 3, 4], 1] += 0.70
BEND[[0, 1, 2, 3, 4], 2] -= 0.65
BEND[[5, 6, 7, 8, 9, 10], 1] += 0.50
BEND[[5, 6, 7, 8, 9, 10], 2] = [1.0, 1.0, 0.75, 0.75, 0.5, 0.5]
LIE = np.stack((STAND[:, 0], STAND[:, 2] - 0.9, np.full(17, 0.12)), 1)
KINDS = ("stand", "sit", "lie", "bend", "jump", "lift", "swing")


@dataclass
class Scene:
    """Person-frames of one camera: keypoints (N, 17, 3), K (3, 3), true mid-hip depth (N,), track (N,),
    kind (N,) from :data:`KINDS`, the person's size factor (N,), the true up direction (3,)."""

    keypoints: np.ndarray
    K: np.ndarray
    z_true: np.ndarray
    track: np.ndarray
    kind: np.ndarray
    size: np.ndarray
    up: np.ndarray
    height: float

    def model_depth(
        self, rng: np.random.Generator, track_bias: float = 0.05, frame_noise: float = 0.03, rel_sigma=0.08
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model depths: true depth x a per-track factor (bias ~ ``track_bias``) x per-frame noise, with a
        reported spread ``rel_sigma``; returns (z, sigma, the per-frame track factor)."""
        ids, inv = np.unique(self.track, return_inverse=True)
        factor = (1.0 + track_bias * rng.standard_normal(len(ids)))[inv]
        z = self.z_true * factor * np.exp(frame_noise * rng.standard_normal(len(self.z_true)))
        return z, rel_sigma * z, factor


def make_scene(
    rng: np.random.Generator,
    height: float,
    pitch_deg: float,
    roll_deg: float,
    n_tracks: int = 80,
    frames: int = 8,
    outliers: float = 0.2,
    lifted: float = 0.05,
    pixel_noise: float = 1.5,
    lean_deg: float = 2.0,
    floor: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    step_m: float = 0.7,
    size_range: tuple[float, float] = (0.85, 1.12),
    width: float = 1.0,
    stride: float = 0.2,
    lean_offset_deg: float = 0.0,
    swing: float = 0.0,
) -> Scene:
    """``n_tracks`` people, each walking ``frames`` steps of ``step_m`` from a random point of the floor seen
    by the camera (sitting/lying people stay put); frames are kept where the mid-hip is in the image at depth
    2-20 m, keypoints outside the image get confidence 0. ``width`` scales the body sideways and ``stride``
    is the largest step of a foot ahead (both 0: left and right joints coincide, so image midpoints are
    exactly the projections of 3D midpoints). Every body leans sideways by ``lean_offset_deg`` plus a
    random ``lean_deg`` (1 sigma) per frame. A share ``swing`` of the standing frames has one foot off the
    floor by 0.08-0.18 m, as a walker's swing foot (the legs still look alike in the image)."""
    K = geometry.intrinsics_from_hfov(HFOV, W, H).double()
    R = geometry.camera_rotation(
        torch.tensor(math.radians(pitch_deg), dtype=torch.float64),
        torch.tensor(math.radians(roll_deg), dtype=torch.float64),
    )
    Rn = R.numpy()
    floor = floor or (lambda x, y: np.zeros_like(x))
    T = 3 * n_tracks  # candidates; the first n_tracks with >= 2 frames in view are kept
    # Start points: random pixels of the lower 70% of the image, back-projected onto the floor plane z = 0.
    pix = np.stack((rng.uniform(0, W, T), rng.uniform(0.3 * H, H, T), np.ones(T)), 1)
    rays = (np.linalg.inv(K.numpy()) @ pix.T).T @ Rn  # world directions (R^T d)
    t = np.where(rays[:, 2] < -1e-3, height / -np.minimum(rays[:, 2], -1e-3), 30.0)
    start = rays[:, :2] * np.minimum(t, 30.0)[:, None]
    base = np.where(
        rng.random(T) < outliers, np.array(["sit", "lie", "bend"])[rng.integers(0, 3, T)], "stand"
    )
    heading = rng.uniform(0, 2 * math.pi, T)
    size = rng.uniform(*size_range, T)
    walk = (base == "stand") | (base == "bend")
    steps = np.where(walk[:, None], step_m * np.arange(frames)[None], 0.0)  # (T, F)
    xy = start[:, None] + steps[..., None] * np.stack((np.cos(heading), np.sin(heading)), 1)[:, None]
    kind = np.repeat(base[:, None], frames, 1)
    lift = (kind == "stand") & (rng.random((T, frames)) < lifted)
    kind[lift] = np.where(rng.random(int(lift.sum())) < 0.5, "jump", "lift")
    if swing > 0:  # (no draw otherwise: the other scenes keep their random streams)
        kind[(kind == "stand") & (rng.random((T, frames)) < swing)] = "swing"
    world = np.empty((T, frames, 17, 3))
    for i in range(T):
        for f in range(frames):
            pts = (
                _pose(kind[i, f], rng, lean_deg, stride, lean_offset_deg)
                * size[i]
                * np.array([width, 1.0, 1.0])
            )
            yaw = heading[i] - math.pi / 2 + (rng.normal(0, 0.2) if walk[i] else 0.0)
            c, s = math.cos(yaw), math.sin(yaw)
            world[i, f] = pts @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    world[..., :2] += xy[:, :, None]
    world[..., 2] += floor(xy[..., 0], xy[..., 1])[..., None]
    cam = geometry.world_to_camera(
        torch.as_tensor(world), R, R @ torch.tensor([0.0, 0.0, -height], dtype=torch.float64)
    )
    px = geometry.project(cam, K).numpy()
    cam = cam.numpy()
    z_hip = geometry.mid_hip(torch.as_tensor(cam)).numpy()[..., 2]
    inside = (px[..., 0] >= 0) & (px[..., 0] < W) & (px[..., 1] >= 0) & (px[..., 1] < H) & (cam[..., 2] > 0.1)
    keep = inside[..., 11] & inside[..., 12] & (z_hip > 2.0) & (z_hip < 20.0)
    tracks = np.flatnonzero(keep.sum(1) >= 2)[:n_tracks]
    keep[np.setdiff1d(np.arange(T), tracks)] = False
    noisy = np.nan_to_num(px + pixel_noise * rng.standard_normal(px.shape), nan=-1.0)
    kp = np.concatenate((noisy, np.where(inside, 0.9, 0.0)[..., None]), -1)
    track = np.broadcast_to(np.arange(T)[:, None], keep.shape)
    return Scene(
        kp[keep],
        K.numpy(),
        z_hip[keep],
        track[keep],
        kind[keep],
        np.broadcast_to(size[:, None], keep.shape)[keep],
        Rn[:, 2].copy(),
        height,
    )


def _pose(
    kind: str, rng: np.random.Generator, lean_deg: float, stride_max: float, lean_offset_deg: float = 0.0
) -> np.ndarray:
    if kind == "sit":
        return SIT.copy()
    if kind == "lie":
        return LIE.copy()
    pts = (BEND if kind == "bend" else STAND).copy()
    # left foot ahead, right behind (or the reverse): the mid-ankle stays under the hips
    stride = rng.uniform(-stride_max, stride_max)
    pts[[13, 15], 1] += [stride / 2, stride]
    pts[[14, 16], 1] -= [stride / 2, stride]
    if kind == "jump":
        pts[:, 2] += rng.uniform(0.3, 0.5)
    elif kind == "swing":  # the rear foot rises behind, the knee bends
        rise = rng.uniform(0.08, 0.18)
        pts[16] += (0.0, -0.5 * rise, rise)
        pts[14] += (0.0, 0.25 * rise, 0.25 * rise)
    elif kind == "lift":
        pts[13] = (-0.10, 0.35, 0.70)
        pts[15] = (-0.10, 0.15, rng.uniform(0.3, 0.45))
    # lean about the mid-ankle
    a, b = np.radians(rng.normal(0, lean_deg, 2) + [0.0, lean_offset_deg])
    Rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    Ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    pivot = np.array([0.0, 0.0, pts[15:17, 2].min()])
    return (pts - pivot) @ (Rx @ Ry).T + pivot
