"""YOLO pose keypoint error and detection rate versus person pixel height, on rendered Anny people.

Renders poses from the configured samplers (render preset, default ``seed``: Cycles 4 samples, 640 px),
downscales each render to many scales (the downscale trick: exact labels), runs YOLO11n-pose at imgsz 640 and
keeps EVERY sample (detected or not, no OKS filter) to measure:

* detection rate (a matched detection exists) versus person height (vertical extent of the exact keypoints);
* keypoint error |YOLO - exact| in px and normalised by person height, per height bin (median, mean, p90);
* per-joint robust sigma per coordinate (1.4826 MAD) normalised by person height, systematic offset, and the
  fit ``sigma_px(h) = sqrt(floor^2 + (rel h)^2)`` over bins: the numbers that calibrate
  ``generation/noise.py``.

    .venv/bin/python experiments/figure_yolo_noise.py --views 24 --out docs/figures/yolo_noise_vs_height.png

Writes the PNG and a JSON of the numbers next to it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import depth_pose  # noqa: F401

SCALES = [1.0, 0.8, 0.64, 0.5, 0.4, 0.32, 0.25, 0.2, 0.16, 0.13, 0.1, 0.08, 0.065, 0.05]


def collect(preset: str, n_views: int, seed: int, workers: int) -> dict:
    """All labelled samples (any status) of ``n_views`` renders x len(SCALES)."""
    import torch
    from hydra import compose, initialize_config_dir

    from depth_pose.env import config_dir
    from depth_pose.keypoints import NUM_KEYPOINTS
    from generation.pipeline import with_defaults
    from generation.render.pipeline import build_generator

    ov = [
        f"render={preset}",
        f"render.scales=[{','.join(map(str, SCALES))}]",
        "render.oks_threshold=0.0",
        f"render.workers={workers}",
        "render.poses_per_chunk=1",
        "samples_per_pose=4",
        "body.n_bodies=64",
        "out_dir=/tmp/unused",
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = with_defaults(compose("generate", overrides=ov))
    gen = build_generator(cfg)
    g, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    H, ERR, DET, CONF, STRAT, GT = [], [], [], [], [], []
    done = 0
    try:
        while done < n_views:
            plan = gen._plan(1, g, rng)
            futs = [gen.pool.submit(j) for j in plan["jobs"]]
            images = [gen.pool.result(j, f) for j, f in zip(plan["jobs"], futs)]
            recs, _ = gen._label(plan, images, rng)
            for r in recs:
                v = r["view"]
                kp = plan["posed"].keypoints[v["cam"]].double().numpy() @ v["R"].T + v["t"]
                gt = (kp @ r["K"].T)[:, :2] / kp[:, 2:3]
                H.append(gt[:, 1].max() - gt[:, 1].min())
                GT.append(gt)
                det = r["label"].keypoints
                ERR.append(
                    det[:, :2] - gt
                    if r["label"].status != "no_detection"
                    else np.full((NUM_KEYPOINTS, 2), np.nan)
                )
                DET.append(r["label"].status != "no_detection")
                CONF.append(r["label"].det_conf)
                STRAT.append(plan["poses"].preset[v["pose"]] or plan["poses"].strategy)
            done += len(plan["views"])
            print(f"  {done}/{n_views} views, {len(H)} samples", flush=True)
    finally:
        gen.close()
    return {
        "h": np.array(H),
        "err": np.array(ERR),
        "det": np.array(DET),
        "conf": np.array(CONF),
        "gt": np.array(GT),
        "preset": np.array([str(x) for x in STRAT]),
    }


def analyse(d: dict) -> dict:
    from depth_pose.keypoints import COCO_NAMES, L_HIP, L_SHOULDER, R_HIP, R_SHOULDER

    h, err, det = d["h"], d["err"], d["det"]
    dist = np.hypot(err[..., 0], err[..., 1])  # (N, 17)
    body = slice(5, 17)
    per_sample = np.nanmean(dist[:, body], axis=1)
    edges = np.array([0, 20, 27, 36, 45, 55, 70, 90, 115, 150, 200, 260, 340, 600])
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (h >= lo) & (h < hi)
        if m.sum() < 3:
            continue
        md = m & det
        e = per_sample[md]
        c = err[md][:, body].reshape(-1, 2)
        c = c[np.isfinite(c).all(1)]
        mad = 1.4826 * np.median(np.abs(c - np.median(c, 0)), 0).mean() if len(c) else np.nan
        bins.append(
            {
                "h_lo": int(lo),
                "h_hi": int(hi),
                "h_mid": float(np.median(h[m])),
                "n": int(m.sum()),
                "det_rate": float(det[m].mean()),
                "err_px_median": float(np.median(e)) if len(e) else None,
                "err_px_mean": float(np.mean(e)) if len(e) else None,
                "err_px_p90": float(np.percentile(e, 90)) if len(e) else None,
                "err_rel_median": float(np.median(e / h[md])) if len(e) else None,
                "sigma_px_robust": float(mad) if len(c) else None,
            }
        )
    # fit sigma(h) = sqrt(floor^2 + (rel h)^2) on bins with enough detections
    fb = [
        b
        for b in bins
        if b["sigma_px_robust"] is not None and b["det_rate"] > 0.3 and np.isfinite(b["sigma_px_robust"])
    ]
    hm = np.array([b["h_mid"] for b in fb])
    sg = np.array([b["sigma_px_robust"] for b in fb])
    A = np.stack([np.ones_like(hm), hm**2], 1)
    coef, *_ = np.linalg.lstsq(A, sg**2, rcond=None)
    floor, rel = float(np.sqrt(max(coef[0], 0))), float(np.sqrt(max(coef[1], 0)))
    # per joint, large people (h >= 90 px): robust sigma / h per coordinate, and mean offset / h
    big = det & (h >= 90)
    joints = {}
    for j, name in enumerate(COCO_NAMES):
        e = err[big, j] / h[big, None]
        e = e[np.isfinite(e).all(1)]
        if len(e) < 5:
            continue
        med = np.median(e, 0)
        joints[name] = {
            "rel_sigma": float(1.4826 * np.median(np.abs(e - med), 0).mean()),
            "offset_rel": [float(v) for v in med],
            "outlier_share": float((np.hypot(*(e - med).T) > 0.1).mean()),
        }
    # The hips' systematic shift along the torso (noise.hip_shift): the detector's mid-hip error projected on
    # the exact mid-hip -> mid-shoulder vector, as a fraction of that vector's length (median over large
    # people).
    hip_shift = None
    if "gt" in d and len(d["gt"]):
        gt = d["gt"]
        torso = 0.5 * (gt[:, L_SHOULDER] + gt[:, R_SHOULDER] - gt[:, L_HIP] - gt[:, R_HIP])  # (N, 2)
        e_hip = 0.5 * (err[:, L_HIP] + err[:, R_HIP])
        t2 = (torso**2).sum(1)
        ok = big & np.isfinite(e_hip).all(1) & (t2 > (0.1 * h) ** 2)
        shift = (e_hip[ok] * torso[ok]).sum(1) / t2[ok]
        if len(shift) >= 5:
            boot = np.random.default_rng(0).choice(shift, (2000, len(shift))).mean(1)
            hip_shift = {
                "n": int(len(shift)),
                "median": float(np.median(shift)),
                "mean": float(np.mean(shift)),
                "mean_ci95": [float(v) for v in np.percentile(boot, [2.5, 97.5])],
                "torso_over_height_median": float(np.median(np.sqrt(t2[ok]) / h[ok])),
            }
    # detection rate logistic fit: p = 1 / (1 + exp(-(h - h50) / w))
    from scipy.optimize import curve_fit

    try:
        (h50, w), _ = curve_fit(
            lambda x, a, b: 1 / (1 + np.exp(-(x - a) / b)), h, det.astype(float), p0=(35.0, 5.0), maxfev=5000
        )
    except RuntimeError:
        h50, w = float("nan"), float("nan")
    return {
        "n_samples": int(len(h)),
        "bins": bins,
        "sigma_fit": {"floor_px": floor, "rel": rel},
        "det_fit": {"h50_px": float(h50), "width_px": float(w)},
        "joints_h_ge_90": joints,
        "hip_shift": hip_shift,
    }


def plot(d: dict, res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, det = d["h"], d["det"]
    dist = np.hypot(d["err"][..., 0], d["err"][..., 1])
    e = np.nanmean(dist[:, 5:17], axis=1)
    b = res["bins"]
    hm = np.array([x["h_mid"] for x in b])
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.3))
    ax[0].scatter(h[det], e[det], s=4, alpha=0.3, label="samples")
    ax[0].plot(hm, [x["err_px_median"] for x in b], "o-", c="C1", label="median per bin")
    ax[0].plot(hm, [x["err_px_p90"] for x in b], "--", c="C1", label="p90")
    hh = np.linspace(10, hm.max(), 200)
    f = res["sigma_fit"]
    ax[0].plot(
        hh,
        np.sqrt(f["floor_px"] ** 2 + (f["rel"] * hh) ** 2),
        c="C3",
        label=f"robust sigma/coord fit: sqrt({f['floor_px']:.2f}^2 + ({f['rel']:.4f} h)^2)",
    )
    ax[0].set(
        xscale="log",
        yscale="log",
        xlabel="person height (px, exact keypoints)",
        ylabel="mean body-joint error (px)",
        title="YOLO11n-pose keypoint error",
    )
    ax[0].legend(fontsize=7)
    ax[1].plot(hm, [x["err_rel_median"] for x in b], "o-", label="median error / height")
    ax[1].set(xscale="log", xlabel="person height (px)", ylabel="error / height", title="normalised error")
    ax[1].grid(alpha=0.3)
    ax[2].plot(hm, [x["det_rate"] for x in b], "o-", label="detected (matched)")
    df = res["det_fit"]
    ax[2].plot(
        hh,
        1 / (1 + np.exp(-(hh - df["h50_px"]) / df["width_px"])),
        c="C3",
        label=f"logistic: h50={df['h50_px']:.1f} px, w={df['width_px']:.1f}",
    )
    ax[2].set(
        xscale="log",
        xlabel="person height (px)",
        ylabel="detection rate",
        title="detection rate",
        ylim=(0, 1.05),
    )
    ax[2].legend(fontsize=8)
    ax[2].grid(alpha=0.3)
    fig.suptitle(
        f"YOLO11n-pose (imgsz 640, CPU) on Cycles renders of Anny, downscale trick; n={res['n_samples']}"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--views", type=int, default=24, help="rendered views (each gives len(SCALES) samples)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/yolo_noise_vs_height.png"))
    ap.add_argument(
        "--raw",
        type=Path,
        default=None,
        help="samples file (.npz): written after rendering, or re-analysed without rendering if it exists",
    )
    a = ap.parse_args()
    for p in (a.out, a.raw):
        if p is not None:
            p.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if a.raw and a.raw.exists():  # re-analyse saved samples (no rendering)
        d = dict(np.load(a.raw, allow_pickle=False))
    else:
        d = collect(a.preset, a.views, a.seed, a.workers)
        if a.raw:
            np.savez_compressed(a.raw, **d)
    res = analyse(d)
    res.update(preset=a.preset, views=a.views, seconds=time.perf_counter() - t0)
    plot(d, res, a.out)
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("n_samples", "sigma_fit", "det_fit", "hip_shift")}, indent=1))
    for b in res["bins"]:
        print(
            f"h {b['h_lo']:3d}-{b['h_hi']:3d}: n={b['n']:3d} det={b['det_rate']:.2f} "
            f"err_med={b['err_px_median']} rel={b['err_rel_median']} sigma={b['sigma_px_robust']}"
        )


if __name__ == "__main__":
    main()
