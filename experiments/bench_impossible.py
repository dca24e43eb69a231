"""Does sigma know an impossible skeleton? (issue 20) For models, on real YOLO detections of rendered bodies
(the committed held-out set: full-body, every joint confident, >= 120 px), the skeletons no body produces of
``tests/test_sigma_knows.py`` (both ankles on one leg, a leg twice as long, the legs folded over the torso):
the median ratio of relative sigma (impossible / valid), the share of people whose sigma widened, the median
depth shift and the share of people whose shift lies within the impossible prediction's sigma.

    .venv/bin/python experiments/bench_impossible.py --models A.safetensors B.safetensors [--n 60]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_sigma_knows import folded, load_people, long_leg, one_leg  # noqa: E402

from depth_pose.predictor import DepthPredictor  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, nargs="+", required=True)
    ap.add_argument("--n", type=int, default=60)
    a = ap.parse_args(argv)
    kp, K, wh = load_people(a.n)
    print(f"{len(kp)} people\n")
    head = ("model", "skeleton", "median rel. sigma ratio", "sigma wider", "median depth shift")
    print("| " + " | ".join((*head, "shift within sigma")) + " |")
    print("|---|---|---|---|---|---|")
    for m in a.models:
        p = DepthPredictor.load(m)
        valid = p.predict(kp, K, image_wh=wh)
        for make in (one_leg, long_leg, folded):
            bad = p.predict(make(kp), K, image_wh=wh)
            ratio = (bad.sigma_m / bad.z_m) / (valid.sigma_m / valid.z_m)
            shift = bad.z_m / valid.z_m - 1
            cov = np.abs(bad.z_m - valid.z_m) <= bad.sigma_m
            print(
                f"| {m.parent.name} | {make.__name__} | {np.median(ratio):.2f} | {np.mean(ratio > 1):.0%} | "
                f"{np.median(shift):+.1%} | {cov.mean():.0%} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
