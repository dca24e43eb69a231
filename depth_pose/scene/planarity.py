"""Is the floor one level plane? Ground-contact depth assumes so; a step, a ramp or stairs must send callers
back to single-frame depths.

Data: per person-frame of the floor fit, ``y = log drop`` (the mid-ankle's depth below the camera, from the
model's depth: :class:`depth_pose.scene.floor.FloorEstimate`) at the person's horizontal position ``p``, from
the hip's ray, not the feet's (the ankle pixel's noise and a lifted foot would move both ``y`` and ``p``:
:func:`depth_pose.scene.floor.standing_position`).

* Tilt (ramp): :func:`floor_tilt` (``y = log s_track + beta . p`` with the tracks' size errors as random
  effects). The floor's rise ``-beta * drop`` is a ramp when it is significant against its own uncertainty
  *and* the up direction's (an up error tilts the apparent floor just the same), and when across the
  observed floor it moves depths by more than ``max_rel_dev``.
* Steps: ``y = b_track + gamma [p_axis > q] + beta' . p`` within tracks, the tilt ``beta'`` fitted with
  each candidate step (the tilt alone would take up part of a real step; the track offset ``b`` absorbs
  each person's stature error, so only changes *along* a track count; without track ids every frame shares
  one offset and per-person errors are noise), for each horizontal axis and thresholds ``q`` at the 20-80%
  quantiles: the largest ``|gamma| / sigma`` (a scan of 14 lines, so its threshold is ``z_crit +
  SCAN_EXTRA_SIGMAS``), with ``|gamma|`` above ``max_rel_dev`` -> a step (a kerb, a platform edge, stairs).
* Bumps: the floor is cut into cells (quantile bins of ``p``); model A ``b_track + beta . p`` against model
  B = A plus one constant per cell: chi-square of the residual-sum drop over the noise seen in B.
  Significant and some cell departing from the plane by more than ``max_rel_dev`` (relative depth error) ->
  not planar.

Significance: a person's model error lasts seconds (a gait cycle, a way of holding the arms), so with
tracks the residual variance is inflated by the design effect of segments of :data:`SEGMENT_S` seconds of a
track (``rows`` frames: :func:`segment_rows`; :data:`SEGMENT_ROWS` when the frame rate is not known;
:func:`segment_inflation`); without tracks, by the lag-1 correlation of neighbouring rows.
Gross outliers (lifted feet, misread people) are dropped once after a first fit of B. Too few frames or cells
to test -> ``planar=False`` (``tested=False``): ground depth is only used on a floor shown to be level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_pose.scene.floor import (
    MIN_JACKKNIFE_TRACKS,
    MIN_REL_SIGMA,
    STATURE_LOG_SIGMA,
    cov_upper,
    group_medians,
    jackknife_cov,
)

MAX_REL_DEV = 0.02  # a floor irregularity that would move ground-contact depths by more than this matters
Z_CRIT = 3.7  # significance of the tests, in normal sigmas (one-sided p ~ 1e-4)
BINS = (3, 5)  # quantile bins across (camera-right) and along (camera-forward) the floor
SCAN_EXTRA_SIGMAS = 1.0  # the step scan's maximum over 14 lines needs more than z_crit
MIN_CELL = 5
MIN_FRAMES = 40
MAX_ROWS = 50000  # longer inputs are subsampled (keeps the fit fast)
DEGENERATE_SHARE = 0.1  # a refit knowing less than this share of the full fit's tilt information: none
MODEL_DRIFT = 0.02  # a model depth error that changes by this (relative) across the observed floor
MAX_DROP_SHORTFALL = math.log(1.25)  # a frame's drop this far below its track's median: not on the floor
TUKEY_C = 4.685  # the redescending stage's cut-off, in robust sigmas of the frames' residuals
SEGMENT_S = 2.0  # seconds of a track whose model errors are taken as one piece of evidence
SEGMENT_ROWS = 20  # ... in frames when the frame rate is not known (2 s at 10 fps)


@dataclass(frozen=True, eq=False)
class Planarity:
    """The verdict (``planar``) and why (``reason``), whether enough data was there to test (``tested``),
    the floor's tilt against the up direction (degrees, 1 sigma, the up direction's uncertainty included),
    the largest departure of a floor cell from the fitted plane (relative depth error), the bump test's
    chi-square and degrees of freedom, the largest step found (relative depth) and its significance (in
    sigmas); ``tilt`` (2,) the floor's rise (metres per metre) along the
    (camera-right, camera-forward) horizontal axes and ``tilt_cov`` (2, 2) its covariance from the floor
    data alone (NaN when not tested)."""

    planar: bool
    tested: bool
    reason: str
    slope_deg: float
    slope_sigma_deg: float
    max_cell_dev: float
    chi2: float
    dof: int
    n_frames: int
    n_cells: int
    tilt: np.ndarray
    tilt_cov: np.ndarray
    step_rel: float = math.nan
    step_sigmas: float = math.nan
    ramp: bool = False
    step: bool = False


def chi2_critical(dof: int, z: float = Z_CRIT) -> float:
    """Chi-square value exceeded with the one-sided normal tail probability of ``z`` (Wilson-Hilferty)."""
    k = max(dof, 1)
    return k * (1.0 - 2.0 / (9.0 * k) + z * math.sqrt(2.0 / (9.0 * k))) ** 3


def _cells(position: np.ndarray, bins: tuple[int, int]) -> np.ndarray:
    ids = np.zeros(len(position), dtype=np.int64)
    for axis, nb in enumerate(bins):
        edges = np.quantile(position[:, axis], np.linspace(0, 1, nb + 1)[1:-1])
        ids = ids * nb + np.searchsorted(edges, position[:, axis])
    return ids


def _fit(X: np.ndarray, y: np.ndarray, sw: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    coef, _, rank, _ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    return coef, y - X @ coef, int(rank)


def _within(X: np.ndarray, g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Columns of ``X`` (N, k) minus their ``w``-weighted mean within each group ``g`` (the track offsets,
    projected out: Frisch-Waugh-Lovell, so no dense dummy matrix per track)."""
    G = int(g.max()) + 1
    sums = np.zeros((G, X.shape[1]))
    np.add.at(sums, g, w[:, None] * X)
    return X - (sums / np.bincount(g, weights=w, minlength=G)[:, None])[g]


def _step_scan(
    yw: np.ndarray, p: np.ndarray, g: np.ndarray, w: np.ndarray, s2: float, xw: np.ndarray
) -> tuple[float, float]:
    """The step ``gamma`` (relative depth) of the most significant candidate line (axis-aligned, at the
    20-80% quantiles of ``p``) on top of the track offsets and a tilt fitted with it (so the tilt does not
    take up the step), and its significance ``gamma / sigma``; (0, 0) if none can be estimated. ``yw`` (the
    log drops) and ``xw`` (the positions) are already demeaned within tracks ``g``."""
    yw = _residual(yw[:, None], xw, w)[:, 0]
    best = (0.0, 0.0)
    for axis in range(2):
        for q in np.quantile(p[:, axis], np.linspace(0.2, 0.8, 7)):
            ri = _within((p[:, axis] > q).astype(np.float64)[:, None], g, w)
            ri = _residual(ri, xw, w)[:, 0]
            info = float(np.sum(w * ri**2))
            if info <= 1e-9:
                continue
            gamma = float(np.sum(w * ri * yw)) / info
            z = gamma / math.sqrt(s2 / info)
            if abs(z) > abs(best[1]):
                best = (gamma, z)
    return best


def _residual(Y: np.ndarray, X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Columns of ``Y`` (N, k) minus their ``w``-weighted least-squares fit on ``X`` (N, m)."""
    sw = np.sqrt(w)[:, None]
    coef = np.linalg.lstsq(X * sw, Y * sw, rcond=None)[0]
    return Y - X @ coef


def ar1_inflation(r: np.ndarray, g: np.ndarray, max_rho: float = 0.95) -> float:
    """Variance inflation ``(1 + rho) / (1 - rho)`` of a mean of residuals ``r`` (N,) whose consecutive rows
    within a group ``g`` (N,) (a track's frames, in time order; tracks may interleave, as frames do)
    correlate with lag-1 correlation ``rho`` (video frames a tenth of a second apart repeat each other's
    errors); 1 when ``rho <= 0``."""
    order = np.argsort(g, kind="stable")  # each track's rows together, in their order
    r, g = np.asarray(r)[order], np.asarray(g)[order]
    same = g[1:] == g[:-1]
    den = float(np.sum(r**2))
    if not same.any() or den <= 0:
        return 1.0
    rho = min(float(np.sum(r[1:][same] * r[:-1][same])) / den, max_rho)
    return (1.0 + rho) / (1.0 - rho) if rho > 0 else 1.0


def segment_rows(fps: float | None = None) -> int:
    """Frames of :data:`SEGMENT_S` seconds at ``fps`` (None, or not a positive number: :data:`SEGMENT_ROWS`)
    (cameras and streams have no steady rate here; frame sequences none at all)."""
    if fps is None or not math.isfinite(fps) or fps <= 0:
        return SEGMENT_ROWS
    return max(1, round(SEGMENT_S * fps))


def segment_ids(g: np.ndarray, rows: int = SEGMENT_ROWS) -> np.ndarray:
    """(N,) id of each row's segment: ``rows`` consecutive rows of one track (``g`` (N,), a track's rows
    in time order; tracks may interleave)."""
    g = np.asarray(g)
    order = np.argsort(g, kind="stable")
    first = np.r_[True, g[order][1:] != g[order][:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))
    rank = np.empty(len(g), np.int64)
    rank[order] = np.arange(len(g)) - start
    return np.unique(np.stack((g, rank // max(int(rows), 1)), 1), axis=0, return_inverse=True)[1].ravel()


def segment_inflation(r: np.ndarray, g: np.ndarray, rows: int = SEGMENT_ROWS) -> float:
    """Variance inflation of sums of residuals ``r`` (N,) over a track's consecutive rows (``g`` (N,) the
    track of each row, a track's rows in time order): the empirical design effect of segments of ``rows``
    consecutive rows of a track (their summed residuals squared over the residuals' sum of squares), and at
    least :func:`ar1_inflation`'s. A person's model error persists longer than one frame apart: a gait
    cycle, a way of holding the arms for several seconds; an AR(1) fit on neighbouring frames misses that
    and flat floors read as steps (docs/bench_scenes.md, session 17). ``r`` has each track's mean taken out,
    so a track's segment sums add up to ~0: a track of n rows in segments of m_j rows counts (n - 1) / (n -
    sum m_j^2 / n) times (k / (k - 1) for k equal segments; 1 on average for independent errors), tracks of
    one segment (no within-track evidence) not at all. ``rows`` counts frames (:func:`segment_rows`)."""
    r = np.asarray(r, np.float64)
    g = np.unique(np.asarray(g), return_inverse=True)[1].ravel()
    if not len(r):
        return 1.0
    seg = segment_ids(g, rows)
    seg_track = np.zeros(int(seg.max()) + 1, np.int64)
    seg_track[seg] = g
    m = np.bincount(seg).astype(np.float64)  # rows of each segment
    n_t = np.bincount(g).astype(np.float64)  # rows of each track
    lost = np.bincount(seg_track, weights=m**2) / n_t  # the part of n_t the track's own mean takes away
    factor = (n_t - 1.0) / np.maximum(n_t - lost, 1e-12)
    use = np.bincount(seg_track)[seg_track] >= 2  # segments of tracks with two or more
    den = float(np.sum(r[use[seg]] ** 2))
    if den <= 0:
        return ar1_inflation(r, g)
    sums = np.bincount(seg, weights=r)
    design = float(np.sum((sums**2 * factor[seg_track])[use])) / den
    return max(design, ar1_inflation(r, g))


def floor_tilt(
    drop: np.ndarray,
    position: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    floor_drop: float | None = None,
    track_sigma: float = STATURE_LOG_SIGMA,
    drift: float = MODEL_DRIFT,
    huber_k: float = 1.5,
    iterations: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """The floor's rise (2,) along the horizontal axes of ``position`` (metres per metre) and its covariance
    (2, 2), from person-frames' ``drop`` (N,) (model depth: :class:`~depth_pose.scene.floor.FloorEstimate`)
    and ``position`` (N, 2) (where the person stands on a level floor ``floor_drop`` metres below the camera,
    from rays: :func:`~depth_pose.scene.floor.standing_position`; by default the median ``drop``), grouped
    in tracks ``groups`` (N,) (None: every frame its own person; a track's frames in time order).

    With the up direction off by ``delta`` (radians, along the two axes), ``log drop = log(s h) + delta .
    x`` where ``x`` = position / the floor's drop is fixed by pixels alone and ``s`` is the person's size
    error. The regressor carries none of the model depth's error (which moves a foot along its ray, and along
    a steep camera's ray would read as a floor tilted like the ray); from the hips' rays, none of the ankle
    pixel's either (whose noise and a lifted foot move the feet's ``x`` and the drop together). ``log s``
    per track is a random effect of spread ``track_sigma``, so the tilt is learnt within tracks (free of
    size errors) and across them (where a level camera's shallow rays make people's positions tell much).
    Robust at both levels (frame weights Huber, then Tukey's, so a body in the air is no lever; a track far
    off, a child, gets a looser prior). Covariance: at least as large in every direction as the model-based
    one (inflated for the frame-to-frame correlation of a track's errors), the track-clustered one and (with
    ``groups``) the leave-one-person-out jackknife (:func:`_tilt_jackknife`), plus the tilt a model error
    drifting by ``drift`` (relative depth) across the observed floor would make. Non-finite rows are ignored;
    NaN when fewer than :data:`MIN_CELL` rows."""
    drop = np.asarray(drop, np.float64)
    position = np.asarray(position, np.float64)
    g_all = np.arange(len(drop)) if groups is None else np.asarray(groups)
    ok = np.isfinite(drop) & (drop > 0) & np.isfinite(position).all(1)
    # A frame far above its track's typical drop (both feet in the air, a foot on a step) stands far behind
    # where it is (its rays are nearer the horizon): a lever on the tilt out of all proportion. Such frames
    # are left out; milder ones get no weight from the redescending stage below.
    with np.errstate(divide="ignore", invalid="ignore"):
        log_drop = np.where(ok, np.log(drop), np.nan)
    gi = np.unique(g_all[ok], return_inverse=True)[1]
    med = group_medians(log_drop[ok], gi)
    ok[ok] = log_drop[ok] - med[gi] > -MAX_DROP_SHORTFALL
    nan2 = np.full(2, np.nan), np.full((2, 2), np.nan)
    if ok.sum() < MIN_CELL:
        return nan2
    y, g = np.log(drop[ok]), np.unique(g_all[ok], return_inverse=True)[1]
    G, n = int(g.max()) + 1, len(y)
    x = position[ok] / (float(np.exp(np.median(y))) if floor_drop is None else float(floor_drop))
    X = np.concatenate((np.ones((n, 1)), x - np.median(x, 0)), 1)
    lam0 = 1.0 / track_sigma**2
    lam, scale = np.full(G, lam0), MIN_REL_SIGMA
    w = np.full(n, 1.0 / scale**2)
    for it in range(iterations):
        W = np.bincount(g, weights=w, minlength=G)
        Ws = np.maximum(W, 1e-300)  # a track whose every frame lost its weight: no mean, no share
        xb = np.zeros((G, 3))
        np.add.at(xb, g, w[:, None] * X)
        xb /= Ws[:, None]
        yb = np.bincount(g, weights=w * y, minlength=G) / Ws
        kw = W * W / (W + lam)  # the share of each track's mean that its random offset does not absorb
        M = (X * w[:, None]).T @ X - (xb * kw[:, None]).T @ xb
        coef = np.linalg.pinv(M) @ ((X * w[:, None]).T @ y - (xb * kw[:, None]).T @ yb)
        w_fit, lam_fit = w, lam  # the weights ``coef`` was solved at
        b = W / (W + lam) * (yb - xb @ coef)
        r = y - X @ coef - b[g]
        scale = max(1.4826 * float(np.median(np.abs(r))), 1e-3)
        if it < iterations // 2:  # Huber from the start, then redescending (Tukey): no lever keeps a weight
            w = np.minimum(1.0, huber_k * scale / np.maximum(np.abs(r), 1e-12)) / scale**2
        else:
            w = np.maximum(1.0 - (r / (TUKEY_C * scale)) ** 2, 0.0) ** 2 / scale**2
        lam = lam0 * np.minimum(1.0, huber_k / np.maximum(np.abs(b) / track_sigma, 1e-12))
    bread = np.linalg.pinv(M) * ar1_inflation(r, g)
    if G >= 3:
        Xc = X - (xb * (W / (W + lam))[:, None])[g]
        scores = np.zeros((G, 3))
        np.add.at(scores, g, Xc * (w * (r + b[g]))[:, None])  # GLS score: V^-1 times the total residual
        sand = bread @ (scores.T @ scores) @ bread * (G / (G - 1))
        cands = [sand[1:, 1:], bread[1:, 1:]]
        if groups is not None:
            jack = _tilt_jackknife(X, y, w_fit, g, lam_fit)
            if jack is not None:
                cands.append(jack)
        cov = cov_upper(cands)
    else:
        cov = bread[1:, 1:]
    extent = 2.0 * np.sqrt(np.maximum(np.cov(x.T, aweights=w).diagonal(), 1e-12))
    cov = cov + np.diag((drift / extent) ** 2)
    return -coef[1:], cov


def _tilt_jackknife(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, g: np.ndarray, lam: np.ndarray
) -> np.ndarray | None:
    """(2, 2) leave-one-track-out jackknife covariance (:func:`~depth_pose.scene.floor.jackknife_cov`) of
    :func:`floor_tilt`'s rise at fixed weights (those its rise was solved at): its normal equations (rows
    ``X`` (N, 3), ``y`` (N,), weights ``w`` (N,), tracks ``g`` (N,) with random offsets of precision
    ``lam`` (G,)) solved again without each track that has weight. A walker's model error changes with the
    gait and the distance: the tilt from six people's first frames leant on each of them more than the
    sandwich said. None with fewer than :data:`~depth_pose.scene.floor.MIN_JACKKNIFE_TRACKS` such tracks,
    or when leaving one out leaves the rest unable to tell a tilt (the refit would be arbitrary)."""
    G = len(lam)
    W = np.bincount(g, weights=w, minlength=G)
    Mt = np.zeros((G, 3, 3))
    np.add.at(Mt, g, w[:, None, None] * X[:, :, None] * X[:, None, :])
    rt = np.zeros((G, 3))
    np.add.at(rt, g, (w * y)[:, None] * X)
    xs = np.zeros((G, 3))
    np.add.at(xs, g, w[:, None] * X)
    ys = np.bincount(g, weights=w * y, minlength=G)
    shrink = 1.0 / (W + lam)  # a track's sums enter through its mean, less what its offset absorbs
    Mt -= shrink[:, None, None] * xs[:, :, None] * xs[:, None, :]
    rt -= (shrink * ys)[:, None] * xs
    M, rhs = Mt.sum(0), rt.sum(0)
    used = np.flatnonzero(W > 0)
    if len(used) < MIN_JACKKNIFE_TRACKS:
        return None
    floor = DEGENERATE_SHARE * _tilt_information(M[None])[0]
    Mk = M[None] - Mt[used]  # all refits at once
    if not floor > 0 or (_tilt_information(Mk) < floor).any():
        return None
    coefs = np.einsum("kij,kj->ki", np.linalg.pinv(Mk), rhs[None] - rt[used])
    return jackknife_cov(coefs[:, 1:])


def _tilt_information(M: np.ndarray) -> np.ndarray:
    """(K,) the smallest eigenvalue of what normal equations ``M`` (K, 3, 3; intercept first) know of the
    tilt: the slope block's Schur complement, the intercept taken out (people who all stand at one distance
    tell nothing of the tilt along it, however many frames they have); 0 without an intercept's weight."""
    m00 = M[:, 0, 0]
    safe = np.where(m00 > 0, m00, 1.0)
    S = M[:, 1:, 1:] - M[:, 1:, 0, None] * M[:, None, 0, 1:] / safe[:, None, None]
    return np.where(m00 > 0, np.linalg.eigvalsh(0.5 * (S + S.transpose(0, 2, 1)))[:, 0], 0.0)


def _untested(reason: str, n: int, cells: int) -> Planarity:
    nan = math.nan
    return Planarity(
        False, False, reason, nan, nan, nan, nan, 0, n, cells, np.full(2, nan), np.full((2, 2), nan)
    )


def check_planarity(
    drop: np.ndarray,
    position: np.ndarray,
    rel_sigma: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    up_cov: np.ndarray | None = None,
    floor_drop: float | None = None,
    max_rel_dev: float = MAX_REL_DEV,
    z_crit: float = Z_CRIT,
    bins: tuple[int, int] = BINS,
    min_cell: int = MIN_CELL,
    min_frames: int = MIN_FRAMES,
    seed: int = 0,
    rows: int | None = None,
) -> Planarity:
    """Test the floor under person-frames (see the module docstring): ``drop`` (N,) metres, ``position``
    (N, 2) metres, ``rel_sigma`` (N,) relative uncertainty of ``drop``, ``groups`` (N,) track of each frame
    (None: one shared offset), ``up_cov`` (2, 2) the up direction's covariance (radians^2) along the same
    horizontal axes as ``position`` (an up error tilts the apparent floor), ``floor_drop`` the drop at which
    ``position`` was computed (:func:`floor_tilt`). Rows with a non-finite entry are ignored."""
    drop = np.asarray(drop, np.float64)
    position = np.asarray(position, np.float64)
    rel_sigma = np.asarray(rel_sigma, np.float64)
    tracked = groups is not None  # rows of a track are a time series; without tracks, only neighbours
    groups = np.zeros(len(drop), np.int64) if groups is None else np.asarray(groups)
    ok = np.isfinite(drop) & (drop > 0) & np.isfinite(position).all(1) & np.isfinite(rel_sigma)
    ok &= rel_sigma > 0
    idx = np.flatnonzero(ok)
    if len(idx) > MAX_ROWS:
        idx = np.sort(np.random.default_rng(seed).choice(idx, MAX_ROWS, replace=False))
    if len(idx) < min_frames:
        return _untested(
            f"not tested: {len(idx)} person-frames on the floor, {min_frames} needed", len(idx), 0
        )
    cell = _cells(position[idx], bins)
    counts = np.bincount(cell)
    keep = counts[cell] >= min_cell
    idx, cell = idx[keep], np.unique(cell[keep], return_inverse=True)[1]
    n_cells = int(cell.max()) + 1 if len(cell) else 0
    if len(idx) < min_frames or n_cells < 4:
        return _untested(
            f"not tested: {len(idx)} person-frames in {n_cells} floor cells of >= {min_cell} "
            f"({min_frames} frames and 4 cells needed)",
            len(idx),
            n_cells,
        )
    y = np.log(drop[idx])
    sw = 1.0 / rel_sigma[idx]
    typical = float(np.median(drop[idx]))
    for attempt in range(2):
        g = np.unique(groups[idx], return_inverse=True)[1]
        n_groups = int(g.max()) + 1
        p = position[idx] - np.average(position[idx], axis=0, weights=sw**2)
        XA = _within(p, g, sw**2)
        XB = np.concatenate((XA, _within(np.eye(int(cell.max()) + 1)[cell], g, sw**2)), 1)
        yw = _within(y[:, None], g, sw**2)[:, 0]
        coefB, resB, rankB = _fit(XB, yw, sw)
        if attempt == 0:
            z = resB * sw
            scale = 1.4826 * float(np.median(np.abs(z - np.median(z))))
            good = np.abs(z) <= 4.0 * max(scale, 1e-9)
            if good.all():
                break
            idx, y, sw, cell = idx[good], y[good], sw[good], np.unique(cell[good], return_inverse=True)[1]
    coefA, resA, rankA = _fit(XA, yw, sw)
    n = len(idx)
    rss_a, rss_b = float(np.sum((resA * sw) ** 2)), float(np.sum((resB * sw) ** 2))
    dof_b = n - n_groups - rankB
    if dof_b < 5:
        return _untested(
            f"not tested: too few person-frames ({n}) for {n_groups + rankB} floor parameters", n, n_cells
        )
    # a track's consecutive frames repeat each other's errors: the evidence is that of fewer frames
    r = resB * sw
    rows = segment_rows() if rows is None else rows
    s2 = rss_b / dof_b * (segment_inflation(r, g, rows) if tracked else ar1_inflation(r, g))
    dof = rankB - rankA
    chi2 = (rss_a - rss_b) / s2 if s2 > 0 else 0.0
    # Departure of each cell from the plane: B's fit minus A's fit, averaged over the cell's frames.
    dev = resA - resB
    cw = np.bincount(cell, weights=sw**2)
    cell_dev = np.bincount(cell, weights=sw**2 * dev) / np.maximum(cw, 1e-300)
    max_dev = float(np.max(np.abs(cell_dev)))
    # The floor's tilt against up (tracks as random effects) and its uncertainty, plus the up direction's.
    grad, cov_f = floor_tilt(
        drop[idx], position[idx], groups[idx] if tracked else None, floor_drop=floor_drop
    )
    if not np.isfinite(grad).all():
        return _untested("not tested: the floor's tilt cannot be estimated", n, n_cells)
    beta = -grad / (typical if floor_drop is None else float(floor_drop))  # per metre of position
    up_cov = np.zeros((2, 2)) if up_cov is None or not np.isfinite(up_cov).all() else np.asarray(up_cov)
    cov_g = cov_f + up_cov
    wald = float(grad @ np.linalg.pinv(cov_g) @ grad)
    slope = math.degrees(math.atan(float(np.linalg.norm(grad))))
    direction = grad / max(float(np.linalg.norm(grad)), 1e-12)
    slope_sigma = math.degrees(math.sqrt(max(float(direction @ cov_g @ direction), 0.0)))
    centres = np.stack([np.bincount(cell, weights=sw**2 * p[:, k]) / cw for k in range(2)], 1)
    tilt_dev = float(np.max(np.abs(centres @ beta)))
    # Steps, within tracks, each candidate fitted together with a tilt (which carries any up error).
    step_rel, step_z = _step_scan(yw, p, g, sw**2, s2, XA)
    ramp = wald > chi2_critical(2, z_crit) and tilt_dev > max_rel_dev
    step = abs(step_z) > z_crit + SCAN_EXTRA_SIGMAS and abs(step_rel) > max_rel_dev
    bump = dof > 0 and chi2 > chi2_critical(dof, z_crit) and max_dev > max_rel_dev
    found = []
    if ramp:
        found.append(
            f"ramp: the floor tilts {slope:.1f} +- {slope_sigma:.1f} deg against the up direction "
            f"(depths off by up to {100 * tilt_dev:.0f}% across the observed floor)"
        )
    if step:
        found.append(f"step: depths change by {100 * step_rel:+.1f}% across a line ({abs(step_z):.1f} sigma)")
    if bump:
        found.append(
            f"uneven floor: a floor patch departs {100 * max_dev:.1f}% (relative depth) from the plane "
            f"(chi2 {chi2:.0f} on {dof} dof)"
        )
    reason = "; ".join(found) or (
        f"level plane (tilt {slope:.1f} +- {slope_sigma:.1f} deg, largest step {100 * abs(step_rel):.1f}%, "
        f"largest patch departure {100 * max_dev:.1f}%)"
    )
    return Planarity(
        not found,
        True,
        reason,
        slope,
        slope_sigma,
        max_dev,
        chi2,
        dof,
        n,
        n_cells,
        grad,
        cov_f,
        step_rel,
        step_z,
        ramp,
        step,
    )
