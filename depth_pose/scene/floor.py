"""The floor under a fixed camera, from the people standing on it, and the depth it gives a person's mid-hip.

Geometry (camera frame, ``u`` = ``up_cam``, the camera at the origin). An upright person's mid-hip sits
vertically above their mid-ankle: ``H = A + t u`` with ``t > 0``, ``H`` on the mid-hip ray and ``A`` on the
mid-ankle ray. Ankles sit :data:`ANKLE_HEIGHT_M` above the floor, so the camera's height above the floor is
``h = -(u . A) + ANKLE_HEIGHT_M``.

* :func:`fit_floor` (height from model depths and the people's proportions): each upright person-frame's
  mid-hip at the model's depth ``z`` fixes ``H = z ray_hip``; ``A`` is the point of the ankle ray vertically
  below it (least squares in ``t`` and the ankle's ray distance); ``d = -(u . A)``, averaged in log with the
  drop at which the hip stands :data:`HIP_ABOVE_ANKLE_M` above the ankle (:func:`stature_log_drop`), and
  the per-frame values are combined robustly in log space at
  two levels: each track's median, then a Huber mean over tracks at the scale of people's size spread, so
  per-person stature errors average out, a child (read far too far) is an outlier track, but a bias shared by
  everyone stays. Each frame's position on the floor is where its hip ray meets the plane of the hips (from
  the ray alone, for :mod:`~depth_pose.scene.planarity`: :func:`standing_position`).
* :func:`ground_depth` (depth from the floor): the mid-ankle ray meets the plane ``u . X = -(h -
  ANKLE_HEIGHT_M)`` at ``A``; the mid-hip depth is that of the point of the hip ray vertically above ``A``
  (least squares in ``t`` and ``z`` of ``A + t u = z ray_hip``). Its uncertainty is propagated by finite
  differences (height, ankle-height spread, pixel noise, lean of the hip away from above the ankles).
* :func:`feet_on_floor`: both ankle rays meet the floor at most a stride apart (a raised foot's ray meets it
  far behind the foot).

The ankle height is one constant for everybody: it cancels between :func:`fit_floor` and
:func:`ground_depth`, so only the reported camera height depends on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_pose.scene.joints import (
    LOOSE_LEG_RATIO,
    MAX_LEAN_DEG,
    MIN_LEG_RATIO,
    PIXEL_NOISE,
    BodyPoints,
    TooFewPeopleError,
    upright_mask,
)

ANKLE_HEIGHT_M = 0.09  # ankle joint centre above the floor (0.08-0.1 m barefoot to shod)
ANKLE_HEIGHT_SIGMA_M = 0.03  # its spread: people, shoes, a foot lifted while walking
MAX_STRIDE_M = 0.9  # feet further apart than this on the floor (beyond pixel noise): a foot is lifted
LEAN_M = 0.05  # horizontal offset of the mid-hip from above the mid-ankle of a walking person (1 sigma)
MIN_REL_SIGMA = 0.02  # floor on a model depth's relative uncertainty
MIN_DROP_M = 0.05  # ankles less than this below the camera give no usable floor height
MIN_FLOOR_FRAMES = 10
SWING_LIFT_M = 0.1  # the mid-ankle's rise while one foot swings (the swing ankle rises ~0.2 m)
MAX_LIFT_SHARE = 0.02  # a raised foot may bias a drop by this much: beyond it, the legs must look alike
MIN_HIP_PLANE_SHARE = 0.3  # a camera barely above people's hips: their positions come from the ankles
HIP_ABOVE_ANKLE_M = 0.745  # adults' mid-hip keypoint above the mid-ankle: ~0.44 x their mean stature 1.685 m
# The training population's log-stature spread, children included (512 bodies of seed 0; adults 0.060): the
# model's size prior, so the mean size of G people seen is known to this over sqrt(G) and no better. (The
# robust fit's outlier scale, STATURE_LOG_SIGMA, stays narrower: a child read 30% too far must stand out.)
# Without track ids every frame counts as a person, so this floor is then as small as the frames are many.
POPULATION_LOG_SIGMA = 0.082
MIN_JACKKNIFE_TRACKS = 5  # fewer people: leaving one out can leave the rest undetermined (an arbitrary refit)
STATURE_LOG_SIGMA = (
    0.05  # people's size spread about the model's prior (log): tracks farther off are outliers
)


@dataclass(frozen=True, eq=False)
class FloorEstimate:
    """Camera height above the floor (metres) with its 1-sigma uncertainty, the person-frames that agreed
    (``inliers`` (N,)), and per person-frame (N,): ``drop`` = the mid-ankle's depth below the camera along up
    (NaN where unusable), ``position`` (N, 2) = where the person stands on the fitted level floor, in
    horizontal coordinates (camera-right, camera-forward; from the hip's ray alone, so neither a model
    depth's error nor the ankle's pixel moves it: :func:`standing_position`), ``rel_sigma`` = relative
    uncertainty of ``drop``, ``groups`` = the track index."""

    height_m: float
    sigma_height_m: float
    n_inliers: int
    n_candidates: int
    inliers: np.ndarray
    drop: np.ndarray
    position: np.ndarray
    rel_sigma: np.ndarray
    groups: np.ndarray


def horizontal_axes(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit horizontal directions (3,): camera-right and camera-forward, both orthogonal to ``up``."""
    up = np.asarray(up, dtype=np.float64)
    base = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.95 else np.array([0.0, 0.0, 1.0])
    lat = base - np.dot(base, up) * up
    lat /= np.linalg.norm(lat)
    return lat, np.cross(up, lat)


def solve2(p: np.ndarray, v1: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``(a, b)`` (N,) of ``p ~ a v1 + b v2`` for vectors (N, 3) or (3,); NaN if degenerate."""
    v1, v2 = np.broadcast_arrays(np.asarray(v1, np.float64), np.asarray(v2, np.float64))
    m11, m12, m22 = (v1 * v1).sum(-1), (v1 * v2).sum(-1), (v2 * v2).sum(-1)
    r1, r2 = (v1 * p).sum(-1), (v2 * p).sum(-1)
    det = m11 * m22 - m12**2
    ok = det > 1e-9 * m11 * m22
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(ok, (m22 * r1 - m12 * r2) / det, np.nan)
        b = np.where(ok, (m11 * r2 - m12 * r1) / det, np.nan)
    return a, b


def ankle_below_hip(
    up: np.ndarray, hip_ray: np.ndarray, ankle_ray: np.ndarray, z_hip: np.ndarray
) -> np.ndarray:
    """(N, 3) the point of each ankle ray vertically below the mid-hip at camera depth ``z_hip`` (NaN when the
    ankle is not below the hip or behind the camera)."""
    hip = hip_ray * np.asarray(z_hip, np.float64)[:, None]
    t, lam = solve2(hip, up, ankle_ray)
    with np.errstate(invalid="ignore"):
        ok = (t > 0) & (lam > 0)
    return np.where(ok[:, None], lam[:, None] * ankle_ray, np.nan)


def hip_depth_above_floor(
    up: np.ndarray,
    drop: np.ndarray | float,
    hip_ray: np.ndarray,
    ankle_ray: np.ndarray,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) camera z of the mid-hip vertically above where each ankle ray reaches ``drop`` metres below the
    camera along ``up`` (``offset`` (3,) moves the hip horizontally); NaN when the ankle ray does not go down
    or the hip would not be above the ankle."""
    up = np.asarray(up, np.float64)
    down = -(ankle_ray @ up)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(down > 1e-9, np.asarray(drop, np.float64) / down, np.nan)
    ankle = lam[:, None] * ankle_ray
    if offset is not None:
        ankle = ankle + offset
    neg_t, z = solve2(ankle, up, hip_ray)  # ankle = -t up + z hip_ray
    with np.errstate(invalid="ignore"):
        return np.where((neg_t < 0) & (z > 0), z, np.nan)


def ground_depth(
    up: np.ndarray,
    height_m: float,
    points: BodyPoints,
    sigma_height_m: float = 0.0,
    pixel_noise: float = PIXEL_NOISE,
    lean_m: float = LEAN_M,
    up_sigma_deg: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mid-hip depth (N,) of each person-frame from where its mid-ankle meets the floor, and two parts of its
    1-sigma uncertainty (N,): the frame's own (pixels, the ankle's height, a lean) and the calibration's
    (``sigma_height_m``; ``up_sigma_deg`` (pitch, roll), the up direction's, which dominates far away for a
    low camera: a 0.5 deg pitch error moves a person 20 m from a 1.5 m camera by ~12%). The calibration's
    part is the same error in every frame (no number of frames averages it away); the whole sigma is their
    ``hypot``. NaN where hips or ankles are unseen or the ankle ray does not reach the floor. Assumes the
    person stands upright with feet on the floor: callers check that (:func:`upright_mask`)."""
    up = np.asarray(up, np.float64)
    drop = height_m - ANKLE_HEIGHT_M
    hip, ankle = points.hip, points.ankle
    z = hip_depth_above_floor(up, drop, hip, ankle)
    var = (hip_depth_above_floor(up, drop + ANKLE_HEIGHT_SIGMA_M, hip, ankle) - z) ** 2
    var_cal = (hip_depth_above_floor(up, drop + sigma_height_m, hip, ankle) - z) ** 2
    inv = np.linalg.inv(points.lin)  # pixel directions -> normalised directions
    for k in range(2):
        d = np.zeros((len(z), 3))
        d[:, :2] = inv[:, :, k] * pixel_noise
        var += (hip_depth_above_floor(up, drop, hip, ankle + d) - z) ** 2
        var += (hip_depth_above_floor(up, drop, hip + d, ankle) - z) ** 2
    axes = horizontal_axes(up)
    for axis in axes:
        var += (hip_depth_above_floor(up, drop, hip, ankle, offset=-lean_m * axis) - z) ** 2
    if up_sigma_deg is not None:
        # camera-right tilts with the roll, camera-forward with the pitch
        for axis, sig in zip(axes, (up_sigma_deg[1], up_sigma_deg[0]), strict=True):
            if math.isfinite(sig) and sig > 0:
                tilted = up + math.tan(math.radians(sig)) * axis
                var_cal += (hip_depth_above_floor(tilted / np.linalg.norm(tilted), drop, hip, ankle) - z) ** 2
    return z, np.sqrt(var), np.sqrt(var_cal)


def floor_point(up: np.ndarray, drop: float, ray: np.ndarray) -> np.ndarray:
    """(N, 3) where each ray (N, 3) meets the plane ``drop`` metres below the camera along ``up``; NaN for
    rays that do not go down."""
    down = -(ray @ np.asarray(up, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((down > 1e-9)[:, None], ray * (drop / down)[:, None], np.nan)


def feet_on_floor(
    up: np.ndarray,
    height_m: float,
    points: BodyPoints,
    pixel_noise: float = PIXEL_NOISE,
    max_stride_m: float = MAX_STRIDE_M,
    noise_sigmas: float = 3.0,
) -> np.ndarray:
    """(N,) both ankles could stand on the floor: where their rays meet it, the feet are at most
    ``max_stride_m`` apart (plus ``noise_sigmas`` times what pixel noise makes of it). A lifted foot's ray
    meets the floor far behind it (``lift / tan(ray angle below the horizon)``), so it fails, the more
    surely the more the lift would bias a ground-contact depth. False where an ankle is unseen."""
    drop = height_m - ANKLE_HEIGHT_M
    feet = [floor_point(up, drop, points.feet[:, k]) for k in range(2)]
    inv = np.linalg.inv(points.lin)
    var = np.zeros(len(points))
    for k in range(2):
        for axis in range(2):
            d = np.zeros((len(points), 3))
            d[:, :2] = inv[:, :, axis] * pixel_noise
            var += ((floor_point(up, drop, points.feet[:, k] + d) - feet[k]) ** 2).sum(-1)
    apart = np.linalg.norm(feet[0] - feet[1], axis=-1)
    with np.errstate(invalid="ignore"):
        return apart <= max_stride_m + noise_sigmas * np.sqrt(var)


def stature_log_drop(
    points: BodyPoints,
    up: np.ndarray,
    idx: np.ndarray,
    fallback: np.ndarray,
    hip_above_ankle_m: float = HIP_ABOVE_ANKLE_M,
) -> np.ndarray:
    """(len(idx),) log of the ankles' drop below the camera that puts each upright person-frame's mid-hip
    ``hip_above_ankle_m`` above its mid-ankle (from pixels and ``up`` alone: the hip's height over the
    ankle's drop is scale-free); ``fallback`` where that is undefined."""
    z1 = hip_depth_above_floor(up, 1.0, points.hip[idx], points.ankle[idx])
    ratio = 1.0 - (-(points.hip[idx] * z1[:, None]) @ np.asarray(up, np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(hip_above_ankle_m / ratio)
    return np.where(np.isfinite(y), y, fallback)


def foot_lift_harmless(points: BodyPoints, drop: np.ndarray | float) -> np.ndarray:
    """(N,) a person-frame's legs look alike (:data:`~depth_pose.scene.joints.MIN_LEG_RATIO`), or a raised
    foot could not bias its ankles' ``drop`` below the camera by more than :data:`MAX_LIFT_SHARE`: a walker's
    swing foot is ~4% of a 2.5 m drop but 1% of a 10 m one, where a steep view makes the legs' image lengths
    unequal anyway. (The upright test has already applied the loose leg ratio.)"""
    with np.errstate(invalid="ignore"):
        return (points.leg_ratio >= MIN_LEG_RATIO) | (MAX_LIFT_SHARE * np.asarray(drop) >= SWING_LIFT_M)


def standing_position(
    points: BodyPoints,
    up: np.ndarray,
    drop: float,
    mask: np.ndarray,
    hip_above_ankle_m: float | None = None,
) -> np.ndarray:
    """(N, 2) where each person-frame in ``mask`` stands on the level floor ``drop`` metres below the camera,
    in horizontal coordinates (camera-right, camera-forward), from rays alone: where the mid-ankle ray meets
    the floor, or (``hip_above_ankle_m`` given) where the mid-hip ray meets the plane that far above the
    ankles' (unless that plane is less than :data:`MIN_HIP_PLANE_SHARE` of the drop below the camera). NaN
    elsewhere. The hip, where it can: the ankle pixel's noise and a lifted foot move the ankle's floor point
    away and its drop up together, so a regression of drops on ankle positions reads a tilt (a level camera:
    +0.8 deg after 200 person-frames at the true up, 0.0 from the hips)."""
    ray, plane = points.ankle, drop
    if hip_above_ankle_m is not None and drop - hip_above_ankle_m >= MIN_HIP_PLANE_SHARE * drop:
        ray, plane = points.hip, drop - hip_above_ankle_m
    with np.errstate(divide="ignore", invalid="ignore"):
        down = -(ray @ np.asarray(up, np.float64))
        at = ray * (plane / down)[:, None]
        at = np.where((mask & (down > 0))[:, None], at, np.nan)
    lat, fwd = horizontal_axes(up)
    return np.stack((at @ lat, at @ fwd), -1)


def feet_seen(points: BodyPoints, z_model: np.ndarray) -> np.ndarray:
    """(N,) person-frames whose ankles are seen, away from the image border, with a positive model depth:
    what :func:`fit_floor` needs of a frame besides an upright body (which depends on the up direction)."""
    z = np.asarray(z_model, np.float64).reshape(len(points))
    seen = np.isfinite(points.ankle).all(-1) & points.ankle_inside
    with np.errstate(invalid="ignore"):
        return seen & np.isfinite(z) & (z > 0)


def fit_floor(
    points: BodyPoints,
    up: np.ndarray,
    z_model: np.ndarray,
    sigma_model: np.ndarray,
    track_ids: np.ndarray | None = None,
    *,
    max_lean_deg: float = MAX_LEAN_DEG,
    hip_above_ankle_m: float = HIP_ABOVE_ANKLE_M,
    huber_k: float = 1.5,
    inlier_sigmas: float = 3.0,
    iterations: int = 20,
    min_people: int | None = None,
) -> FloorEstimate:
    """Camera height above the floor from upright person-frames and model mid-hip depths ``z_model`` (N,)
    with spreads ``sigma_model`` (N,) (see the module docstring). ``track_ids`` (N,) make each person count
    once and give honest uncertainties when a person is seen in many frames. :class:`TooFewPeopleError` when
    fewer than :data:`MIN_FLOOR_FRAMES` person-frames are usable, unless they come from at least
    ``min_people`` tracked people that the robust fit keeps (the height's error is the people's mean size,
    at least :data:`POPULATION_LOG_SIGMA` over the root of their number, which more frames of them do not
    shrink; ten frames are the safer count where the frames that pass the upright test are themselves a
    sign of the right up; without track ids ``min_people`` changes nothing). Upright means the body leans
    less than ``max_lean_deg``, however steeply it is seen
    (:func:`~depth_pose.scene.joints.body_lean_deg`: a camera 70 deg down magnifies a walker's sideways
    lean 2-3x in the image, and its image test kept half of them); the few sitting bodies a steep view
    lets through are outliers of the robust fit below.

    Each frame's drop is the mean (in log) of two cues that share the people's size prior: the model's
    depth, and the hip seen ``hip_above_ankle_m`` above the ankles (pixels and ``up`` only:
    :func:`stature_log_drop`). The model's depth carries its own view-dependent bias (it reads people seen
    from high above too far), the pixel ratio only the prior's; halving each. ``hip_above_ankle_m`` is the
    population's (the training bodies'); a caller whose people are built otherwise says so.

    Two levels, because a person's size error is shared by all their frames: each track's own robust
    height (its frames' median), then a robust mean over tracks whose scale is the stature spread
    (:data:`STATURE_LOG_SIGMA`): a child read 30% too far by the single-frame model is one rejected track,
    not 15% of the frames pulling everybody's floor."""
    up = np.asarray(up, np.float64)
    n = len(points)
    z = np.asarray(z_model, np.float64).reshape(n)
    sz = np.asarray(sigma_model, np.float64).reshape(n)
    groups = np.unique(np.arange(n) if track_ids is None else np.asarray(track_ids), return_inverse=True)[1]
    ankle = np.full((n, 3), np.nan)
    cand = upright_mask(points, up, max_lean_deg, LOOSE_LEG_RATIO, body_lean=True) & feet_seen(points, z)
    ankle[cand] = ankle_below_hip(up, points.hip[cand], points.ankle[cand], z[cand])
    drop = -(ankle @ up)
    with np.errstate(invalid="ignore"):
        cand &= np.isfinite(drop) & (drop > MIN_DROP_M) & foot_lift_harmless(points, drop)
    rel = np.sqrt(np.nan_to_num(sz / z, nan=np.inf) ** 2 + MIN_REL_SIGMA**2)
    idx = np.flatnonzero(cand)
    people = 0 if track_ids is None else len(np.unique(groups[idx]))
    if len(idx) < MIN_FLOOR_FRAMES and not (min_people and people >= min_people):
        also = (
            f" (or {min_people} tracked people; {people} seen)"
            if min_people and track_ids is not None
            else ""
        )
        raise TooFewPeopleError(
            f"{len(idx)} upright person-frames with visible hips and feet on the floor; at least "
            f"{MIN_FLOOR_FRAMES}{also} are needed to find the camera height"
        )
    g = np.unique(groups[idx], return_inverse=True)[1]
    s = rel[idx]
    # Two scale cues that share the people's size prior, each fitted robustly on its own (a person the
    # model misreads is an outlier of the first only): the model's depth, and the hip's height above the
    # ankles seen against the camera's (pixels and up only) at the population's hip height.
    y_model = np.log(drop[idx])
    fits = [
        _two_level(y, s, g, huber_k, inlier_sigmas, iterations)
        for y in (y_model, stature_log_drop(points, up, idx, y_model, hip_above_ankle_m))
    ]
    c = 0.5 * (fits[0][0] + fits[1][0])
    var_c = (0.5 * (math.sqrt(fits[0][1]) + math.sqrt(fits[1][1]))) ** 2  # one size error: correlated
    keep = fits[0][2]
    kept = len(np.unique(g[keep])) if len(idx) < MIN_FLOOR_FRAMES else None  # the few frames' people, kept
    if kept is not None and kept < min_people:
        raise TooFewPeopleError(
            f"{len(idx)} upright person-frames with visible hips and feet on the floor, {kept} people kept "
            f"by its robust fit; at least {MIN_FLOOR_FRAMES} (or {min_people} tracked people) are needed "
            "to find the camera height"
        )
    inliers = np.zeros(n, dtype=bool)
    inliers[idx[keep]] = True
    d = math.exp(c)
    return FloorEstimate(
        d + ANKLE_HEIGHT_M,
        d * math.sqrt(var_c),
        int(keep.sum()),
        len(idx),
        inliers,
        np.where(cand, drop, np.nan),
        standing_position(points, up, d, cand, hip_above_ankle_m),
        rel,
        groups,
    )


def _two_level(
    y: np.ndarray, s: np.ndarray, g: np.ndarray, huber_k: float, inlier_sigmas: float, iterations: int
) -> tuple[float, float, np.ndarray]:
    """Robust centre of per-frame log drops ``y`` (N,) in tracks ``g`` (N,) (0..G-1; ``s`` the frames' own
    relative spreads, used for tracks of one frame): each track's median, then a Huber mean over tracks at
    the scale of people's size spread. Returns the centre, its variance and the frames kept (N,)."""
    G = int(g.max()) + 1
    # Level 1: each track's height (median of its frames; the frame-to-frame scatter is the model's
    # pose-dependent error, much smaller than the size error it shares with itself).
    n_t = np.bincount(g, minlength=G)
    y_t = group_medians(y, g, n_t)
    spread = max(1.4826 * float(np.median(np.abs(y - y_t[g]))), MIN_REL_SIGMA)
    # Singletons (no track ids) keep the model's own spread, which includes the size error.
    single = np.bincount(g, weights=s, minlength=G) / n_t
    e_t = np.where(n_t > 1, spread / np.sqrt(n_t), single)
    tau = np.hypot(e_t, np.where(n_t > 1, STATURE_LOG_SIGMA, 0.0))
    # Level 2: Huber mean over tracks (scale tau), from their median; tracks beyond inlier_sigmas out.
    w0 = 1.0 / tau**2
    c = _weighted_median(y_t, np.ones(G))
    for _ in range(iterations):
        r = (y_t - c) / tau
        hub = np.minimum(1.0, huber_k / np.maximum(np.abs(r), 1e-12))
        c_new = float(np.sum(w0 * hub * y_t) / np.sum(w0 * hub))
        if abs(c_new - c) < 1e-9:
            break
        c = c_new
    keep_t = np.abs(y_t - c) < inlier_sigmas * tau
    if keep_t.sum() >= 1:
        c = float(np.sum(w0[keep_t] * y_t[keep_t]) / np.sum(w0[keep_t]))
    Gk = int(keep_t.sum())
    var_c = 1.0 / float(np.sum(w0[keep_t])) if Gk else math.inf
    if Gk > 1:  # the tracks' own scatter, when larger than assumed
        wk = w0[keep_t] / np.sum(w0[keep_t])
        var_c = max(var_c, float(np.sum(wk**2 * (y_t[keep_t] - c) ** 2)) * Gk / (Gk - 1))
    if Gk:  # the mean size of the people kept, about the model's prior
        var_c = max(var_c, POPULATION_LOG_SIGMA**2 / Gk)
    keep = keep_t[g] & (np.abs(y - y_t[g]) < inlier_sigmas * np.maximum(spread, s * (n_t[g] == 1)))
    return c, var_c, keep


def jackknife_cov(leave_one_out: np.ndarray) -> np.ndarray:
    """(P, P) jackknife covariance of an estimate from its G refits ``leave_one_out`` (G, P), each without
    one person (G >= :data:`MIN_JACKKNIFE_TRACKS`): a fit leans towards each of a handful of people, which
    its residuals (shrunk by the fit) hide from a clustered sandwich; refitting shows it."""
    G = len(leave_one_out)
    d = leave_one_out - leave_one_out.mean(0)
    return (G - 1) / G * d.T @ d


def cov_upper(covs: list[np.ndarray]) -> np.ndarray:
    """(P, P) a covariance at least as large as each of ``covs`` in every direction, built pair by pair (the
    larger of each pair's generalised eigenvalues: for two, the per-axis maximum in the basis that
    diagonalises both; for more it depends a little on their order): several estimates of one uncertainty,
    none trusted to be big enough alone, without one's small axis hiding behind another's larger trace.
    NaN when any is not finite (an unknown uncertainty stays unknown)."""
    covs = [np.asarray(c, np.float64) for c in covs]
    if not all(np.isfinite(c).all() for c in covs):
        return np.full_like(covs[0], np.nan)
    out = covs[0]
    for b in covs[1:]:
        scale = float(np.trace(out) + np.trace(b))
        if scale <= 0:
            continue  # both zero
        reg = out + 1e-12 * scale * np.eye(len(out))  # a singular (or zero) one: the other decides there
        vals, vecs = np.linalg.eigh(reg)
        half, inv = vecs * np.sqrt(vals), vecs / np.sqrt(vals)  # reg = half @ half.T
        m_vals, m_vecs = np.linalg.eigh(inv.T @ b @ inv)
        out = half @ ((m_vecs * np.maximum(m_vals, 1.0)) @ m_vecs.T) @ half.T
        out = 0.5 * (out + out.T)
    return out


def group_medians(x: np.ndarray, g: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """(G,) median of ``x`` within each group ``g`` (0..G-1, every group non-empty; ``counts`` its sizes,
    counted when None) by one sort: without track ids every person-frame is its own group."""
    counts = np.bincount(g) if counts is None else counts
    xs = x[np.lexsort((x, g))]
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return 0.5 * (xs[start + (counts - 1) // 2] + xs[start + counts // 2])


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cw, 0.5 * cw[-1])])
