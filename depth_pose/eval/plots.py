"""PNG figures of an evaluation (matplotlib, Agg backend; every function writes one file and returns its
path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_pose.fileio import atomic_write

COLORS = {"model": "tab:blue", "box_height": "tab:orange", "shoulder_hip": "tab:green", "floor": "tab:gray"}
LABELS = {
    "model": "model",
    "box_height": "box-height pinhole (1.71 m)",
    "shoulder_hip": "shoulder-hip pinhole (0.48 m)",
    "floor": "floor 0.046 x z",
}


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary PNG + rename) and close it; a full disk raises
    :class:`depth_pose.fileio.OutputWriteError` (one line from the commands)."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"), suffix=".png")
    finally:
        pyplot().close(fig)
    return Path(path)


def error_vs_distance(
    true_z: np.ndarray, preds: dict[str, np.ndarray], path: Path, bin_m: float = 5.0, floor_rel: float = 0.046
) -> Path:
    """|error| of the model per person (dots) and each method's mean |error| per ``bin_m`` depth bin
    (lines)."""
    plt = pyplot()
    true_z = np.asarray(true_z, np.float64)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if "model" in preds:  # dots: at most 5000 people (seeded pick); the lines use everybody
        dots = np.arange(true_z.size)
        if dots.size > 5000:
            dots = np.sort(np.random.default_rng(0).choice(true_z.size, 5000, replace=False))
        ax.scatter(
            true_z[dots],
            np.abs(preds["model"][dots] - true_z[dots]),
            s=8 if dots.size < 1000 else 2,
            alpha=0.35,
            color=COLORS["model"],
            label="model, per person",
        )
    zmax = float(np.nanmax(true_z)) if true_z.size else 1.0
    edges = np.arange(0.0, zmax + bin_m, bin_m)
    centres = 0.5 * (edges[:-1] + edges[1:])
    for name, pred in preds.items():
        if name == "floor":
            continue
        err = np.abs(np.asarray(pred, np.float64) - true_z)
        ale = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (true_z >= lo) & (true_z < hi) & np.isfinite(err)
            ale.append(err[sel].mean() if sel.sum() >= 2 else np.nan)
        n = int(np.isfinite(pred).sum())
        ax.plot(
            centres,
            ale,
            "o-",
            color=COLORS.get(name),
            label=f"{LABELS.get(name, name)}: mean per {bin_m:g} m (n={n})",
        )
    zz = np.linspace(0, zmax, 50)
    ax.plot(zz, floor_rel * zz, "--", color=COLORS["floor"], label=LABELS["floor"])
    ax.set_xlabel("true depth z (m)")
    ax.set_ylabel("|z_pred - z_true| (m)")
    ymax = (
        np.nanpercentile(np.abs(preds["model"] - true_z), 98) * 1.3
        if "model" in preds and true_z.size
        else None
    )
    if ymax and np.isfinite(ymax):
        ax.set_ylim(0, max(ymax, floor_rel * zmax * 1.2))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Depth error vs distance")
    return save_figure(fig, path)


def pred_vs_true(
    true_z: np.ndarray, pred: np.ndarray, sigma: np.ndarray, path: Path, max_points: int = 3000
) -> Path:
    """Predicted vs true depth with 1-sigma error bars and the identity line (a seeded random ``max_points``
    of the people when there are more, so synthetic sets of 10^5 people stay legible and quick)."""
    plt = pyplot()
    true_z, pred, sigma = (np.asarray(a, np.float64) for a in (true_z, pred, sigma))
    label = "model ± 1σ"
    if true_z.size > max_points:
        pick = np.sort(np.random.default_rng(0).choice(true_z.size, max_points, replace=False))
        label += f" ({max_points} of {true_z.size} shown)"
        true_z, pred, sigma = true_z[pick], pred[pick], sigma[pick]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.errorbar(
        true_z, pred, yerr=sigma, fmt="o", ms=3, alpha=0.5, elinewidth=0.7, color=COLORS["model"], label=label
    )
    # Axis up to the larger of the true range and the predictions, but at most 1.5x the true range (outliers
    # beyond are drawn at the edge as triangles).
    tmax = float(np.nanmax(true_z)) if len(true_z) else 1.0
    hi = 1.05 * max(tmax, min(float(np.nanmax(pred)) if len(pred) else tmax, 1.5 * tmax))
    out = np.asarray(pred) > hi
    if out.any():
        ax.plot(
            np.asarray(true_z)[out],
            np.full(out.sum(), hi * 0.99),
            "^",
            color="tab:red",
            ms=6,
            label=f"{int(out.sum())} beyond the axis",
        )
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="ideal")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("true depth z (m)")
    ax.set_ylabel("predicted depth z (m)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Predicted vs true depth")
    return save_figure(fig, path)


def calibration(curve: dict, path: Path, title: str = "Uncertainty calibration") -> Path:
    """Observed share within k sigma vs the Gaussian ideal (one point per k; diagonal = calibrated)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ideal, obs, ks = np.asarray(curve["ideal"]), np.asarray(curve["observed"]), curve["k"]
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.plot(ideal, obs, "o-", color=COLORS["model"], label="model")
    lines = []
    for k, x, y in zip(ks, ideal, obs):
        if k in (1.0, 2.0):
            ax.plot([x], [y], "s", ms=9, mfc="none", color="tab:red")
            lines.append(f"≤{k:g}σ: {100 * y:.0f}% (ideal {100 * x:.0f}%)")
    if lines:
        ax.text(
            0.03,
            0.97,
            "\n".join(lines),
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"},
        )
    ax.set_xlabel("expected share within kσ (Gaussian)")
    ax.set_ylabel("observed share within kσ")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return save_figure(fig, path)


def pose_ratio_bars(per_pose: dict[str, dict], path: Path) -> Path:
    """Per pose: median |pred/true - 1| (bars, %) with whiskers from the 25th to the 75th percentile, model
    beside the box-height baseline (log scale)."""
    plt = pyplot()
    poses = list(per_pose)
    x = np.arange(len(poses))
    fig, ax = plt.subplots(figsize=(max(7, 0.8 * len(poses) + 2), 4.5))
    w = 0.38
    lows = []
    for off, key, name in ((-w / 2, "model", "model"), (w / 2, "box_height", "box_height")):
        med = np.array([100 * per_pose[p][key]["median"] for p in poses], np.float64)
        q = np.array([per_pose[p][key].get("q25_q75", [np.nan, np.nan]) for p in poses], np.float64) * 100
        yerr = np.stack([np.clip(med - q[:, 0], 0, None), np.clip(q[:, 1] - med, 0, None)])
        ax.bar(x + off, med, w, yerr=np.nan_to_num(yerr), capsize=2, color=COLORS[name], label=LABELS[name])
        for xi, m, top in zip(x + off, med, q[:, 1]):
            if np.isfinite(m):
                ax.text(
                    xi,
                    np.nanmax([m, top]) * 1.06,
                    f"{m:.1f}" if m < 10 else f"{m:.0f}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        lows.append(np.nanmin(np.where(q[:, 0] > 0, q[:, 0], np.nan)) if np.isfinite(q).any() else 1.0)
    ax.set_xticks(x)
    ax.set_xticklabels(poses, rotation=35, ha="right")
    ax.set_ylabel("median |z_pred / z_true - 1| (%), whiskers: quartiles")
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(0.05, 0.5 * float(np.nanmin(lows))))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    ax.set_title("Pose invariance: relative depth error per pose")
    return save_figure(fig, path)


def error_vs_tilt(
    per_tilt: dict[str, dict[str, dict]], path: Path, title: str = "Depth error vs tilt"
) -> Path:
    """Median |pred/true - 1| (%) per camera tilt bin, one line per variant (``per_tilt``: variant -> tilt
    key -> stats with ``median`` and ``q25_q75``), quartiles shaded."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, bins in per_tilt.items():
        tilts = np.array([float(k) for k in bins], np.float64)
        order = np.argsort(tilts)
        med = np.array([100 * bins[k]["median"] for k in bins], np.float64)[order]
        q = 100 * np.array([bins[k].get("q25_q75", [np.nan, np.nan]) for k in bins], np.float64)[order]
        (line,) = ax.plot(tilts[order], med, "o-", label=name)
        ax.fill_between(tilts[order], q[:, 0], q[:, 1], color=line.get_color(), alpha=0.12)
    ax.set_xlabel("camera tilt (deg, negative = looking down)")
    ax.set_ylabel("median |z_pred / z_true - 1| (%), band: quartiles")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save_figure(fig, path)


def method_bars(values: dict[str, dict[str, dict[str, float | None]]], path: Path, title: str = "") -> Path:
    """Grouped bars of median |pred/true - 1| (%): one panel per panel key of ``values`` (e.g. floor), one
    group per group key (e.g. camera mount), one bar per method (``values[panel][group][method]``; None:
    no bar)."""
    plt = pyplot()
    panels = list(values)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.5 * max(len(panels), 1), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=False):
        groups = list(values[panel])
        methods = list(dict.fromkeys(m for g in groups for m in values[panel][g]))
        width = 0.8 / max(len(methods), 1)
        x = np.arange(len(groups))
        for k, m in enumerate(methods):
            v = [values[panel][g].get(m) for g in groups]
            ax.bar(
                x + (k - (len(methods) - 1) / 2) * width,
                [np.nan if e is None else 100 * e for e in v],
                width,
                label=m,
            )
        ax.set_xticks(x, groups, fontsize=8)
        ax.set_ylabel("median |z_pred / z_true - 1| (%)")
        ax.set_title(str(panel))
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def error_vs_seen(
    per_seen: dict[str, dict[str, dict]], methods: tuple[str, ...] | list[str], path: Path, title: str = ""
) -> Path:
    """Median |pred/true - 1| (%) against the number of person-frames a fixed camera has seen: one panel per
    mount (``per_seen[mount][bin key][method]``, bins in order), one line per method."""
    plt = pyplot()
    mounts = list(per_seen)
    fig, axes = plt.subplots(1, max(len(mounts), 1), figsize=(4.2 * max(len(mounts), 1), 3.8), squeeze=False)
    for ax, mount in zip(axes[0], mounts, strict=False):
        keys = list(per_seen[mount])
        x = np.arange(len(keys))
        for m in methods:
            v = [per_seen[mount][k].get(m) for k in keys]
            ax.plot(x, [np.nan if e is None else 100 * e for e in v], "o-", label=m)
        ax.set_xticks(x, keys, fontsize=7)
        ax.set_xlabel("person-frames seen")
        ax.set_title(str(mount))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("median |z_pred / z_true - 1| (%)")
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
