"""Evaluation benchmark: the shipped (or given) model on the KITTI dev pedestrians and on the pose-invariance
suite, each next to the baselines measured in the same run (ratios, so machine load does not matter).

    .venv/bin/python experiments/bench_eval.py [--ckpt PATH] [--real DIR] [--out DIR]

Prints two Markdown tables (KITTI dev: ALE / ALP / per band / calibration for model, box-height, shoulder-hip,
floor; invariance: per-pose medians and the non-standing ratio) and writes everything under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import depth_pose  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def compose(overrides: list[str]):
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return _compose("eval", overrides=overrides)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None, help="model file (default: the shipped model)")
    default_real = os.environ.get("DEPTH_POSE_REAL_DATA") or str(REPO.parent / "shared" / "data" / "real")
    ap.add_argument("--real", default=default_real, help="folder with kitti_pedestrians_dev.jsonl")
    ap.add_argument("--out", default=str(REPO / "outputs" / "bench_eval"), help="output folder")
    ap.add_argument("--skip-suite", action="store_true", help="KITTI only")
    args = ap.parse_args()

    from depth_pose.evaluate import evaluate

    out = Path(args.out)
    ck = [f"ckpt={args.ckpt}"] if args.ckpt else []
    kitti = Path(args.real) / "kitti_pedestrians_dev.jsonl"
    if kitti.is_file():
        t0 = time.perf_counter()
        m = evaluate(
            compose([f"keypoints={kitti}", f"out={out / 'kitti_dev' / 'pred.jsonl'}", "progress=false", *ck])
        )
        dt = time.perf_counter() - t0
        meths, same = m["methods"], m["model_on_baseline_people"]  # the tables were printed by evaluate()
        mo, sh = meths["model"], meths["shoulder_hip"]
        ms = same["shoulder_hip"]
        print(
            f"\nmodel ALE / shoulder-hip ALE on the same {sh['n']} people = {ms['ale_m'] / sh['ale_m']:.3f}; "
            f"model ALE (all {mo['n']}) / floor ALE = {mo['ale_m'] / meths['floor']['ale_m']:.3f}; "
            f"wall {dt:.1f} s"
        )
    else:
        print(f"(no {kitti}: KITTI table skipped)")
    if not args.skip_suite:
        t0 = time.perf_counter()
        r = evaluate(
            compose(
                ["suite=invariance", f"out={out / 'invariance' / 'samples.jsonl'}", "progress=false", *ck]
            )
        )
        dt = time.perf_counter() - t0
        o = r["overall_non_standing"]
        print(
            f"box-height median / model median over non-standing poses = {o['ratio']:.2f}; "
            f"1σ coverage {100 * r['coverage_1sigma']:.0f}%; wall {dt:.1f} s"
        )


if __name__ == "__main__":
    main()
