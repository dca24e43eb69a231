"""The camera's up direction from the people it sees: upright bodies are vertical lines, and vertical lines
meet at the vertical vanishing point.

Each person-frame with confident ankles and shoulders (and, as an image-only sanity check, knees between hips
and ankles: :func:`depth_pose.scene.joints.legs_straight`) gives the plane through the camera centre and its
mid-ankle -> mid-shoulder line, with normal ``n = ray_ankle x ray_shoulder``. The up direction ``u`` lies in
every such plane: ``n . u = 0``. Optionally (``torso_lines``) a person whose ankles are unseen gives a weaker
mid-hip -> mid-shoulder line. Sitting, lying or bending people are outliers:

1. RANSAC: ``u = n_i x n_j`` for random pairs, scored (MSAC) by the image angle between each line and the
   direction towards the candidate vanishing point, with a per-line threshold (lean + pixel noise / length).
2. IRLS: the smallest eigenvector of ``sum w_i n_i n_i^T`` over the inliers, where ``w_i`` turns ``n_i . u``
   into the image angle (``sin angle = |n . u| / (|n_xy| |d_pred|)``) over its expected spread, times a
   Cauchy weight.
3. Sign: ``u`` points from the ankle towards the shoulder on most inliers.

The uncertainty is a covariance of ``u`` in its tangent plane, propagated to pitch and roll, at least as
large in every direction as each of: a cluster-robust sandwich (clusters = tracks, so a person seen in many
frames counts as one source of lean), a model in which each person's body keeps a 3D lean of
:data:`TRACK_LEAN_DEG` (per horizontal axis) over their frames, and, with tracks of at least five people, a
leave-one-person-out jackknife. A handful of tracks make the sandwich too small (median |error| / sigma was
2.2 on the scene suite's development scenes); the lean was once modelled as an image angle, which a camera
70 deg down sees 2-3x larger than the body's (the verticals' sigma covered the error in 16% of the
development scenes at a 10 m ceiling after 50 person-frames; ~50% with the 3D lean and the jackknife).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from depth_pose.geometry import pitch_roll_from_up
from depth_pose.scene.floor import MIN_JACKKNIFE_TRACKS, cov_upper, jackknife_cov
from depth_pose.scene.joints import (
    LOOSE_LEG_RATIO,
    PIXEL_NOISE,
    BodyPoints,
    TooFewPeopleError,
    angle_deg,
    legs_straight,
    up_direction_px,
)

LEAN_DEG = 2.0  # typical lean of a standing or walking person's ankle->shoulder line (1 sigma)
TRACK_LEAN_DEG = 1.5  # the part one person keeps over frames (posture, build, gait): 1 sigma, per axis in 3D
TORSO_LEAN_FACTOR = 2.0  # hip->shoulder lines lean more
INLIER_SIGMAS = 2.5  # RANSAC inlier threshold in units of each line's expected angle spread
MIN_LINES = 8
# A refit whose eigen-gap fell below this share of the full fit's is nearly undetermined (people almost on
# one line of sight: 0.6-5%; the scene suite's six walkers: below 15% in 5% of fits)
DEGENERATE_GAP = 0.1


@dataclass(frozen=True, eq=False)
class UpEstimate:
    """Up direction in camera coordinates (unit, (3,)), its pitch/roll (degrees, the project's conventions)
    and 1-sigma uncertainties (degrees; ``sigma_deg`` = total direction uncertainty); ``inliers`` (N,) marks
    the person-frames whose line agreed, ``lean_deg`` (N,) is each line's angle to the estimate (NaN where
    there is no line), ``cov`` (3, 3) the covariance of ``up_cam`` (in its tangent plane; NaN if unknown)."""

    up_cam: np.ndarray
    pitch_deg: float
    roll_deg: float
    sigma_deg: float
    sigma_pitch_deg: float
    sigma_roll_deg: float
    n_inliers: int
    n_lines: int
    inliers: np.ndarray
    lean_deg: np.ndarray
    cov: np.ndarray


@dataclass(frozen=True, eq=False)
class Lines:
    """Image lines of upright-candidate person-frames: from/to rays (L, 3) and pixels (L, 2), pixel linear
    map (L, 2, 2), expected angle spread (L,) radians, and the person-frame each came from (L,)."""

    ray0: np.ndarray
    px0: np.ndarray
    px1: np.ndarray
    normal: np.ndarray
    lin: np.ndarray
    sigma: np.ndarray
    frame: np.ndarray


def lines_from_points(
    points: BodyPoints,
    torso_lines: bool = False,
    lean_deg: float = LEAN_DEG,
    pixel_noise: float = PIXEL_NOISE,
) -> Lines:
    """Mid-ankle -> mid-shoulder lines of person-frames passing :func:`legs_straight`, plus (``torso_lines``)
    mid-hip -> mid-shoulder lines of those whose ankles are unseen."""
    full = legs_straight(points, min_leg_ratio=LOOSE_LEG_RATIO)  # the robust fit copes with a raised foot
    parts = [(np.flatnonzero(full), points.ankle, points.ankle_px, 1.0)]
    if torso_lines:
        seen = np.isfinite(points.hip).all(1) & np.isfinite(points.shoulder).all(1)
        torso = seen & ~np.isfinite(points.ankle).all(1)
        parts.append((np.flatnonzero(torso), points.hip, points.hip_px, TORSO_LEAN_FACTOR))
    idx = np.concatenate([p[0] for p in parts])
    ray0 = np.concatenate([p[1][p[0]] for p in parts])
    px0 = np.concatenate([p[2][p[0]] for p in parts])
    lean = np.concatenate([np.full(len(p[0]), math.radians(lean_deg) * p[3]) for p in parts])
    px1, ray1 = points.shoulder_px[idx], points.shoulder[idx]
    length = np.linalg.norm(px1 - px0, axis=-1)
    normal = np.cross(ray0, ray1)
    with np.errstate(divide="ignore", invalid="ignore"):
        normal = normal / np.linalg.norm(normal, axis=-1, keepdims=True)
        sigma = np.sqrt(lean**2 + (pixel_noise * math.sqrt(2.0) / length) ** 2)
    ok = np.isfinite(normal).all(1) & (length > 0)
    return Lines(ray0[ok], px0[ok], px1[ok], normal[ok], points.lin[idx][ok], sigma[ok], idx[ok])


def line_angles(lines: Lines, up: np.ndarray) -> np.ndarray:
    """(..., L) image angle in degrees between each line and the direction of ``up`` (..., 3) at its start."""
    up = np.asarray(up, dtype=np.float64)
    pred = up_direction_px(up[..., None, :], lines.ray0, lines.lin)
    return angle_deg(lines.px1 - lines.px0, pred)


def track_weights(
    lines: Lines, track_ids: np.ndarray | None, track_lean_deg: float = TRACK_LEAN_DEG
) -> np.ndarray:
    """(L,) each line's share of its person's evidence: ``1 / (1 + n_t (track_lean / sigma)^2)`` for a person
    with ``n_t`` lines, so a person's lines, who keep one lean, saturate at about one person's worth (a
    person standing still for 23 frames, leaning 11 deg in the image, outvoted four walkers). 1 / (1 +
    (track_lean / sigma)^2), the same for every line, without track ids."""
    if track_ids is None:
        n_t = np.ones(len(lines.frame))
    else:
        inv = np.unique(np.asarray(track_ids)[lines.frame], return_inverse=True)[1]
        n_t = np.bincount(inv)[inv].astype(np.float64)
    return 1.0 / (1.0 + n_t * (math.radians(track_lean_deg) / lines.sigma) ** 2)


def _ransac(
    lines: Lines, thr: np.ndarray, omega: np.ndarray, iterations: int, rng: np.random.Generator, cap: int
) -> np.ndarray:
    n = len(lines.frame)
    score_idx = rng.choice(n, size=cap, replace=False) if n > cap else np.arange(n)
    i, j = rng.integers(0, n, iterations), rng.integers(0, n, iterations)
    cand = np.cross(lines.normal[i], lines.normal[j])
    norm = np.linalg.norm(cand, axis=1)
    cand = cand[norm > 5e-3] / norm[norm > 5e-3, None]
    if len(cand) == 0:
        raise TooFewPeopleError(
            "all upright people stand on one line of sight: the up direction is undefined"
        )
    sub = Lines(*(getattr(lines, f)[score_idx] for f in Lines.__dataclass_fields__))
    ang = line_angles(sub, cand)  # (M, S)
    t2 = np.radians(thr[score_idx]) ** 2
    om = omega[score_idx]
    cost_pos = (np.minimum(np.nan_to_num(np.radians(ang), nan=np.pi) ** 2 / t2, 1.0) * om).sum(1)
    cost_neg = (np.minimum(np.nan_to_num(np.radians(180.0 - ang), nan=np.pi) ** 2 / t2, 1.0) * om).sum(1)
    best = int(np.argmin(np.minimum(cost_pos, cost_neg)))
    return cand[best] * (1.0 if cost_pos[best] <= cost_neg[best] else -1.0)


def _weights(
    lines: Lines, u: np.ndarray, omega: np.ndarray, robust_c: float = 2.5
) -> tuple[np.ndarray, np.ndarray]:
    """IRLS weights turning ``n . u`` into a standardised image angle (times the lines' shares ``omega`` of
    their person's evidence), and the angles (degrees)."""
    ang = line_angles(lines, u)
    d = u[:2] - lines.ray0[:, :2] * u[2]  # direction towards the vanishing point, normalised coordinates
    with np.errstate(divide="ignore"):  # |n . u| * scale = sin(image angle) (square pixels)
        scale = 1.0 / (np.linalg.norm(lines.normal[:, :2], axis=-1) * np.linalg.norm(d, axis=-1))
    r = np.radians(ang) / lines.sigma
    w = omega * scale**2 / lines.sigma**2 / (1.0 + (r / robust_c) ** 2)
    return np.where(np.isfinite(w), w, 0.0), ang


def estimate_up(
    points: BodyPoints,
    track_ids: np.ndarray | None = None,
    *,
    torso_lines: bool = False,
    lean_deg: float = LEAN_DEG,
    pixel_noise: float = PIXEL_NOISE,
    inlier_sigmas: float = INLIER_SIGMAS,
    iterations: int = 512,
    refine_steps: int = 8,
    seed: int = 0,
) -> UpEstimate:
    """Estimate ``up_cam`` from the people in ``points`` (see the module docstring). ``track_ids`` (N,),
    optional, groups person-frames of one person for the uncertainty. :class:`TooFewPeopleError` when fewer
    than :data:`MIN_LINES` lines are usable."""
    lines = lines_from_points(points, torso_lines, lean_deg, pixel_noise)
    n_lines = len(lines.frame)
    if n_lines < MIN_LINES:
        raise TooFewPeopleError(
            f"{n_lines} upright person-frames with confident ankles, knees, hips and shoulders; "
            f"at least {MIN_LINES} are needed to find the up direction"
        )
    thr = np.degrees(inlier_sigmas * lines.sigma)
    rng = np.random.default_rng(seed)
    omega = track_weights(lines, track_ids)
    u = _ransac(lines, thr, omega, iterations, rng, cap=2000)
    for _ in range(refine_steps):
        w, ang = _weights(lines, u, omega)
        inl = ang < thr
        if inl.sum() < 3:
            break
        nw = lines.normal[inl] * np.sqrt(w[inl])[:, None]
        evecs = np.linalg.eigh(nw.T @ nw)[1]
        new = evecs[:, 0]
        u = new if np.dot(new, u) >= 0 else -new
    w, ang = _weights(lines, u, omega)
    if np.nansum(ang < 90.0) < np.nansum(ang > 90.0):  # u points from the ankle towards the shoulder
        u, ang = -u, 180.0 - ang
    inl = ang < thr
    cov3 = _covariance(lines, u, w * inl, omega, track_ids)
    if not np.isfinite(cov3).all():  # too few inliers or tracks to say how well the direction is known
        raise TooFewPeopleError(
            f"the up direction is not determined by these people ({int(inl.sum())} of {n_lines} upright "
            "person-frames agree; no uncertainty can be computed)"
        )
    pitch, roll, s_pitch, s_roll = pitch_roll_sigma(u, cov3)
    per_frame_inl = np.zeros(len(points), dtype=bool)
    per_frame_inl[lines.frame[inl]] = True
    lean = np.full(len(points), np.nan)
    lean[lines.frame] = ang
    return UpEstimate(
        u,
        pitch,
        roll,
        math.degrees(math.sqrt(max(float(np.trace(cov3)), 0.0))),
        s_pitch,
        s_roll,
        int(inl.sum()),
        n_lines,
        per_frame_inl,
        lean,
        cov3,
    )


def _covariance(
    lines: Lines,
    u: np.ndarray,
    w: np.ndarray,
    omega: np.ndarray,
    track_ids: np.ndarray | None,
    track_lean_deg: float = TRACK_LEAN_DEG,
) -> np.ndarray:
    """Covariance (3, 3) of the unit vector ``u`` in its tangent plane, at least as large in every direction
    (:func:`~depth_pose.scene.floor.cov_upper`) as the cluster-robust (sandwich) one, a model-based one in
    which every line has its expected spread and every person's body keeps a 3D lean of ``track_lean_deg``
    (per horizontal axis) over all their frames, and, with track ids and at least
    :data:`~depth_pose.scene.floor.MIN_JACKKNIFE_TRACKS` people, the leave-one-person-out jackknife (with a
    handful of people the sandwich is itself too noisy, and on average too small, to be trusted alone)."""
    a = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(u, a)
    e1 /= np.linalg.norm(e1)
    E = np.stack((e1, np.cross(u, e1)), 1)  # (3, 2)
    t = lines.normal @ E  # (L, 2)
    r = lines.normal @ u
    H = (t * w[:, None]).T @ t
    g = t * (w * r)[:, None]
    clusters = lines.frame if track_ids is None else np.asarray(track_ids)[lines.frame]
    _, inv = np.unique(clusters[w > 0], return_inverse=True)
    G = int(inv.max()) + 1 if len(inv) else 0
    if G < 3:
        return np.full((3, 3), np.nan)
    gs = np.zeros((G, 2))
    np.add.at(gs, inv, g[w > 0])
    meat = gs.T @ gs * G / (G - 1)
    # model: a person leaning by l (their body's vertical u + E l, l in the tangent plane) has lines with
    # n . (u + E l) = 0, i.e. residual r = -t . l: one 3D lean per person, whatever the view (a camera
    # 70 deg down sees a 1.5 deg sideways lean as 4-5 deg in the image)
    shared = np.zeros((G, 2, 2))
    np.add.at(shared, inv, (w[:, None, None] * t[:, :, None] * t[:, None, :])[w > 0])
    indep = (t * (w * omega)[:, None]).T @ t  # each line's own spread, under weights w (omega of 1/variance)
    model = indep + math.radians(track_lean_deg) ** 2 * np.einsum("gij,gkj->ik", shared, shared)
    Hi = np.linalg.pinv(H)
    cands = [Hi @ meat @ Hi, Hi @ model @ Hi]
    if track_ids is not None and G >= MIN_JACKKNIFE_TRACKS:
        jack = _jackknife(lines.normal[w > 0], w[w > 0], inv, u, E)
        if jack is not None:
            cands.append(jack)
    return E @ cov_upper(cands) @ E.T


def _jackknife(
    normal: np.ndarray, w: np.ndarray, g: np.ndarray, u: np.ndarray, E: np.ndarray
) -> np.ndarray | None:
    """(2, 2) leave-one-track-out jackknife covariance (:func:`~depth_pose.scene.floor.jackknife_cov`) of
    the up direction in tangent coordinates ``E`` (3, 2) at ``u``: the weighted eigen-fit of the lines
    ``normal`` (L, 3), weights ``w`` (L,), redone without each track ``g`` (L,) (0..G-1) in turn (at the
    full fit's weights). None when some refit is degenerate (the other people's lines nearly share one plane
    through the camera: their eigenvector is arbitrary, and so would the jackknife be)."""
    G = int(g.max()) + 1
    parts = np.zeros((G, 3, 3))
    np.add.at(parts, g, np.einsum("li,lj,l->lij", normal, normal, w))
    A = parts.sum(0)
    full = np.linalg.eigvalsh(A)
    vals, vecs = np.linalg.eigh(A[None] - parts)  # all refits at once: (G, 3), (G, 3, 3)
    if (vals[:, 1] - vals[:, 0] < DEGENERATE_GAP * (full[1] - full[0])).any():
        return None
    v = vecs[:, :, 0]
    v *= np.where(v @ u >= 0, 1.0, -1.0)[:, None]
    return jackknife_cov(v @ E)


def pitch_roll_sigma(u: np.ndarray, cov3: np.ndarray) -> tuple[float, float, float, float]:
    """``(pitch_deg, roll_deg, sigma_pitch_deg, sigma_roll_deg)`` of a unit up vector (3,) with covariance
    (3, 3) (first-order propagation; NaN sigmas for a NaN covariance)."""
    pitch, roll = pitch_roll_from_up(torch.as_tensor(u, dtype=torch.float64))
    # pitch = asin(u_z), roll = atan2(u_x, -u_y): first-order propagation of the covariance.
    jp = np.array([0.0, 0.0, 1.0 / max(math.sqrt(max(1.0 - u[2] ** 2, 0.0)), 1e-9)])
    rxy = max(u[0] ** 2 + u[1] ** 2, 1e-12)
    jr = np.array([-u[1], u[0], 0.0]) / rxy
    sp = math.degrees(math.sqrt(max(float(jp @ cov3 @ jp), 0.0))) if np.isfinite(cov3).all() else math.nan
    sr = math.degrees(math.sqrt(max(float(jr @ cov3 @ jr), 0.0))) if np.isfinite(cov3).all() else math.nan
    return float(pitch), float(roll), sp, sr
