"""Fit the rendered detector model (issue 20, ``noise=rendered``) on render pairs and write its asset.

    python experiments/fit_detector_model.py --pairs data/render_pairs_seed0/parts \
        --holdout-mod 5 --dest generation/data/detector_rendered

Parts ``part_K.jsonl`` with ``K % holdout_mod == 0`` are held out (split by part, never by row): the model
never sees them; their summary statistics per size band (median radial normalised error, miss rate, median
confidence, clamp rate) and a subsample of their conditions (exact keypoints, image size, detector scale) go
into the asset, so ``tests/test_detector_model.py`` can check that samples reproduce them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generation import detector_fit as dfit  # noqa: E402
from generation import detector_model as dm  # noqa: E402

N_CONDITIONS = 600  # held-out people stored as test conditions


def part_index(path: Path) -> int:
    """The K of ``part_K.jsonl``."""
    m = re.search(r"part_(\d+)\.jsonl$", path.name)
    if not m:
        raise SystemExit(f"not a part file: {path}")
    return int(m.group(1))


def read_parts(paths: list[Path]) -> list[dict]:
    """All lines of the part files."""
    return [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.strip()]


def heldout_block(lines: list[dict], seed: int) -> tuple[dict[str, np.ndarray], list[dict]]:
    """A subsample of detected held-out people (conditions + YOLO's keypoints) and its band statistics."""
    src = dfit.parse_lines(lines)
    keep = np.nonzero(~src["missed"])[0]
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(keep, min(N_CONDITIONS, len(keep)), replace=False))
    gt, img = torch.from_numpy(src["gt"][keep]), torch.from_numpy(src["img"][keep])
    scale, det = torch.from_numpy(src["scale"][keep]), torch.from_numpy(src["det"][keep])
    arrays = {
        "heldout_gt": gt.float().numpy(),
        "heldout_img": img.float().numpy(),
        "heldout_scale": scale.float().numpy(),
    }
    return arrays, dfit.band_stats(gt, det, img, scale)


def git_commit() -> str:
    """``git rev-parse HEAD`` of the checkout (``unknown`` outside git)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", type=Path, required=True, help="folders of part_*.jsonl")
    ap.add_argument("--holdout-mod", type=int, default=5, help="hold out parts with index %% this == 0")
    ap.add_argument("--dest", type=Path, default=REPO / "generation/data/detector_rendered")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a noise config (conf/noise/rendered.yaml) to point at the new sha256",
    )
    args = ap.parse_args(argv)
    parts = sorted(p for d in args.pairs for p in d.glob("part_*.jsonl"))
    if not parts:
        raise SystemExit(f"no part_*.jsonl in {args.pairs}")
    train = [p for p in parts if part_index(p) % args.holdout_mod]
    held = [p for p in parts if not part_index(p) % args.holdout_mod]
    train_lines, held_lines = read_parts(train), read_parts(held)
    model = dfit.fit(train_lines, seed=args.seed)
    block, held_stats = heldout_block(held_lines, args.seed)
    model.update(block)
    all_held = dfit.parse_lines(held_lines)
    t = {k: torch.from_numpy(all_held[k]) for k in ("gt", "det", "img", "scale")}
    provenance = {
        "what": "rendered detector model (generation/detector_model.py): YOLO11n-pose on Blender renders",
        "source": {
            "train_parts": [str(p.relative_to(REPO) if p.is_relative_to(REPO) else p) for p in train],
            "train_parts_sha256": dfit.joint_sha256(train),
            "heldout_parts": [p.name for p in held],
            "heldout_parts_sha256": dfit.joint_sha256(held),
            "holdout_rule": f"part index % {args.holdout_mod} == 0",
        },
        "n_people_train": len(train_lines),
        "n_people_train_detected": int(model["bank"].shape[0]),
        "n_people_heldout": len(held_lines),
        "command": "python experiments/fit_detector_model.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size_bands_detector_px": dfit.band_names(),
        "person_miss_rate_per_band": [round(float(v), 4) for v in model["person_miss"]],
        "heldout_stats_all": dfit.band_stats(t["gt"], t["det"], t["img"], t["scale"]),
        "heldout_stats_conditions": held_stats,
        "flip_rate_per_view": [round(float(v), 4) for v in model["p_flip"]],
    }
    digest = dfit.save_asset(model, args.dest, provenance)
    size = (args.dest / dm.TENSOR_FILE).stat().st_size
    print(f"wrote {args.dest / dm.TENSOR_FILE} ({size / 1e3:.0f} kB) sha256 {digest}")
    if args.config:
        text = re.sub(r"(?m)^sha256: [0-9a-fA-F]+", f"sha256: {digest}", args.config.read_text())
        args.config.write_text(text)
        print(f"updated sha256 in {args.config}")
    print(f"bank rows {model['bank'].shape[0]}; held-out stats per band: {held_stats}")


if __name__ == "__main__":
    main()
