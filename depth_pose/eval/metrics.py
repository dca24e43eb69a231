"""Depth-error metrics (numpy): ALE, ALP, relative error, delta<1.25, per distance band, sigma calibration.

Every function takes predicted and true depths in metres (same shape); people whose prediction is NaN (a
baseline that does not apply to them) are left out and counted in ``n``, so each method's row says on how
many people it was measured.
"""

from __future__ import annotations

import math

import numpy as np

ALP_THRESHOLDS_M: tuple[float, ...] = (0.5, 1.0, 2.0)
DISTANCE_BANDS_M: tuple[tuple[float, float], ...] = (
    (0.0, 10.0),
    (10.0, 20.0),
    (20.0, 30.0),
    (30.0, math.inf),
)
# Person pixel height bands (keypoint extent): far, small people are where detectors and depth models fail.
PERSON_PX_BANDS: tuple[tuple[float, float], ...] = (
    (0.0, 40.0),
    (40.0, 60.0),
    (60.0, 100.0),
    (100.0, 200.0),
    (200.0, math.inf),
)
SIGMA_LEVELS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


def band_name(lo: float, hi: float) -> str:
    """``"0-10"``, ``"10-20"``, ... ``">30"`` (metres)."""
    return f">{lo:g}" if math.isinf(hi) else f"{lo:g}-{hi:g}"


def gaussian_coverage(k: float | np.ndarray) -> np.ndarray:
    """Share of a Gaussian within ``k`` standard deviations: ``erf(k / sqrt(2))`` (0.683 at 1, 0.954 at 2)."""
    from scipy.special import erf

    return erf(np.asarray(k, dtype=np.float64) / math.sqrt(2.0))


def _valid(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.isfinite(pred) & np.isfinite(true) & (true > 0)


def _f(x) -> float | None:
    """JSON-friendly float (None for NaN/inf)."""
    x = float(x)
    return x if math.isfinite(x) else None


def depth_metrics(pred: np.ndarray, true: np.ndarray, sigma: np.ndarray | None = None) -> dict:
    """Summary of one method's depths against ground truth.

    Keys: ``n`` (people measured), ``n_total``, ``ale_m`` (mean |pred - true|), ``median_abs_m``,
    ``rel_err`` (mean |pred - true| / true), ``median_rel`` (median |pred / true - 1|), ``bias_rel`` (mean
    (pred - true) / true), ``delta_1.25`` (share with max(pred/true, true/pred) < 1.25), ``alp_<t>m`` (share
    with |err| < t), ``rmse_m`` and, with ``sigma``, the share with |err| <= 1 sigma and <= 2 sigma
    (``cov_1sigma``, ``cov_2sigma``; ideal 0.683 and 0.954) and the median sigma. Empty selections give
    ``None`` values.
    """
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    ok = _valid(pred, true)
    if sigma is not None:
        sigma = np.asarray(sigma, np.float64)
    p, t = pred[ok], true[ok]
    out: dict = {"n": int(ok.sum()), "n_total": int(true.size)}
    if p.size == 0:
        keys = ["ale_m", "median_abs_m", "rel_err", "median_rel", "bias_rel", "delta_1.25", "rmse_m"]
        keys += [f"alp_{a:g}m" for a in ALP_THRESHOLDS_M]
        if sigma is not None:
            keys += ["cov_1sigma", "cov_2sigma", "median_sigma_m"]
        return out | dict.fromkeys(keys)
    err = p - t
    abs_err = np.abs(err)
    ratio = np.maximum(p / t, t / p)
    out |= {
        "ale_m": _f(abs_err.mean()),
        "median_abs_m": _f(np.median(abs_err)),
        "rel_err": _f((abs_err / t).mean()),
        "median_rel": _f(np.median(abs_err / t)),
        "bias_rel": _f((err / t).mean()),
        "delta_1.25": _f((ratio < 1.25).mean()),
        "rmse_m": _f(np.sqrt((err**2).mean())),
    }
    for a in ALP_THRESHOLDS_M:
        out[f"alp_{a:g}m"] = _f((abs_err < a).mean())
    if sigma is not None:
        s = sigma[ok]
        out["cov_1sigma"] = _f((abs_err <= s).mean())
        out["cov_2sigma"] = _f((abs_err <= 2 * s).mean())
        out["median_sigma_m"] = _f(np.median(s))
    return out


def per_band(
    pred: np.ndarray,
    true: np.ndarray,
    sigma: np.ndarray | None = None,
    bands: tuple[tuple[float, float], ...] = DISTANCE_BANDS_M,
    by: np.ndarray | None = None,
) -> dict[str, dict]:
    """:func:`depth_metrics` per band ``[lo, hi)`` of the true depth, or of ``by`` (e.g. the person's pixel
    height, with :data:`PERSON_PX_BANDS`; NaN in ``by`` falls in no band); keys from :func:`band_name`."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    key = true if by is None else np.asarray(by, np.float64)
    out = {}
    for lo, hi in bands:
        sel = (key >= lo) & (key < hi)
        out[band_name(lo, hi)] = depth_metrics(
            pred[sel], true[sel], None if sigma is None else np.asarray(sigma)[sel]
        )
    return out


def per_group(
    pred: np.ndarray,
    true: np.ndarray,
    sigma: np.ndarray | None,
    labels: np.ndarray | list[str],
    order: list[str] | None = None,
) -> dict[str, dict]:
    """:func:`depth_metrics` per label (e.g. the pose of each synthetic sample); groups in ``order`` first,
    then the rest by size. Labels in ``order`` that never occur are left out."""
    labels = np.asarray(labels, dtype=object).astype(str)
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    names, counts = np.unique(labels, return_counts=True)
    present = dict(zip(names.tolist(), counts.tolist()))
    keys = [k for k in (order or []) if k in present]
    keys += sorted((k for k in present if k not in keys), key=lambda k: -present[k])
    out = {}
    for k in keys:
        sel = labels == k
        out[k] = depth_metrics(pred[sel], true[sel], None if sigma is None else np.asarray(sigma)[sel])
    return out


def calibration_curve(
    pred: np.ndarray, true: np.ndarray, sigma: np.ndarray, levels: tuple[float, ...] = SIGMA_LEVELS
) -> dict[str, list[float]]:
    """Observed share with |err| <= k sigma for each k, beside the Gaussian ideal (for the calibration
    plot)."""
    pred, true, sigma = (np.asarray(a, np.float64) for a in (pred, true, sigma))
    ok = _valid(pred, true) & np.isfinite(sigma)
    z = np.abs(pred[ok] - true[ok]) / np.maximum(sigma[ok], 1e-12)
    observed = [float((z <= k).mean()) if z.size else float("nan") for k in levels]
    return {
        "k": list(levels),
        "observed": observed,
        "ideal": [float(v) for v in gaussian_coverage(np.array(levels))],
    }


def relative_abs_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """|pred / true - 1| per person (NaN where pred is NaN)."""
    return np.abs(np.asarray(pred, np.float64) / np.asarray(true, np.float64) - 1.0)


def median_iqr(x: np.ndarray) -> tuple[float, float]:
    """Median and inter-quartile range (q75 - q25) of the finite values (NaN, NaN when none)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float(q50), float(q75 - q25)


def seed_spread(preds: np.ndarray, true: np.ndarray) -> dict:
    """How much of a model's error is the training run's own: ``preds`` (S, N) from S models that differ only
    in their seed, ``true`` (N,).

    On log errors ``e[s, n] = log(pred / true)``: ``total_var`` (variance over people, mean over seeds),
    ``seed_var`` (variance over seeds, ddof 1, mean over people), ``seed_share`` = their ratio (the most an
    ensemble of such models could remove from the error variance), ``corr`` (mean pairwise correlation of the
    seeds' errors), and the ensemble (geometric mean over seeds) as ``ensemble`` next to each seed's own
    (``single``, mean over seeds), both as :func:`depth_metrics`. People not finite for every seed are left
    out.
    """
    preds, true = np.asarray(preds, np.float64), np.asarray(true, np.float64)
    if preds.ndim != 2 or preds.shape[0] < 2 or preds.shape[1] != true.size:
        raise ValueError(f"preds must be (S >= 2, N={true.size}), got {preds.shape}")
    ok = np.isfinite(preds).all(0) & (preds > 0).all(0) & np.isfinite(true) & (true > 0)
    e = np.log(preds[:, ok] / true[ok])
    s = e.shape[0]
    total = float(e.var(axis=1).mean()) if e.shape[1] else float("nan")
    seed = float(e.var(axis=0, ddof=1).mean()) if e.shape[1] else float("nan")
    pairs = (
        [np.corrcoef(e[i], e[j])[0, 1] for i in range(s) for j in range(i + 1, s)] if e.shape[1] > 1 else []
    )
    singles = [depth_metrics(p, true[ok]) for p in preds[:, ok]]
    single = {
        k: float(np.mean([m[k] for m in singles]))
        for k in ("ale_m", "median_rel", "bias_rel")
        if all(m.get(k) is not None for m in singles)
    }
    return {
        "n": int(ok.sum()),
        "seeds": s,
        "total_var": _f(total),
        "seed_var": _f(seed),
        "seed_share": _f(seed / total) if total > 0 else None,
        "corr": _f(np.mean(pairs)) if pairs else None,
        "single": single,
        "ensemble": depth_metrics(np.exp(e.mean(0)) * true[ok], true[ok]),
    }
