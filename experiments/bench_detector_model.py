"""Benchmark the detector-noise models against real YOLO11n-pose on held-out render pairs (issue 20).

    .venv/bin/python experiments/bench_detector_model.py [--pairs data/render_pairs_seed0/parts]
        [--holdout-mod 5] [--testset depth_pose/assets/rendered_yolo/people.jsonl.gz] [--draws 32]
        [--out docs/bench_detector_model.md]

Held-out sets: the seed-0 render-pair parts with index % holdout_mod == 0 (never fitted) and the seed-1919
test set (other bodies). Each detected person's exact keypoints (image size ``image_wh``) go through
``noise=rendered``, ``yolo_like`` and ``yolo_border`` (from ``conf/noise/*.yaml``, vis_threshold 0.1,
``forced_complete_share=0``: the real data is pure YOLO, and the forced-complete pattern only concerns unseen
joints or, for the border models, turns clamping off for 40% of detections); ``--draws`` samples per person.
Per size band (detector px = keypoint-box extent x the render's detector scale) and joint:

* NLL: of the real normalised residuals ``(yolo - exact) / size`` of reported joints (conf >= 0.1) under a
  density estimated from each model's reported samples, the same estimator for every model: a 2D histogram
  of ``sign(r) log(1 + |r| / 0.02)`` per component (48 x 48 bins over [-6, 6], values beyond in the edge
  bins) with 0.5 pseudo-counts per bin, in nats per joint (the change of variables is common to all models,
  so differences are differences of NLL in residual space);
* KS: of the radial error ``|r|`` and of the confidence, reported joints, samples vs real;
* rates: in-frame joints missed (conf < 0.1), outside joints reported (clamped), people with a left/right
  confusion (the swap finder of ``generation.detector_model``).
Tables: mean over joints per band; lower is better for NLL and KS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generation import detector_fit as dfit  # noqa: E402
from generation import detector_model as dm  # noqa: E402

MODELS = ("rendered", "yolo_like", "yolo_border")
T_SCALE, T_MAX, N_BINS, ALPHA = 0.02, 6.0, 48, 0.5


def build_models() -> dict:
    """The three noise objects from conf/noise (hydra compose), vis_threshold 0.1, no forced-complete."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from depth_pose.env import config_dir

    out = {}
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for name in MODELS:
            cfg = compose("generate", [f"noise={name}", "vis_threshold=0.1"]).noise
            out[name] = instantiate(cfg, forced_complete_share=0.0)
    return out


def load_lines(args) -> dict[str, list[dict]]:
    """The two held-out sets."""
    parts = sorted(args.pairs.glob("part_*.jsonl"))
    held = [p for p in parts if int(p.stem.split("_")[1]) % args.holdout_mod == 0]
    seed0 = [json.loads(line) for p in held for line in p.read_text().splitlines() if line.strip()]
    with gzip.open(args.testset, "rt") as f:
        seed1919 = [json.loads(line) for line in f if line.strip()]
    return {f"seed-0 held-out parts ({len(held)} parts)": seed0, "seed-1919 test set": seed1919}


def draw(model, name: str, src: dict, draws: int, seed: int) -> np.ndarray:
    """(draws, N, 17, 3) samples of ``model`` for the people of ``src``."""
    gt = torch.from_numpy(src["gt"]).float()
    img = torch.from_numpy(src["img"]).float()
    K = torch.from_numpy(src["K"]).float()
    obs, cams = dfit.observations(gt.repeat(draws, 1, 1), img.repeat(draws, 1), K.repeat(draws, 1, 1))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if name == "rendered":
            det = model(obs, g, cams, detector_scale=torch.from_numpy(src["scale"]).float().repeat(draws))
        else:
            det = model(obs, g, cams)
    return det.double().numpy().reshape(draws, *gt.shape[:2], 3)


def transform(r: np.ndarray) -> np.ndarray:
    """The NLL's coordinates: ``sign(r) log(1 + |r| / T_SCALE)`` (fine near 0, compressed tails)."""
    return np.sign(r) * np.log1p(np.abs(r) / T_SCALE)


def hist_nll(model_r: np.ndarray, real_r: np.ndarray) -> float:
    """Mean NLL (nats) of ``real_r`` (n, 2) under the smoothed 2D histogram of ``model_r`` (m, 2)."""
    edges = np.linspace(-T_MAX, T_MAX, N_BINS + 1)
    area = (edges[1] - edges[0]) ** 2
    tm = np.clip(transform(model_r), -T_MAX + 1e-9, T_MAX - 1e-9)
    tr = np.clip(transform(real_r), -T_MAX + 1e-9, T_MAX - 1e-9)
    counts, _, _ = np.histogram2d(tm[:, 0], tm[:, 1], bins=(edges, edges))
    dens = (counts + ALPHA) / (counts.sum() + ALPHA * N_BINS**2) / area
    i = np.clip(np.searchsorted(edges, tr[:, 0]) - 1, 0, N_BINS - 1)
    k = np.clip(np.searchsorted(edges, tr[:, 1]) - 1, 0, N_BINS - 1)
    return float(-np.log(dens[i, k]).mean())


def ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    if not len(a) or not len(b):
        return float("nan")
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate((a, b))
    return float(
        np.abs(np.searchsorted(a, x, "right") / len(a) - np.searchsorted(b, x, "right") / len(b)).max()
    )


def swap_share(gt: np.ndarray, det: np.ndarray, size: np.ndarray) -> np.ndarray:
    """(N,) bool: people with a flip or a swapped pair."""
    flip, swapped, _ = dfit.find_swaps(
        torch.from_numpy(gt), torch.from_numpy(np.nan_to_num(det)), torch.from_numpy(size)
    )
    return (flip | swapped.any(1)).numpy()


def scores(src: dict, det: np.ndarray, real: np.ndarray) -> dict[str, np.ndarray]:
    """Per (band, joint) NLL / KS, per band rates: samples ``det`` (D, N, 17, 3) vs ``real`` (N, 17, 3)."""
    gt, size, band = src["gt"], src["size"], src["band"]
    D = det.shape[0]
    inn = src["inside"]
    out = ~inn & np.isfinite(gt).all(-1)
    res = {k: np.full((dm.N_BANDS, 17), np.nan) for k in ("nll", "ks_err", "ks_conf")}
    rates = {k: np.full(dm.N_BANDS, np.nan) for k in ("miss", "clamp", "swap")}
    r_model = (det[..., :2] - gt) / size[:, None, None]
    r_real = (real[..., :2] - gt) / size[:, None, None]
    c_model, c_real = np.nan_to_num(det[..., 2]), np.nan_to_num(real[..., 2])
    rep_m = (c_model >= 0.1) & np.isfinite(r_model).all(-1)
    rep_r = (c_real >= 0.1) & np.isfinite(r_real).all(-1)
    swaps = np.stack([swap_share(gt, det[d], size) for d in range(D)])
    for b in range(dm.N_BANDS):
        pb = band == b
        if not pb.any():
            continue
        for j in range(17):
            mr = rep_r[pb, j]
            mm = rep_m[:, pb, j]
            if mr.sum() < 5 or mm.sum() < 20:
                continue
            real_j, model_j = r_real[pb, j][mr], r_model[:, pb, j][mm]
            res["nll"][b, j] = hist_nll(model_j, real_j)
            res["ks_err"][b, j] = ks(np.linalg.norm(model_j, axis=-1), np.linalg.norm(real_j, axis=-1))
            res["ks_conf"][b, j] = ks(c_model[:, pb, j][mm], c_real[pb, j][mr])
        rates["miss"][b] = (~rep_m[:, pb] & inn[pb]).sum() / max(D * inn[pb].sum(), 1)
        rates["clamp"][b] = (rep_m[:, pb] & out[pb]).sum() / max(D * out[pb].sum(), 1)
        rates["swap"][b] = swaps[:, pb].mean()
    return {**res, **rates, "extent": extent_ratio(gt, det)}


def extent_ratio(gt: np.ndarray, det: np.ndarray) -> np.ndarray:
    """(..., N) the detected keypoint-box extent (the larger of width and height, reported joints) over the
    exact one on the same joints: the skeleton's apparent size, what the depth model reads (NaN: < 2
    joints)."""
    rep = (np.nan_to_num(det[..., 2]) >= 0.1) & np.isfinite(det[..., :2]).all(-1)

    def ext(xy: np.ndarray) -> np.ndarray:
        v = np.where(rep[..., None], xy, np.nan)
        with np.errstate(all="ignore"):
            e = np.nanmax(v, -2) - np.nanmin(v, -2)
        return np.nanmax(e, -1)

    with np.errstate(all="ignore"):
        r = ext(det[..., :2]) / ext(np.broadcast_to(gt, det[..., :2].shape))
    return np.where(rep.sum(-1) >= 2, r, np.nan)


def real_rates(src: dict, real: np.ndarray) -> dict[str, np.ndarray]:
    """The same rates for the real detections."""
    inn = src["inside"]
    out = ~inn & np.isfinite(src["gt"]).all(-1)
    rep = np.nan_to_num(real[..., 2]) >= 0.1
    sw = swap_share(src["gt"], real, src["size"])
    r = {k: np.full(dm.N_BANDS, np.nan) for k in ("miss", "clamp", "swap")}
    for b in range(dm.N_BANDS):
        pb = src["band"] == b
        r["miss"][b] = (~rep[pb] & inn[pb]).sum() / max(inn[pb].sum(), 1)
        r["clamp"][b] = (rep[pb] & out[pb]).sum() / max(out[pb].sum(), 1)
        r["swap"][b] = sw[pb].mean() if pb.any() else np.nan
    r["extent"] = extent_ratio(src["gt"], real)
    return r


def prepare(lines: list[dict]) -> tuple[dict, np.ndarray, np.ndarray]:
    """Detected people's arrays (+ size, band, inside, K; ``det``: YOLO's), all people's bands and misses."""
    src = dfit.parse_lines(lines)
    src["K"] = np.stack([np.asarray(line["K"], np.float64) for line in lines])
    fr = dm.person_frame(torch.from_numpy(src["gt"]), torch.from_numpy(src["img"]))
    all_band = dm.size_band(fr["size"] * torch.from_numpy(src["scale"])).numpy()
    keep = ~src["missed"]
    sub = {k: v[keep] for k, v in src.items()}
    sub["size"] = fr["size"].numpy()[keep]
    sub["band"] = all_band[keep]
    sub["inside"] = dm.inside(torch.from_numpy(sub["gt"]), torch.from_numpy(sub["img"])).numpy()
    sub["inside"] &= np.isfinite(sub["gt"]).all(-1)
    return sub, all_band, src["missed"]


def fmt(v: float, digits: int = 3) -> str:
    return "—" if not np.isfinite(v) else f"{v:.{digits}f}"


def tables(title: str, src: dict, sc: dict, real: dict, all_band: np.ndarray, missed: np.ndarray) -> str:
    """Markdown tables of one held-out set."""
    names = dfit.band_names()
    counts = [int((src["band"] == b).sum()) for b in range(dm.N_BANDS)]
    lines = [
        f"### {title}",
        "",
        f"Detected people per band: {dict(zip(names, counts, strict=True))}; "
        f"YOLO missed the whole person: "
        + ", ".join(
            f"{n} {missed[all_band == b].mean():.1%}" for b, n in enumerate(names) if (all_band == b).any()
        )
        + " (not applied by the generator).",
        "",
    ]
    for key, label in (
        ("nll", "NLL (nats/joint)"),
        ("ks_err", "KS radial error"),
        ("ks_conf", "KS confidence"),
    ):
        lines += [
            f"**{label}**, mean over joints",
            "",
            "| band (det px) | " + " | ".join(MODELS) + " | rendered − yolo_like |"
            if key == "nll"
            else "| band (det px) | " + " | ".join(MODELS) + " | rendered / yolo_like |",
            "|---" * (len(MODELS) + 2) + "|",
        ]
        for b, n in enumerate(names + ["all"]):
            vals = [
                np.nanmean(sc[m][key][b]) if b < dm.N_BANDS else _weighted(sc[m][key], counts) for m in MODELS
            ]
            cmp = vals[0] - vals[1] if key == "nll" else vals[0] / vals[1]
            lines.append(f"| {n} | " + " | ".join(fmt(v) for v in vals) + f" | {fmt(cmp, 2)} |")
        lines.append("")
    lines += [
        "**Rates** (real / rendered / yolo_like / yolo_border)",
        "",
        "| band (det px) | in-frame missed | outside reported (clamped) | people with a L/R confusion |",
        "|---|---|---|---|",
    ]
    for b, n in enumerate(names):
        cells = [
            " / ".join(fmt(v, 3) for v in [real[k][b]] + [sc[m][k][b] for m in MODELS])
            for k in ("miss", "clamp", "swap")
        ]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "**Skeleton extent** detected / exact (keypoint box of the reported joints; what sets the depth): "
        "median [q10, q90], real / " + " / ".join(MODELS),
        "",
        "| band (det px) | real | " + " | ".join(MODELS) + " |",
        "|---" * (len(MODELS) + 2) + "|",
    ]
    for b, n in enumerate(names + ["all"]):
        pb = src["band"] == b if b < dm.N_BANDS else np.ones_like(src["band"], bool)
        cells = [quantiles(real["extent"][pb])] + [quantiles(sc[m]["extent"][:, pb]) for m in MODELS]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def quantiles(v: np.ndarray) -> str:
    """``median [q10, q90]`` of ``v`` (NaN-safe)."""
    return fmt(np.nanmedian(v)) + " [" + ", ".join(fmt(x) for x in np.nanpercentile(v, [10, 90])) + "]"


def _weighted(per_band_joint: np.ndarray, counts: list[int]) -> float:
    """People-weighted mean over bands of the per-band joint means."""
    m = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in per_band_joint])
    w = np.array(counts, float) * np.isfinite(m)
    return float(np.nansum(m * w) / w.sum())


def speed(rows: int = 65536, repeats: int = 5) -> str:
    """Samples/s of the noise stage alone (on the generator's own observations, ``rows`` per call) and of
    the whole analytic chain (``Generator.sample``), rendered vs yolo_like in one process (eager, 1 thr.)."""
    from hydra import compose, initialize_config_dir

    from depth_pose.env import config_dir
    from generation.generator import Generator

    torch.set_num_threads(1)
    out = ["| noise | noise stage (M samples/s) | whole chain (k samples/s) |", "|---|---|---|"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for name in ("rendered", "yolo_like"):
            gen = Generator(compose("generate", [f"noise={name}", "compile=false", "threads=1"]))
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                _, _, cams, obs, _ = gen.sample(rows, g)
                stage, chain = [], []
                for _ in range(repeats):
                    t = time.perf_counter()
                    gen.noise(obs, g, cams)
                    stage.append(time.perf_counter() - t)
                for _ in range(3):
                    t = time.perf_counter()
                    gen.sample(rows, g)
                    chain.append(time.perf_counter() - t)
            out.append(f"| {name} | {rows / min(stage) / 1e6:.2f} | {rows / min(chain) / 1e3:.0f} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, default=REPO / "data/render_pairs_seed0/parts")
    ap.add_argument("--holdout-mod", type=int, default=5)
    ap.add_argument("--testset", type=Path, default=REPO / "depth_pose/assets/rendered_yolo/people.jsonl.gz")
    ap.add_argument("--draws", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None, help="write the tables (Markdown) here")
    ap.add_argument("--speed", action="store_true", help="also time the noise stage and the whole chain")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    models = build_models()
    text = []
    for title, lines in load_lines(args).items():
        src, all_band, missed = prepare(lines)
        real = src["det"]
        sc = {name: scores(src, draw(m, name, src, args.draws, 0), real) for name, m in models.items()}
        block = tables(title, src, sc, real_rates(src, real), all_band, missed)
        print(block)
        text.append(block)
    if args.speed:
        block = "### Speed (CPU, 1 thread, best of runs)\n\n" + speed()
        print(block)
        text.append(block)
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.out:
        args.out.write_text("\n".join(text))


if __name__ == "__main__":
    main()
