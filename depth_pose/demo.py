"""``make demo``: the main job end to end on embedded defaults, printing a short table.

generate a default synthetic set -> train the default model recipe (short) -> evaluate it (real KITTI
pedestrians when ``../shared/data/real`` is present, the pose-invariance suite always) next to the shipped
default model and the pinhole baselines -> predict on the bundled example image.

    python -m depth_pose.demo [--samples 300000] [--epochs 4] [--out outputs/demo] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import depth_pose  # noqa: F401  (caches, offline)
from depth_pose.env import REPO_ROOT, config_dir, real_data_dir

CONF_DIR = config_dir()
ASSETS = Path(depth_pose.__file__).resolve().parent / "assets"


def compose(name: str, overrides: list[str]):
    """A config of ``conf/`` as the Hydra app would see it (with ``hydra:`` resolvers set)."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hcompose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def real_data() -> Path | None:
    """The real data folder when it holds KITTI dev (:func:`depth_pose.env.real_data_dir`), else None (said
    once: the KITTI rows are left out)."""
    path = real_data_dir()
    if (path / "kitti_pedestrians_dev.jsonl").is_file():
        return path
    print(f"demo: no real data at {path} (set DEPTH_POSE_REAL_DATA): the KITTI rows are left out", flush=True)
    return None


def step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def run(samples: int, epochs: int, out: Path, data_root: Path | None = None) -> dict:
    """Generate, train, evaluate and predict (the four steps); ``data_root`` replaces the repository's
    ``data/`` as the home of the synthetic set."""
    from depth_pose.evaluate import evaluate
    from depth_pose.predict.run import predict
    from depth_pose.predictor import export_model
    from depth_pose.train import train
    from generation.pipeline import generate

    out.mkdir(parents=True, exist_ok=True)
    root = f"paths.root_dir={REPO_ROOT}"
    times: dict[str, float] = {}

    t = step(f"1/4 generate {samples:,} synthetic samples (hybrid poses, random cameras, detector noise)")
    data = [f"paths.data_dir={data_root}"] if data_root is not None else []
    gen_cfg = compose("generate", [root, *data, f"num_samples={samples}", f"paths.output_dir={out}/generate"])
    data_dir = generate(gen_cfg)
    times["generate_s"] = time.perf_counter() - t

    t = step(f"2/4 train mlp_base for {epochs} epochs on the CPU")
    train_cfg = compose(
        "train",
        [
            root,
            f"data.dir={data_dir}",
            f"trainer.max_epochs={epochs}",
            "logger=csv",
            f"paths.output_dir={out}/train",
        ],
    )
    metrics, objs = train(train_cfg)
    model_path = export_model(
        objs["model"],
        out / "demo_model.safetensors",
        {"recipe": "depth_pose.demo", "data_dir": str(data_dir), "metrics": metrics},
    )
    times["train_s"] = time.perf_counter() - t

    t = step("3/4 evaluate: real KITTI pedestrians (if present) and the pose-invariance suite")
    results: dict[str, dict] = {}
    real = real_data()
    for name, ckpt in (("demo model", str(model_path)), ("shipped default", None)):
        ck = f"ckpt={ckpt}" if ckpt else "ckpt=null"
        tag = name.split()[0]
        if real is not None:
            cfg = compose(
                "eval",
                [
                    root,
                    f"keypoints={real / 'kitti_pedestrians_dev.jsonl'}",
                    f"out={out}/eval_kitti_{tag}/predictions.jsonl",
                    ck,
                    "progress=false",
                ],
            )
            results[f"kitti/{name}"] = evaluate(cfg)
        cfg = compose(
            "eval",
            [
                root,
                "suite=invariance",
                f"out={out}/eval_invariance_{tag}/samples.jsonl",
                ck,
                "progress=false",
            ],
        )
        results[f"invariance/{name}"] = evaluate(cfg)
    times["eval_s"] = time.perf_counter() - t

    t = step("4/4 predict on the bundled example image")
    cfg = compose(
        "predict",
        [
            root,
            f"source={ASSETS / 'example.jpg'}",
            f"out={out}/predict",
            f"ckpt={model_path}",
            f"intrinsics.calib={ASSETS / 'example.json'}",
            "progress=false",
        ],
    )
    summary = predict(cfg)
    times["predict_s"] = time.perf_counter() - t
    preds = [
        json.loads(line)
        for line in (Path(summary["out"]) / "predictions.jsonl").read_text().splitlines()
        if line
    ]
    truth = json.loads((ASSETS / "example.json").read_text())["people"]
    return {
        "metrics": metrics,
        "results": results,
        "preds": preds,
        "truth": truth,
        "times": times,
        "summary": summary,
        "data_dir": str(data_dir),
        "model": str(model_path),
    }


def _fmt(x, nd: int = 2, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.{nd}f}"


def print_table(r: dict) -> None:
    print("\n" + "=" * 78)
    print("depth_pose demo — summary")
    print("=" * 78)
    m = r["metrics"]
    print(f"data: {r['data_dir']}\nmodel: {r['model']}")
    print(
        f"synthetic validation: ALE {_fmt(m.get('val/ale'))} m "
        f"(mean-depth predictor {_fmt(m.get('val/ale_trivial'))} m), "
        f"rel {_fmt(m.get('val/rel'), pct=True)}"
    )
    rows = []
    for key, res in r["results"].items():
        if key.startswith("kitti/"):
            methods = res.get("methods", {})
            for meth, label in (
                ("model", key.split("/", 1)[1]),
                ("box_height", "box-height 1.71 m"),
                ("shoulder_hip", "shoulder-hip 0.48 m"),
            ):
                mm = methods.get(meth, {})
                if meth != "model" and any(row[0] == label for row in rows):
                    continue
                rows.append((label, mm.get("n"), mm.get("ale_m"), mm.get("alp_1m"), mm.get("cov_1sigma")))
    if rows:
        print("\nKITTI dev pedestrians (real, 178 people; fit nothing to it):")
        print(f"  {'method':24s} {'n':>4s} {'ALE m':>7s} {'ALP<1m':>7s} {'in 1σ':>6s}")
        for label, n, ale, alp, cov in rows:
            print(
                f"  {label:24s} {n if n is not None else '-':>4} {_fmt(ale):>7s} {_fmt(alp, pct=True):>7s} "
                f"{_fmt(cov, pct=True):>6s}"
            )
    for key, res in r["results"].items():
        if key.startswith("invariance/"):
            o = res.get("overall_non_standing", {})
            print(
                f"\npose invariance ({key.split('/', 1)[1]}): median |pred/true-1| over non-standing poses: "
                f"model {_fmt(o.get('model_median'), pct=True)} "
                f"vs box-height {_fmt(o.get('box_height_median'), pct=True)}"
                f"; 1σ coverage {_fmt(res.get('coverage_1sigma'), pct=True)}"
            )
    print("\nexample image (rendered, known depths):")
    truth = sorted(p["z_m"] for p in r["truth"])
    got = sorted((p["z_m"], p["sigma_m"]) for p in r["preds"])
    print(f"  true z: {', '.join(f'{z:.2f}' for z in truth)} m")
    print(f"  pred z: {', '.join(f'{z:.2f}±{s:.2f}' for z, s in got)} m")
    print("\ntimes: " + ", ".join(f"{k} {v:.0f} s" for k, v in r["times"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=300_000, help="synthetic rows to generate")
    ap.add_argument("--epochs", type=int, default=4, help="training epochs")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "demo")
    ap.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="home of the synthetic set (default: the repository's data/)",
    )
    args = ap.parse_args(argv)
    if args.samples < 1000 or args.epochs < 1:
        ap.error("--samples must be >= 1000 and --epochs >= 1")
    data_root = args.data_root.resolve() if args.data_root is not None else None
    r = run(args.samples, args.epochs, args.out.resolve(), data_root)
    print_table(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
