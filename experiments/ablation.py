"""Ablation sweep: train one model per variant with the real ``dp-train -m`` sweep, then score every model on
held-out synthetic sets (one per test pose sampler, errors per pose), the pose-invariance suite and the real
KITTI keypoints (when ``../shared`` is present), with paired bootstrap intervals on KITTI.

    .venv/bin/python experiments/ablation.py                                   # pose samplers (the default)
    .venv/bin/python experiments/ablation.py model=mlp_small,mlp_base --reference model=mlp_base
    .venv/bin/python experiments/ablation.py --sweep OUT/sweep                 # score a finished sweep only

Training: ``dp-train -m <sweep overrides> seed=<seeds> data.num_samples=N trainer.max_epochs=E <recipe>
logger=csv`` (recipe default ``data.batch_size=1024 model.optimizer.lr=0.003``, the converge-benchmark
recipe; each pose sampler gets its own generated set, seed 0). Held-out sets:
``dp-generate pose_sampling=S num_samples=H seed=99`` (other bodies, poses and cameras), scored with
``dp-eval dataset=...``. Writes ``summary.md``, ``summary.json`` and ``per_pose.png`` under ``--out``.
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
from depth_pose.env import REPO_ROOT, config_dir, real_data_dir

DEFAULT_SWEEP = ["pose_sampling=uniform,normal,hybrid"]


def compose(config: str, overrides: list[str]):
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return _compose(config, overrides=overrides)


def run_sweep(args, sweep_dir: Path) -> None:
    """The training sweep, through the ``dp-train`` console script (exactly what a user would run)."""
    cmd = [
        str(Path(sys.executable).with_name("dp-train")),
        "-m",
        *args.overrides,
        f"seed={','.join(str(s) for s in args.seeds)}",
        f"data.num_samples={args.samples}",
        f"trainer.max_epochs={args.epochs}",
        *args.recipe,
        f"logger={args.logger}",
        "progress=false",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    print(f"sweep: {time.perf_counter() - t0:.0f} s", flush=True)


def sweep_jobs(sweep_dir: Path) -> list[dict]:
    """Finished jobs of a ``dp-train -m`` folder (:func:`depth_pose.eval.sweep.read_sweep`); ``variant`` names
    what the sweep varied apart from the seed."""
    from depth_pose.eval.sweep import read_sweep, varied

    jobs = read_sweep(sweep_dir)
    keys = [k for k in varied(jobs) if k != "seed"]
    return [
        {
            "job": str(j.num),
            "variant": " ".join(f"{k}={j.overrides.get(k)}" for k in keys) or "all",
            "seed": int(j.config.seed),
            "ckpt": str(j.best_ckpt),
            "samples": int(j.config.data.num_samples),
            "epochs": int(j.config.trainer.max_epochs),
        }
        for j in jobs
    ]


def heldout_set(sampler: str, rows: int) -> Path:
    """``dp-generate pose_sampling=<sampler> num_samples=<rows> seed=99`` (reused when already there)."""
    from generation.pipeline import ensure_dataset

    cfg = compose(
        "generate",
        [
            f"pose_sampling={sampler}",
            f"num_samples={rows}",
            "seed=99",
            "progress=false",
            f"paths.root_dir={REPO_ROOT}",
        ],
    )
    return ensure_dataset(cfg)


def quiet_evaluate(overrides: list[str]) -> dict:
    """``dp-eval`` as a plain function, its printed report swallowed (everything is in metrics.json)."""
    from depth_pose.evaluate import evaluate

    with contextlib.redirect_stdout(io.StringIO()):
        return evaluate(compose("eval", [*overrides, "progress=false", "plots=false"]))


def paired_bootstrap(
    err_a: np.ndarray, err_b: np.ndarray, n: int = 10000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``err_a - err_b`` (per person) and its 95% bootstrap interval."""
    d = np.asarray(err_a) - np.asarray(err_b)
    g = np.random.default_rng(seed)
    means = d[g.integers(0, d.size, (n, d.size))].mean(1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def per_person(path: Path, true_key: str, keep=None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true depths of an output JSONL (rows where ``keep(row)``), for the seed analysis."""
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows = [r for r in rows if keep is None or keep(r)]
    return (
        np.array([r["z_pred_m"] for r in rows], np.float64),
        np.array([r[true_key] for r in rows], np.float64),
    )


def score_job(job: dict, heldout: dict[str, Path], kitti: Path | None, out: Path) -> dict:
    """Every evaluation of one model, with its per-person depths (``_people``: set -> (pred, true); not
    written to summary.json) for the KITTI paired bootstrap and the seed analysis."""
    res: dict = {"heldout": {}, "_people": {}}
    ck = f"ckpt={job['ckpt']}"
    base = out / f"job{job['job']}"
    for s, path in heldout.items():
        m = quiet_evaluate([f"dataset={path}", f"out={base / f'heldout_{s}' / 'pred.jsonl'}", ck])
        mo = m["methods"]["model"]
        res["heldout"][s] = {
            "ale_m": mo["ale_m"],
            "median_rel": mo["median_rel"],
            "bias_rel": mo["bias_rel"],
            "cov_1sigma": mo["cov_1sigma"],
            "by_pose": {k: v["median_rel"] for k, v in m["by_group"]["pose"]["model"].items()},
            "by_pose_bias": {k: v["bias_rel"] for k, v in m["by_group"]["pose"]["model"].items()},
        }
        res["_people"][f"held-out {s}"] = per_person(base / f"heldout_{s}" / "pred.jsonl", "gt_z_m")
    r = quiet_evaluate(["suite=invariance", f"out={base / 'invariance' / 'samples.jsonl'}", ck])
    o = r["overall_non_standing"]
    res["invariance"] = {
        "non_standing_median": o["model_median"],
        "box_height_median": o["box_height_median"],
        "ratio": o["ratio"],
        "cov_1sigma": r["coverage_1sigma"],
        "per_pose": {k: v["model"]["median"] for k, v in r["per_pose"].items()},
        "per_pose_bias": {k: v["model"]["bias_median"] for k, v in r["per_pose"].items()},
    }
    res["_people"]["suite (non-standing)"] = per_person(
        base / "invariance" / "samples.jsonl", "z_true_m", lambda row: row["pose"] != "standing"
    )
    if kitti is not None:
        pred_path = base / "kitti" / "pred.jsonl"
        m = quiet_evaluate([f"keypoints={kitti}", f"out={pred_path}", ck])
        mo = m["methods"]["model"]
        res["kitti"] = {
            "ale_m": mo["ale_m"],
            "bias_rel": mo["bias_rel"],
            "median_rel": mo["median_rel"],
            "cov_1sigma": mo["cov_1sigma"],
            "cov_2sigma": mo["cov_2sigma"],
        }
        res["_people"]["KITTI"] = per_person(pred_path, "gt_z_m")
    return res


def mean_pm(values: list[float], fmt: str) -> str:
    """``mean`` or ``mean ± half-range`` over seeds."""
    v = np.asarray(values, np.float64)
    if v.size == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ± {fmt.replace('+', '').format((v.max() - v.min()) / 2)}"


def variants_of(jobs: list[dict]) -> list[str]:
    return list(dict.fromkeys(j["variant"] for j in jobs))


def summary_table(jobs: list[dict]) -> str:
    """Rows: variant; columns: held-out ALE / median per test sampler, suite, KITTI (mean ± half-range
    over seeds)."""
    tested = list(jobs[0]["scores"]["heldout"])
    head = [
        "variant",
        "seeds",
        *(f"held-out {s}: ALE (m) / median" for s in tested),
        "suite: non-standing median (box-height ratio)",
        "suite ≤1σ",
    ]
    has_kitti = "kitti" in jobs[0]["scores"]
    if has_kitti:
        head += ["KITTI ALE (m)", "KITTI bias", "KITTI ≤1σ / ≤2σ"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants_of(jobs):
        js = [j for j in jobs if j["variant"] == v]
        sc = [j["scores"] for j in js]
        row = [v, ",".join(str(j["seed"]) for j in js)]
        for t in tested:
            row.append(
                mean_pm([x["heldout"][t]["ale_m"] for x in sc], "{:.2f}")
                + " / "
                + mean_pm([100 * x["heldout"][t]["median_rel"] for x in sc], "{:.1f}")
                + "%"
            )
        row.append(
            mean_pm([100 * x["invariance"]["non_standing_median"] for x in sc], "{:.1f}")
            + "% ("
            + mean_pm([x["invariance"]["ratio"] for x in sc], "{:.1f}")
            + "×)"
        )
        row.append(mean_pm([100 * x["invariance"]["cov_1sigma"] for x in sc], "{:.0f}") + "%")
        if has_kitti:
            row.append(mean_pm([x["kitti"]["ale_m"] for x in sc], "{:.3f}"))
            row.append(mean_pm([100 * x["kitti"]["bias_rel"] for x in sc], "{:+.1f}") + "%")
            row.append(
                mean_pm([100 * x["kitti"]["cov_1sigma"] for x in sc], "{:.0f}")
                + " / "
                + mean_pm([100 * x["kitti"]["cov_2sigma"] for x in sc], "{:.0f}")
                + "%"
            )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def seed_table(jobs: list[dict]) -> tuple[str, dict]:
    """Per variant with several seeds and per scored set: how alike the seeds' per-person errors are
    (:func:`depth_pose.eval.metrics.seed_spread`) and what the ensemble of the seeds would score. A small
    ``seed share`` means the error is in the inputs (keypoint noise, stature), not in the training run: more
    seeds, an ensemble or a longer run cannot remove it."""
    from depth_pose.eval.metrics import seed_spread

    lines = [
        "| variant | set | seeds | error correlation between seeds | seed share of the error variance "
        "| one seed: ALE / median | ensemble of the seeds: ALE / median |",
        "|---|---|---|---|---|---|---|",
    ]
    out: dict = {}
    for v in variants_of(jobs):
        js = [j for j in jobs if j["variant"] == v]
        if len(js) < 2:
            continue
        for name in js[0]["scores"]["_people"]:
            pp = [j["scores"]["_people"][name] for j in js]
            r = seed_spread(np.stack([p for p, _ in pp]), pp[0][1])
            out.setdefault(v, {})[name] = r
            if r["n"] < 2:
                continue  # nobody (or one person) scored by every seed: nothing to compare
            one, ens = r["single"], r["ensemble"]
            corr = "–" if r["corr"] is None else f"{r['corr']:.3f}"
            share = "–" if r["seed_share"] is None else f"{100 * r['seed_share']:.1f}%"
            lines.append(
                f"| {v} | {name} | {len(js)} | {corr} | {share} | "
                f"{one['ale_m']:.3f} m / {100 * one['median_rel']:.1f}% | "
                f"{ens['ale_m']:.3f} m / {100 * ens['median_rel']:.1f}% |"
            )
    return ("\n".join(lines) if out else ""), out


def per_pose_table(jobs: list[dict], source: str, test: str | None = None) -> str:
    """Median |pred/true - 1| / bias per pose (mean over seeds), one column per variant; ``source`` is
    ``heldout`` (on the held-out set of sampler ``test``) or ``invariance`` (the suite; bias = median)."""

    def pick(j: dict) -> tuple[dict, dict]:
        if source == "heldout":
            h = j["scores"]["heldout"][test]
            return h["by_pose"], h["by_pose_bias"]
        s = j["scores"]["invariance"]
        return s["per_pose"], s["per_pose_bias"]

    variants = variants_of(jobs)
    poses = list(pick(jobs[0])[0])
    where = f"held-out {test}" if source == "heldout" else "invariance suite"
    lines = [
        f"| pose ({where}) | " + " | ".join(f"{v}: median / bias" for v in variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for p in poses:
        cells = []
        for v in variants:
            vals = [pick(j) for j in jobs if j["variant"] == v]
            med = np.mean([a.get(p, np.nan) for a, _ in vals])
            bias = np.mean([b.get(p, np.nan) for _, b in vals])
            cells.append(f"{100 * med:.1f}% / {100 * bias:+.1f}%")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_pose_figure(jobs: list[dict], path: Path) -> Path:
    """Grouped bars: invariance-suite median error per pose, one bar per variant (mean over seeds)."""
    from depth_pose.eval.plots import pyplot, save_figure

    plt = pyplot()
    variants = variants_of(jobs)
    poses = list(jobs[0]["scores"]["invariance"]["per_pose"])
    x = np.arange(len(poses))
    w = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for i, v in enumerate(variants):
        vals = [
            100 * np.mean([j["scores"]["invariance"]["per_pose"][p] for j in jobs if j["variant"] == v])
            for p in poses
        ]
        ax.bar(x + (i - (len(variants) - 1) / 2) * w, vals, w, label=v)
    ax.set_xticks(x, poses, rotation=30, ha="right")
    ax.set_ylabel("median |pred/true − 1| (%)")
    ax.set_title("Pose-invariance suite (held-out bodies, YOLO-like noise) per variant")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "overrides",
        nargs="*",
        default=DEFAULT_SWEEP,
        help="dp-train sweep overrides (default: pose_sampling=uniform,normal,hybrid)",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--samples", type=int, default=2_000_000, help="training rows per model")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument(
        "--recipe",
        nargs="*",
        default=["data.batch_size=1024", "model.optimizer.lr=0.003", "final_eval.enabled=false"],
        help="overrides every job gets (default: the converge-benchmark recipe, and no end-of-job scores: "
        "this script scores every job itself; give none to keep each model preset's own lr)",
    )
    ap.add_argument(
        "--logger",
        default="wandb",
        help="the jobs' logger (conf/logger: wandb | csv | tensorboard | none); with wandb, the summary "
        "tables and figure also go to one offline W&B run in the sweep's group",
    )
    ap.add_argument(
        "--test-sampling",
        nargs="+",
        default=["uniform", "normal", "hybrid"],
        help="pose samplers of the held-out sets",
    )
    ap.add_argument("--heldout", type=int, default=100_000, help="rows of each held-out set (seed 99)")
    ap.add_argument(
        "--reference", default=None, help="variant the KITTI bootstrap compares with (default: the last)"
    )
    ap.add_argument(
        "--sweep", type=Path, default=None, help="score this finished dp-train -m folder (no training)"
    )
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "ablation")
    ap.add_argument("--real", type=Path, default=real_data_dir())
    args = ap.parse_args()

    out = args.out.resolve()
    sweep_dir = args.sweep.resolve() if args.sweep else out / "sweep"
    if args.sweep is None:
        run_sweep(args, sweep_dir)
    jobs = sweep_jobs(sweep_dir)
    variants = variants_of(jobs)
    reference = args.reference or variants[-1]
    if reference not in variants:
        raise SystemExit(f"--reference {reference!r} is not one of the variants {variants}")
    t0 = time.perf_counter()
    heldout = {s: heldout_set(s, args.heldout) for s in args.test_sampling}
    kitti = args.real / "kitti_pedestrians_dev.jsonl"
    kitti = kitti if kitti.is_file() else None
    for j in jobs:
        print(f"scoring job {j['job']} ({j['variant']}, seed {j['seed']}) ...", flush=True)
        j["scores"] = score_job(j, heldout, kitti, out)
    parts = [
        f"# Ablation: {', '.join(variants)}",
        "",
        f"Sweep `{sweep_dir}`: {jobs[0]['samples']:,} samples, {jobs[0]['epochs']} epochs per model; "
        "held-out "
        f"sets of {args.heldout:,} rows (seed 99) per pose sampler: "
        + ", ".join(f"{s} `{p.name}`" for s, p in heldout.items())
        + ". Values over seeds: mean ± half-range.",
        "",
        summary_table(jobs),
        "",
    ]
    for s in heldout:
        if len(jobs[0]["scores"]["heldout"][s]["by_pose"]) < 2:
            continue  # one pose name only (uniform / normal sets): nothing to break down
        parts += [
            f"Per pose on the held-out {s} set (median |pred/true − 1| / mean bias):",
            "",
            per_pose_table(jobs, "heldout", s),
            "",
        ]
    parts += [
        "Per pose on the invariance suite (median |pred/true − 1| / median bias):",
        "",
        per_pose_table(jobs, "invariance"),
        "",
    ]
    if kitti is not None:
        ref = next(j for j in jobs if j["variant"] == reference)

        def kitti_err(j: dict) -> np.ndarray:
            pred, true = j["scores"]["_people"]["KITTI"]
            return np.abs(pred - true)

        parts += [
            f"KITTI paired bootstrap against {reference} (seed {ref['seed']}), mean Δ|err| [95% interval]:",
            "",
        ]
        for j in jobs:
            if j is not ref:
                d, lo, hi = paired_bootstrap(kitti_err(j), kitti_err(ref))
                parts.append(f"- {j['variant']} seed {j['seed']}: {d:+.3f} m [{lo:+.3f}, {hi:+.3f}]")
        parts.append("")
    seeds_md, seeds = seed_table(jobs)
    if seeds:
        parts += [
            "Seeds: how much of the error is the training run's own (log errors per person; the ensemble is "
            "the geometric mean of the seeds' depths):",
            "",
            seeds_md,
            "",
        ]
    fig = per_pose_figure(jobs, out / "per_pose.png")
    parts += [f"Figure: `{fig}`", ""]
    text = "\n".join(parts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    slim = [j | {"scores": {k: v for k, v in j["scores"].items() if k != "_people"}} for j in jobs]
    (out / "summary.json").write_text(json.dumps(slim, indent=1))
    if seeds:
        (out / "seeds.json").write_text(json.dumps(seeds, indent=1))
    if args.logger == "wandb":
        log_wandb_summary(jobs, heldout, sweep_dir, out, fig)
    print(text)
    print(
        f"scoring: {time.perf_counter() - t0:.0f} s; "
        f"wrote {out / 'summary.md'}, {out / 'summary.json'}, {fig}"
    )


def log_wandb_summary(
    jobs: list[dict], heldout: dict[str, Path], sweep_dir: Path, out: Path, fig: Path
) -> None:
    """One offline W&B run in the sweep's group (the jobs' runs are grouped by the same folder name): the
    summary per job, the per-pose tables and the figure, where researchers compare runs."""
    import wandb

    run = wandb.init(
        project="depth_pose",
        group=sweep_dir.name,
        name="ablation summary",
        job_type="ablation",
        dir=str(out),
        mode=os.environ.get("WANDB_MODE", "offline"),
        config={"sweep_dir": str(sweep_dir), "heldout": {s: str(p) for s, p in heldout.items()}},
    )
    try:
        cols = ["job", "variant", "seed", "set", "ale_m", "median_rel", "bias_rel", "cov_1sigma"]
        rows = []
        for j in jobs:
            sets = {f"held-out {s}": v for s, v in j["scores"]["heldout"].items()}
            if "kitti" in j["scores"]:
                sets["KITTI"] = j["scores"]["kitti"]
            for name, v in sets.items():
                rows.append([j["job"], j["variant"], j["seed"], name, *(v.get(k) for k in cols[4:])])
            inv = j["scores"]["invariance"]
            rows.append(
                [
                    j["job"],
                    j["variant"],
                    j["seed"],
                    "suite",
                    None,
                    inv["non_standing_median"],
                    None,
                    inv["cov_1sigma"],
                ]
            )
        tables = {"summary": wandb.Table(columns=cols, data=rows)}
        pose_cols = ["job", "variant", "seed", "set", "pose", "median_rel", "bias_rel"]
        pose_rows = []
        for j in jobs:
            parts = [
                (f"held-out {s}", h["by_pose"], h["by_pose_bias"]) for s, h in j["scores"]["heldout"].items()
            ]
            inv = j["scores"]["invariance"]
            parts.append(("suite", inv["per_pose"], inv["per_pose_bias"]))
            for name, med, bias in parts:
                pose_rows += [[j["job"], j["variant"], j["seed"], name, p, med[p], bias.get(p)] for p in med]
        tables["per_pose"] = wandb.Table(columns=pose_cols, data=pose_rows)
        run.log({**tables, "per_pose_figure": wandb.Image(str(fig))})
    finally:
        run.finish()


if __name__ == "__main__":
    main()
