"""Pose-sampling ablation: one model per strategy (``uniform``, ``normal``, ``hybrid``) trained by the real
``dp-train -m`` sweep, each scored on every strategy's held-out set, on the pose-invariance suite and on the
real KITTI keypoints (when ``../shared`` is present), with paired bootstrap intervals on KITTI.

    .venv/bin/python experiments/ablation_pose_sampling.py                       # train (sweep) + score
    .venv/bin/python experiments/ablation_pose_sampling.py --sweep OUT/sweep     # score a finished sweep

Training: ``dp-train -m pose_sampling=<strategies> seed=<seeds> data.num_samples=N trainer.max_epochs=E
data.batch_size=1024 model.optimizer.lr=0.003 logger=csv`` (each strategy gets its own generated set, seed 0).
Held-out sets: ``dp-generate pose_sampling=S num_samples=H seed=99`` (other bodies, poses and cameras).
Writes ``summary.md``, ``summary.json`` and ``per_pose.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import depth_pose  # noqa: F401  (environment defaults)
from depth_pose._env import REPO_ROOT

STRATEGIES = ("uniform", "normal", "hybrid")


def compose(config: str, overrides: list[str]):
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return _compose(config, overrides=overrides)


def run_sweep(args, sweep_dir: Path) -> None:
    """The training sweep, through the ``dp-train`` console script (exactly what a user would run)."""
    cmd = [str(Path(sys.executable).with_name("dp-train")), "-m", f"pose_sampling={','.join(args.strategies)}",
           f"seed={','.join(str(s) for s in args.seeds)}", f"data.num_samples={args.samples}",
           f"trainer.max_epochs={args.epochs}", "data.batch_size=1024", "model.optimizer.lr=0.003", "logger=csv",
           "progress=false", f"hydra.sweep.dir={sweep_dir}"]
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    print(f"sweep: {time.perf_counter() - t0:.0f} s", flush=True)


def sweep_jobs(sweep_dir: Path) -> list[dict]:
    """Each finished job of a ``dp-train -m`` folder (:func:`depth_pose.eval.sweep.read_sweep`)."""
    from depth_pose.eval.sweep import read_sweep

    return [{"job": str(j.num), "strategy": str(j.config.pose_sampling.name), "seed": int(j.config.seed),
             "ckpt": str(j.best_ckpt), "samples": int(j.config.data.num_samples),
             "epochs": int(j.config.trainer.max_epochs)} for j in read_sweep(sweep_dir)]


def heldout_set(strategy: str, rows: int) -> Path:
    """``dp-generate pose_sampling=<strategy> num_samples=<rows> seed=99`` (reused when already there)."""
    from generation.pipeline import ensure_dataset

    cfg = compose("generate", [f"pose_sampling={strategy}", f"num_samples={rows}", "seed=99", "progress=false",
                               f"paths.root_dir={REPO_ROOT}"])
    return ensure_dataset(cfg)


def quiet_evaluate(overrides: list[str]) -> dict:
    """``dp-eval`` as a plain function, its printed report swallowed (everything is in metrics.json)."""
    from depth_pose.eval.run import evaluate

    with contextlib.redirect_stdout(io.StringIO()):
        return evaluate(compose("eval", [*overrides, "progress=false", "plots=false"]))


def paired_bootstrap(err_a: np.ndarray, err_b: np.ndarray, n: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``err_a - err_b`` (per person) and its 95% bootstrap interval."""
    d = np.asarray(err_a) - np.asarray(err_b)
    g = np.random.default_rng(seed)
    means = d[g.integers(0, d.size, (n, d.size))].mean(1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def score_job(job: dict, heldout: dict[str, Path], kitti: Path | None, out: Path) -> dict:
    """Every evaluation of one model; per-person KITTI errors kept for the paired bootstrap."""
    res: dict = {"heldout": {}}
    ck = f"ckpt={job['ckpt']}"
    base = out / f"job{job['job']}_{job['strategy']}_s{job['seed']}"
    for s, path in heldout.items():
        m = quiet_evaluate([f"dataset={path}", f"out={base / f'heldout_{s}' / 'pred.jsonl'}", ck])
        mo = m["methods"]["model"]
        res["heldout"][s] = {"ale_m": mo["ale_m"], "median_rel": mo["median_rel"], "bias_rel": mo["bias_rel"],
                             "cov_1sigma": mo["cov_1sigma"],
                             "by_pose": {k: v["median_rel"] for k, v in m["by_pose"]["model"].items()},
                             "by_pose_bias": {k: v["bias_rel"] for k, v in m["by_pose"]["model"].items()}}
    r = quiet_evaluate(["suite=invariance", f"out={base / 'invariance' / 'samples.jsonl'}", ck])
    o = r["overall_non_standing"]
    res["invariance"] = {"non_standing_median": o["model_median"], "box_height_median": o["box_height_median"],
                         "ratio": o["ratio"], "cov_1sigma": r["coverage_1sigma"],
                         "per_pose": {k: v["model"]["median"] for k, v in r["per_pose"].items()},
                         "per_pose_bias": {k: v["model"]["bias_median"] for k, v in r["per_pose"].items()}}
    if kitti is not None:
        pred_path = base / "kitti" / "pred.jsonl"
        m = quiet_evaluate([f"keypoints={kitti}", f"out={pred_path}", ck])
        mo = m["methods"]["model"]
        rows = [json.loads(x) for x in pred_path.read_text().splitlines()]
        res["kitti"] = {"ale_m": mo["ale_m"], "bias_rel": mo["bias_rel"], "median_rel": mo["median_rel"],
                        "cov_1sigma": mo["cov_1sigma"], "cov_2sigma": mo["cov_2sigma"],
                        "abs_err": [r["abs_err_m"] for r in rows]}
    return res


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def mean_pm(values: list[float], fmt: str) -> str:
    """``mean`` or ``mean ± half-range`` over seeds."""
    v = np.asarray(values, np.float64)
    if v.size == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ± {fmt.format((v.max() - v.min()) / 2)}"


def summary_table(jobs: list[dict], strategies: list[str]) -> str:
    """Rows: training strategy; columns: held-out ALE / median per test strategy, suite, KITTI."""
    tested = list(jobs[0]["scores"]["heldout"])
    head = ["trained on", "seeds", *(f"held-out {s}: ALE (m) / median" for s in tested),
            "suite: non-standing median (box-height ratio)", "suite ≤1σ"]
    has_kitti = "kitti" in jobs[0]["scores"]
    if has_kitti:
        head += ["KITTI ALE (m)", "KITTI bias", "KITTI ≤1σ / ≤2σ"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in strategies:
        js = [j for j in jobs if j["strategy"] == s]
        if not js:
            continue
        sc = [j["scores"] for j in js]
        row = [s, ",".join(str(j["seed"]) for j in js)]
        for t in tested:
            row.append(mean_pm([x["heldout"][t]["ale_m"] for x in sc], "{:.2f}") + " / "
                       + mean_pm([100 * x["heldout"][t]["median_rel"] for x in sc], "{:.1f}") + "%")
        row.append(mean_pm([100 * x["invariance"]["non_standing_median"] for x in sc], "{:.1f}") + "% ("
                   + mean_pm([x["invariance"]["ratio"] for x in sc], "{:.1f}") + "×)")
        row.append(mean_pm([100 * x["invariance"]["cov_1sigma"] for x in sc], "{:.0f}") + "%")
        if has_kitti:
            row.append(mean_pm([x["kitti"]["ale_m"] for x in sc], "{:.3f}"))
            row.append(mean_pm([100 * x["kitti"]["bias_rel"] for x in sc], "{:+.1f}") + "%")
            row.append(mean_pm([100 * x["kitti"]["cov_1sigma"] for x in sc], "{:.0f}") + " / "
                       + mean_pm([100 * x["kitti"]["cov_2sigma"] for x in sc], "{:.0f}") + "%")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def per_pose_table(jobs: list[dict], strategies: list[str], test: str = "hybrid") -> str:
    """Median |pred/true - 1| per pose on one held-out set (mean over seeds), one column per training strategy."""
    present = [s for s in strategies if any(j["strategy"] == s for j in jobs)]
    poses = list(next(j for j in jobs)["scores"]["heldout"][test]["by_pose"])
    lines = [f"| pose (held-out {test}) | " + " | ".join(f"{s}: median / bias" for s in present) + " |",
             "|---|" + "---|" * len(present)]
    for p in poses:
        cells = []
        for s in present:
            sc = [j["scores"]["heldout"][test] for j in jobs if j["strategy"] == s]
            med = np.mean([x["by_pose"][p] for x in sc])
            bias = np.mean([x["by_pose_bias"][p] for x in sc])
            cells.append(f"{100 * med:.1f}% / {100 * bias:+.1f}%")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_pose_figure(jobs: list[dict], strategies: list[str], path: Path) -> Path:
    """Grouped bars: invariance-suite median error per pose, one bar per training strategy (mean over seeds)."""
    from depth_pose.eval.plots import _plt, _save

    plt = _plt()
    present = [s for s in strategies if any(j["strategy"] == s for j in jobs)]
    poses = list(jobs[0]["scores"]["invariance"]["per_pose"])
    x = np.arange(len(poses))
    w = 0.8 / len(present)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for i, s in enumerate(present):
        vals = [100 * np.mean([j["scores"]["invariance"]["per_pose"][p] for j in jobs if j["strategy"] == s])
                for p in poses]
        ax.bar(x + (i - (len(present) - 1) / 2) * w, vals, w, label=f"trained on {s}")
    ax.set_xticks(x, poses, rotation=30, ha="right")
    ax.set_ylabel("median |pred/true − 1| (%)")
    ax.set_title("Pose-invariance suite (held-out bodies, YOLO-like noise) by training pose sampler")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--samples", type=int, default=2_000_000, help="training rows per strategy")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--heldout", type=int, default=100_000, help="rows of each held-out set (seed 99)")
    ap.add_argument("--sweep", type=Path, default=None, help="score this finished dp-train -m folder (no training)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "ablation_pose_sampling")
    default_real = os.environ.get("DEPTH_POSE_REAL_DATA") or str(REPO_ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--real", type=Path, default=Path(default_real))
    args = ap.parse_args()

    out = args.out.resolve()
    sweep_dir = args.sweep.resolve() if args.sweep else out / "sweep"
    if args.sweep is None:
        run_sweep(args, sweep_dir)
    jobs = sweep_jobs(sweep_dir)
    strategies = [s for s in STRATEGIES if any(j["strategy"] == s for j in jobs)]
    t0 = time.perf_counter()
    heldout = {s: heldout_set(s, args.heldout) for s in strategies}
    kitti = args.real / "kitti_pedestrians_dev.jsonl"
    kitti = kitti if kitti.is_file() else None
    for j in jobs:
        print(f"scoring job {j['job']} ({j['strategy']}, seed {j['seed']}) ...", flush=True)
        j["scores"] = score_job(j, heldout, kitti, out)
    parts = ["# Pose-sampling ablation", "",
             f"Sweep `{sweep_dir}`: {jobs[0]['samples']:,} samples, {jobs[0]['epochs']} epochs per model; held-out "
             f"sets of {args.heldout:,} rows (seed 99) per strategy: "
             + ", ".join(f"{s} `{p.name}`" for s, p in heldout.items()) + ". Values over seeds: mean ± half-range.",
             "", summary_table(jobs, strategies), ""]
    if "hybrid" in heldout:
        parts += ["Per pose on the held-out hybrid set (median |pred/true − 1| / mean bias):", "",
                  per_pose_table(jobs, strategies, "hybrid"), ""]
    if kitti is not None and "hybrid" in strategies:
        ref = next(j for j in jobs if j["strategy"] == "hybrid")
        parts += [f"KITTI paired bootstrap against hybrid (seed {ref['seed']}), mean Δ|err| [95% interval]:", ""]
        for j in jobs:
            if j is ref:
                continue
            d, lo, hi = paired_bootstrap(np.array(j["scores"]["kitti"]["abs_err"]), np.array(ref["scores"]["kitti"]["abs_err"]))
            parts.append(f"- {j['strategy']} seed {j['seed']}: {d:+.3f} m [{lo:+.3f}, {hi:+.3f}]")
        parts.append("")
    fig = per_pose_figure(jobs, strategies, out / "per_pose.png")
    parts += [f"Figure: `{fig}`", ""]
    text = "\n".join(parts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    slim = [{k: v for k, v in j.items() if k != "scores"} | {"scores": {**j["scores"], "kitti": {
        k: v for k, v in j["scores"].get("kitti", {}).items() if k != "abs_err"}}} for j in jobs]
    (out / "summary.json").write_text(json.dumps(slim, indent=1))
    print(text)
    print(f"scoring: {time.perf_counter() - t0:.0f} s; wrote {out / 'summary.md'}, {out / 'summary.json'}, {fig}")


if __name__ == "__main__":
    main()
