"""Model depths combined with what a calibrated scene adds: the floor under each person's feet, and each
tracked person's own scale.

Per person-frame (the model's mid-hip depth ``z_m`` with spread ``sigma_m``):

1. Ground contact (only on a floor shown to be level, ``calib.planar``): for upright people
   (:func:`~depth_pose.scene.joints.upright_mask`) with confident ankles away from the image border
   (``image_wh``) whose two feet could both stand on the floor (:func:`~depth_pose.scene.floor.
   feet_on_floor`: not one foot lifted), the mid-hip depth above where the mid-ankle ray meets the floor
   (:func:`~depth_pose.scene.floor.ground_depth`): ``z_g``, ``sigma_g``.
2. Track scale: the model misjudges a person's size by the same factor in every frame (stature, build). Per
   track with at least ``min_track_frames`` ground depths, ``s`` = median of ``z_g / z_m`` (robust to lifted
   feet), with a MAD-based uncertainty; the track's prior becomes ``s z_m`` on all its frames (feet hidden
   included). Its spread: with the person's size error removed, what is left is the frame-to-frame scatter
   of ``z_g / z_m`` (measured, at least ``MIN_REL_SPREAD``; from ``min_spread_frames`` frames on; a frame
   whose relative model spread exceeds the median of the frames it was measured on keeps that excess
   variance: a frame with few joints stays as uncertain as the model says), plus the scale's own
   uncertainty, never more than the model's ``s sigma_m``.
3. Fusion: inverse-variance mean of the prior and ``z_g``, unless they disagree by more than ``gate_sigmas``
   combined sigmas: then the prior alone. The failures of a ground contact (feet in the air, a truncated leg
   whose ankle is guessed too high, a person standing on something) all put it *further* than the truth,
   so that side has the tighter gate, ``gate_sigmas_farther``. The combined sigma of the gate is the
   smaller of the stated one and what the scene shows: the robust spread of ``log(z_g / prior)`` over all
   its person-frames (at least ``MIN_GATE_REL``), so an over-cautious model spread does not let a jump
   through.
4. The calibration's own error (its camera height and up direction, ``sigma_height_m``, ``sigma_pitch_deg``,
   ``sigma_roll_deg``) is the same for every person-frame it touches: no number of frames averages it away.
   A track's scale is therefore measured on the ground contacts' spreads *given* the calibration, and carries
   the calibration's relative share of its ground contacts' errors (their median) whole; the fusion of step 3
   is the best linear combination of two estimates whose errors share that part (a track-scaled prior and a
   ground contact: nearly all of it; the bare model and a ground contact: none), and so is its gate. Without
   that, a track's scale divided the height's uncertainty by the square root of its frames: on the scene
   suite's development scenes 47-54% of the scene-aware depths lay within 1 sigma (68% expected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from depth_pose.scene.calibration import SceneCalibration
from depth_pose.scene.floor import (
    ANKLE_HEIGHT_M,
    feet_on_floor,
    foot_lift_harmless,
    ground_depth,
)
from depth_pose.scene.joints import (
    DEFAULT_MIN_CONF,
    LOOSE_LEG_RATIO,
    MAX_LEAN_DEG,
    PIXEL_NOISE,
    body_points,
    upright_mask,
)

GATE_SIGMAS = 3.0
GATE_SIGMAS_FARTHER = 2.0  # ground contact further than the prior: the side where its failures lie
MIN_GATE_REL = 0.03  # the gate's relative sigma never drops below this
MIN_TRACK_FRAMES = 3
MIN_SPREAD_FRAMES = 5  # frames needed to trust a track's measured frame-to-frame scatter
MIN_REL_SPREAD = 0.02
SOURCE_MODEL, SOURCE_TRACK, SOURCE_GROUND = "model", "track", "ground"


@dataclass(frozen=True)
class TrackScale:
    """A track's depth scale ``z_ground / z_model`` (median), its 1-sigma uncertainty, the relative
    frame-to-frame scatter of the ratio (robust), and how many frames."""

    scale: float
    sigma: float
    spread: float
    n_frames: int


@dataclass(frozen=True, eq=False)
class FusedDepth:
    """Per person-frame (N,): the depth ``z`` and its spread, where it came from (``source``: ``"model"``,
    ``"track"`` = model times the track's scale, ``"ground"`` = fused with the ground contact), the ground
    contact depth and spread (NaN where unusable), and the track scale applied (1 where none); plus each
    track's :class:`TrackScale`, and the part of each sigma that the calibration's error shares across
    frames (``sigma_shared``: a time filter must not average it away; None = none)."""

    z: np.ndarray
    sigma: np.ndarray
    source: np.ndarray
    z_ground: np.ndarray
    sigma_ground: np.ndarray
    scale: np.ndarray
    track_scales: dict[Any, TrackScale] = field(default_factory=dict)
    sigma_shared: np.ndarray | None = None  # the part of sigma the calibration shares across frames


def _array(x: Any, n: int, name: str) -> np.ndarray:
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).reshape(-1)
    if len(x) != n:
        raise ValueError(f"{name} has {len(x)} entries for {n} person-frames")
    return x


def track_scales(
    ratio: np.ndarray, rel_sigma: np.ndarray, track_ids: np.ndarray, min_frames: int = MIN_TRACK_FRAMES
) -> dict[Any, TrackScale]:
    """Per track: median of the finite ``ratio`` (N,) values (``z_ground / z_model``) with uncertainty
    ``1.25 * 1.4826 * MAD / sqrt(n)``, at least ``median * median(rel_sigma) / sqrt(n)`` (``rel_sigma`` the
    ground depths' relative spread), and the relative scatter ``1.4826 * MAD / median``; tracks with fewer
    than ``min_frames`` finite ratios are left out."""
    out: dict[Any, TrackScale] = {}
    ok = np.isfinite(ratio) & np.isfinite(rel_sigma)
    ids, inv = np.unique(np.asarray(track_ids)[ok], return_inverse=True)
    r, rs = ratio[ok], rel_sigma[ok]
    for k, tid in enumerate(ids):
        sel = inv == k
        n = int(sel.sum())
        if n < min_frames:
            continue
        med = float(np.median(r[sel]))
        mad = float(np.median(np.abs(r[sel] - med)))
        sigma = max(1.2533 * 1.4826 * mad, med * float(np.median(rs[sel]))) / math.sqrt(n)
        spread = max(1.4826 * mad / med, MIN_REL_SPREAD) if med > 0 else math.inf
        out[tid.item() if hasattr(tid, "item") else tid] = TrackScale(med, sigma, spread, n)
    return out


def fuse_depths(
    calib: SceneCalibration,
    keypoints_xyc: np.ndarray | torch.Tensor,
    z_model: np.ndarray | torch.Tensor,
    sigma_model: np.ndarray | torch.Tensor,
    track_ids: np.ndarray | None = None,
    *,
    image_wh: tuple[int, int] | None = None,
    min_conf: float = DEFAULT_MIN_CONF,
    max_lean_deg: float = MAX_LEAN_DEG,
    gate_sigmas: float = GATE_SIGMAS,
    gate_sigmas_farther: float = GATE_SIGMAS_FARTHER,
    min_track_frames: int = MIN_TRACK_FRAMES,
    min_spread_frames: int = MIN_SPREAD_FRAMES,
    pixel_noise: float = PIXEL_NOISE,
) -> FusedDepth:
    """Combine model depths with the scene (see the module docstring). ``image_wh`` defaults to the
    calibration's; without a level floor (``calib.planar`` False) the model depths come back unchanged."""
    kp = keypoints_xyc
    n = len(kp)
    z_m, s_m = _array(z_model, n, "z_model"), _array(sigma_model, n, "sigma_model")
    image_wh = image_wh if image_wh is not None else calib.image_wh
    z_g = np.full(n, np.nan)
    s_g = np.full(n, np.nan)  # the ground contact's whole spread (reported)
    s_g_own = np.full(n, np.nan)  # ... given the calibration (fused)
    rel_cal = np.full(n, np.nan)  # the calibration's relative share of a ground contact's error
    if calib.planar and calib.height_m is not None:
        points = body_points(kp, calib.K, min_conf, image_wh)
        usable = upright_mask(points, calib.up_cam, max_lean_deg, LOOSE_LEG_RATIO) & points.ankle_inside
        usable &= foot_lift_harmless(points, calib.height_m - ANKLE_HEIGHT_M)
        usable &= feet_on_floor(calib.up_cam, calib.height_m, points, pixel_noise)
        sig_h = calib.sigma_height_m if calib.sigma_height_m is not None else 0.0
        zg, sg_own, sg_cal = ground_depth(
            calib.up_cam,
            calib.height_m,
            points,
            sig_h if math.isfinite(sig_h) else 0.0,
            pixel_noise,
            up_sigma_deg=(calib.sigma_pitch_deg, calib.sigma_roll_deg),
        )
        usable &= np.isfinite(zg) & np.isfinite(sg_own) & np.isfinite(sg_cal)
        z_g[usable], s_g_own[usable] = zg[usable], sg_own[usable]
        s_g[usable] = np.hypot(sg_own[usable], sg_cal[usable])
        with np.errstate(divide="ignore"):
            rel_cal[usable] = sg_cal[usable] / np.abs(zg[usable])
    scale, s_scale, scaled = np.ones(n), np.zeros(n), np.zeros(n, dtype=bool)
    rel_cal_p = np.zeros(n)  # the prior's share of the calibration's error (its track scale's)
    spread = np.full(n, np.inf)
    scales: dict[Any, TrackScale] = {}
    if track_ids is not None:
        tids = np.asarray(track_ids).reshape(-1)
        if len(tids) != n:
            raise ValueError(f"track_ids has {len(tids)} entries for {n} person-frames")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = z_g / z_m
            rel_m = s_m / np.abs(z_m)
            scales = track_scales(ratio, s_g_own / z_g, tids, min_track_frames)
        for tid, ts in scales.items():
            sel = tids == tid
            scale[sel], s_scale[sel], scaled[sel] = ts.scale, ts.sigma, True
            own = rel_cal[sel & np.isfinite(ratio) & np.isfinite(rel_cal)]
            rel_cal_p[sel] = np.median(own) if own.size else 0.0
            if ts.n_frames >= min_spread_frames:
                # the scatter was measured on the track's frames with a ground contact; a frame the model
                # is less sure of (few joints, an odd pose) keeps its own excess variance over theirs
                measured = sel & np.isfinite(ratio) & (rel_m > 0)
                typical = float(np.median(rel_m[measured])) if measured.any() else 0.0
                typical = min(typical, 1.0) if math.isfinite(typical) else 1.0
                rel = np.minimum(np.nan_to_num(rel_m[sel], nan=1.0), 1.0)  # beyond 100%: no information
                excess = np.maximum(rel**2 - typical**2, 0.0)
                spread[sel] = np.sqrt(ts.spread**2 + excess)
    z_p = z_m * scale
    s_p = np.minimum(s_m * scale, z_p * spread)
    s_p = np.maximum(np.hypot(s_p, z_m * s_scale), 1e-6 * np.abs(z_p))
    with np.errstate(invalid="ignore", divide="ignore"):
        # variances with the calibration's share (a: the prior's, through its track scale; b: the ground
        # contact's, both at the prior's depth) and their covariance: the same camera height moves both the
        # same way, at most by the smaller share (keeps both weights in [0, 1])
        a, b = rel_cal_p * np.abs(z_p), np.nan_to_num(rel_cal) * np.abs(z_p)
        shared = np.minimum(a, b)
        var_p, var_g, cov = s_p**2 + a**2, s_g_own**2 + b**2, shared**2
        var_d = s_p**2 + s_g_own**2 + (a**2 - shared**2) + (b**2 - shared**2)  # of their difference
        log_ratio = np.log(z_g / z_p)
        seen = np.isfinite(log_ratio)
        gate = np.sqrt(var_d)
        if seen.sum() >= min_track_frames:
            centre = np.median(log_ratio[seen])
            scene_rel = max(1.4826 * float(np.median(np.abs(log_ratio[seen] - centre))), MIN_GATE_REL)
            gate = np.minimum(gate, scene_rel * z_p)
        diff = z_g - z_p
        fuse = seen & (diff <= gate_sigmas_farther * gate) & (-diff <= gate_sigmas * gate)
        w_g = (var_p - cov) / var_d  # the best linear combination of two correlated estimates
        z_f = z_p + w_g * diff
        s_f = np.sqrt((var_p * var_g - cov**2) / var_d)
    z = np.where(fuse, z_f, z_p)
    sigma = np.where(fuse, s_f, np.sqrt(var_p))
    sigma_shared = np.where(fuse, (1.0 - w_g) * a + w_g * b, a)
    scaled &= np.isfinite(z_m)  # no depth (no joints): nothing was scaled
    source = np.where(fuse, SOURCE_GROUND, np.where(scaled, SOURCE_TRACK, SOURCE_MODEL))
    return FusedDepth(z, sigma, source, z_g, s_g, scale, scales, sigma_shared)
