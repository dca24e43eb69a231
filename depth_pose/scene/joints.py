"""Per person-frame joint midpoints (ankles, knees, hips, shoulders) as pixels and rays, and the tests of an
upright body that scene calibration relies on.

Everything here is numpy float64, vectorised over person-frames. Rays are ``K^-1 [u, v, 1]`` through
:func:`depth_pose.geometry.normalise_pixels` (the project's one normalisation), homogeneous ``[x, y, 1]``.
A midpoint needs both sides confident (``conf >= min_conf``) and finite; otherwise it is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from depth_pose.errors import InputError
from depth_pose.geometry import check_intrinsics, normalise_pixels
from depth_pose.keypoints import L_ANKLE, L_HIP, L_SHOULDER, NUM_KEYPOINTS, R_ANKLE, R_HIP, R_SHOULDER

DEFAULT_MIN_CONF = 0.3  # above the model's visibility threshold: calibration wants well-placed joints
PIXEL_NOISE = 2.0  # keypoint noise in pixels (1 sigma): the vanishing point's and the floor's
BORDER_PX = 4.0  # ankles this close to the image border are likely a truncated leg, not a foot
L_KNEE, R_KNEE = 13, 14
KNEE_SPAN = (0.2, 0.8)  # the knee projects between these fractions of the hip->ankle segment ...
KNEE_OFFSET = 0.25  # ... and at most this fraction of its length beside it
MIN_LEG_TORSO = 1.1  # hip->ankle over shoulder->hip image length: ~1.7 standing, below 1 for most sitting
MIN_LEG_RATIO = 0.8  # shorter over longer leg (hip->ankle) in the image: ~1 on both feet, ~0.6 a foot raised
# The same, where a raised foot hardly matters (a steep view foreshortens a walker's two legs unequally: the
# strict test rejected ~70% of a ceiling camera's walking frames); still rejects a leg folded under the body.
LOOSE_LEG_RATIO = 0.4
MAX_LEAN_DEG = 10.0  # an upright body's ankle->shoulder line is within this of the vertical
MAX_VIEW_GAIN = 4.0  # a body seen within ~14 deg of the vertical: its lean magnified at most this much


class TooFewPeopleError(InputError):
    """Too few usable person-frames (upright, confident joints) to calibrate a scene; says how many."""


@dataclass(frozen=True, eq=False)
class BodyPoints:
    """Joint midpoints of N person-frames: pixels (N, 2) and homogeneous rays ``[x, y, 1]`` (N, 3), NaN
    where a side is unseen; ``feet`` (N, 2, 3) the rays of the left and right ankle (NaN where unseen);
    ``lin`` (N, 2, 2) maps normalised image directions to pixel directions (the linear part of K);
    ``ankle_inside`` (N,) is False for ankles within ``border_px`` of the image border; ``leg_ratio`` (N,) the
    shorter over the longer leg's hip -> ankle image length (NaN where a side is unseen)."""

    ankle_px: np.ndarray
    knee_px: np.ndarray
    hip_px: np.ndarray
    shoulder_px: np.ndarray
    ankle: np.ndarray
    knee: np.ndarray
    hip: np.ndarray
    shoulder: np.ndarray
    feet: np.ndarray
    lin: np.ndarray
    ankle_inside: np.ndarray
    leg_ratio: np.ndarray

    def __len__(self) -> int:
        return len(self.ankle)


def as_intrinsics(K: np.ndarray | torch.Tensor, n: int) -> np.ndarray:
    """``K`` as float64 (n, 3, 3) from one (3, 3) or per-frame (n, 3, 3); :class:`InputError` if unusable."""
    K = np.asarray(K.detach().cpu() if isinstance(K, torch.Tensor) else K, dtype=np.float64)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (n, 3, 3))
    if K.shape != (n, 3, 3):
        raise InputError(f"K must be (3, 3) or ({n}, 3, 3) for {n} person-frames, got {K.shape}")
    why = check_intrinsics(torch.from_numpy(np.array(K)))  # a copy: broadcast views are read-only
    if why:
        raise InputError(f"unusable intrinsics: {why}")
    return K


def as_keypoints(keypoints_xyc: np.ndarray | torch.Tensor) -> np.ndarray:
    """Keypoints as float64 (N, 17, 3) ``(x, y, confidence)``; :class:`InputError` for another shape."""
    kp = keypoints_xyc.detach().cpu() if isinstance(keypoints_xyc, torch.Tensor) else keypoints_xyc
    kp = np.asarray(kp, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
        raise InputError(f"keypoints must be (N, {NUM_KEYPOINTS}, 3) (x, y, conf), got {kp.shape}")
    return kp


def _midpoint(kp: np.ndarray, a: int, b: int, min_conf: float) -> np.ndarray:
    pts = kp[:, (a, b)]
    seen = (np.nan_to_num(pts[..., 2], nan=0.0) >= min_conf) & np.isfinite(pts[..., :2]).all(-1)
    mid = pts[..., :2].mean(1)
    return np.where(seen.all(1)[:, None], mid, np.nan)


def body_points(
    keypoints_xyc: np.ndarray | torch.Tensor,
    K: np.ndarray | torch.Tensor,
    min_conf: float = DEFAULT_MIN_CONF,
    image_wh: tuple[int, int] | None = None,
    border_px: float = BORDER_PX,
) -> BodyPoints:
    """Midpoints and rays of each person-frame's ankles, knees, hips, shoulders (:class:`BodyPoints`)."""
    kp = as_keypoints(keypoints_xyc)
    n = len(kp)
    Kn = as_intrinsics(K, n)
    pxs = [_midpoint(kp, a, b, min_conf) for a, b in ((L_ANKLE, R_ANKLE), (L_KNEE, R_KNEE), (L_HIP, R_HIP))]
    pxs.append(_midpoint(kp, L_SHOULDER, R_SHOULDER, min_conf))
    for k in (L_ANKLE, R_ANKLE):
        pxs.append(_midpoint(kp, k, k, min_conf))
    stacked = torch.as_tensor(np.stack(pxs, 1))  # (n, 6, 2)
    xy = normalise_pixels(stacked, torch.tensor(np.asarray(Kn))).numpy()  # a copy: Kn may be a read-only view
    rays = np.concatenate((xy, np.ones_like(xy[..., :1])), -1)
    rays[~np.isfinite(xy).all(-1)] = np.nan
    inside = np.ones(n, dtype=bool)
    if image_wh is not None:
        w, h = float(image_wh[0]), float(image_wh[1])
        ank = kp[:, (L_ANKLE, R_ANKLE), :2]
        inside = (
            (ank[..., 0] >= border_px)
            & (ank[..., 0] <= w - border_px)
            & (ank[..., 1] >= border_px)
            & (ank[..., 1] <= h - border_px)
        ).all(1)
    legs = [
        np.linalg.norm(_midpoint(kp, ankle, ankle, min_conf) - _midpoint(kp, hip, hip, min_conf), axis=-1)
        for hip, ankle in ((L_HIP, L_ANKLE), (R_HIP, R_ANKLE))
    ]
    with np.errstate(invalid="ignore", divide="ignore"):
        leg_ratio = np.minimum(*legs) / np.maximum(*legs)
    rays_of = (rays[:, k] for k in range(4))
    return BodyPoints(*pxs[:4], *rays_of, rays[:, 4:6], np.array(Kn[:, :2, :2]), inside, leg_ratio)


def legs_straight(
    points: BodyPoints,
    knee_span: tuple[float, float] = KNEE_SPAN,
    knee_offset: float = KNEE_OFFSET,
    min_leg_torso: float = MIN_LEG_TORSO,
    min_leg_ratio: float = MIN_LEG_RATIO,
) -> np.ndarray:
    """(N,) image-only test of a standing or walking body: the knees project between hips and ankles, the
    legs look longer than the torso and about as long as each other (no foot raised). False where any of the
    four midpoints is unseen."""
    leg = points.ankle_px - points.hip_px
    leg2 = (leg**2).sum(-1)
    rel = points.knee_px - points.hip_px
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (rel * leg).sum(-1) / leg2
        off = np.abs(rel[:, 0] * leg[:, 1] - rel[:, 1] * leg[:, 0]) / leg2
        ratio = np.sqrt(leg2) / np.linalg.norm(points.hip_px - points.shoulder_px, axis=-1)
        ok = (t > knee_span[0]) & (t < knee_span[1]) & (off < knee_offset) & (ratio > min_leg_torso)
        ok &= points.leg_ratio >= min_leg_ratio
    return ok & np.isfinite(t) & np.isfinite(ratio)


def up_direction_px(up: np.ndarray, ray: np.ndarray, lin: np.ndarray) -> np.ndarray:
    """(..., 2) pixel direction in which the image of a point on ``ray`` moves when the point moves along
    ``up`` (3,) or (..., 3): towards the vertical vanishing point, defined also when that is at infinity."""
    up = np.asarray(up, dtype=np.float64)
    d = up[..., :2] - ray[..., :2] * up[..., 2:3]
    return np.einsum("...ij,...j->...i", lin, d)


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees [0, 180] between 2D directions (..., 2); NaN where one has zero length."""
    cross = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    dot = (a * b).sum(-1)
    out = np.degrees(np.arctan2(np.abs(cross), dot))
    zero = (np.linalg.norm(a, axis=-1) == 0) | (np.linalg.norm(b, axis=-1) == 0)
    return np.where(zero, np.nan, out)


def lean_deg(points: BodyPoints, up: np.ndarray) -> np.ndarray:
    """(N,) angle in the image between each mid-ankle -> mid-shoulder line and the direction of ``up`` at the
    ankle (0 = perfectly upright, 180 = upside down); NaN where ankles or shoulders are unseen."""
    return angle_deg(points.shoulder_px - points.ankle_px, up_direction_px(up, points.ankle, points.lin))


def view_gain(ray: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(N,) how much a body's sideways lean is magnified in the image at the point on each ``ray`` (N, 3):
    1 / sin of the angle between the line of sight and ``up`` (a vertical seen steeply from above is
    foreshortened, a sideways lean is not), at most :data:`MAX_VIEW_GAIN`; NaN for an unseen point."""
    ray = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    sin = np.linalg.norm(np.cross(ray, np.asarray(up, np.float64)), axis=-1)
    return 1.0 / np.maximum(sin, 1.0 / MAX_VIEW_GAIN)


def body_lean_deg(points: BodyPoints, up: np.ndarray) -> np.ndarray:
    """(N,) the body's sideways lean (degrees) that its image lean (:func:`lean_deg`) shows from where the
    camera sees it (:func:`view_gain`): a walker 3 deg off the vertical leans 9 deg in the image of a camera
    70 deg down. Image leans of 90 deg and more are returned as they are."""
    img = lean_deg(points, up)
    with np.errstate(invalid="ignore"):
        body = np.degrees(np.arctan(np.tan(np.radians(img)) / view_gain(points.ankle, up)))
        return np.where(img < 90.0, body, img)


def upright_mask(
    points: BodyPoints,
    up: np.ndarray,
    max_lean_deg: float = MAX_LEAN_DEG,
    min_leg_ratio: float = MIN_LEG_RATIO,
    body_lean: bool = False,
) -> np.ndarray:
    """(N,) standing or walking: :func:`legs_straight` and the ankle->shoulder line within ``max_lean_deg``
    of the vertical through the ankles, in the image (:func:`lean_deg`: a steep view magnifies a sideways
    lean, and a raised foot's, so the test is stricter there) or (``body_lean``) as the body leans
    (:func:`body_lean_deg`: as strict from every view)."""
    lean = body_lean_deg(points, up) if body_lean else lean_deg(points, up)
    with np.errstate(invalid="ignore"):
        return legs_straight(points, min_leg_ratio=min_leg_ratio) & (lean < max_lean_deg)
