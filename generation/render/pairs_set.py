"""Render pairs (exact + YOLO keypoints, JSONL parts of :mod:`generation.render.testset` or
:mod:`generation.render.campaign`) as a training set in the shard format, to train on renders directly
(issue 20), mixed with analytic samples through ``data.extra_dir``.

    python -m generation.render.pairs_set OUT_DIR PAIRS_DIR [PAIRS_DIR ...] [--exclude-mod 5]

Every person YOLO found becomes one row: YOLO's keypoints (an unreported joint: NaN, confidence 0), the
camera's intrinsics and image size, the true hip-midpoint depth, the camera's pitch/roll (the gravity input)
and the pose name as ``preset`` (``""`` for ordinary standing/walking and random-angle poses, so the
pose-invariance split counts them as the analytic rows are counted). Missed people carry no keypoints and are
left out (counted in the manifest). Parts whose index ``k % exclude_mod == 0`` are left out, so a held-out
share of the pairs (the detector model's evaluation parts, :mod:`generation.detector_model`) never trains.
Each person is its own ``pose_id`` (offset by :data:`POSE_ID_OFFSET`, away from the analytic ids). The
manifest lists the source part files with their sha256; the set is written atomically shard by shard.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from depth_pose import shards
from depth_pose.errors import InputError
from depth_pose.keypoints import NUM_KEYPOINTS
from depth_pose.schema import ALL_COLS, GT_KP_COLS, INTRINSIC_COLS, KP_COLS

POSE_ID_OFFSET = 1 << 40
ORDINARY_POSES = frozenset({"walk", "both_walk", "uniform", "normal", "hybrid", "standing", "stand", ""})
_PART = re.compile(r"part_(\d+)\.jsonl$")


def part_files(dirs: list[Path], exclude_mod: int = 0) -> list[Path]:
    """The part files (``parts/part_KKKKK.jsonl``) under ``dirs``, sorted, without those with
    ``k % exclude_mod == 0`` (``exclude_mod`` 0: keep all)."""
    out = []
    for d in dirs:
        root = d / "parts" if (d / "parts").is_dir() else d
        if not root.is_dir():
            raise InputError(f"pairs directory not found: '{d}'")
        for p in sorted(root.glob("part_*.jsonl")):
            k = int(_PART.search(p.name).group(1))
            if exclude_mod and k % exclude_mod == 0:
                continue
            out.append(p)
    if not out:
        raise InputError(f"no part_*.jsonl files under {', '.join(map(str, dirs))}")
    return out


def rows_from_lines(lines: list[dict]) -> dict[str, np.ndarray]:
    """Shard columns (every column of :data:`depth_pose.schema.ALL_COLS`) of the people YOLO found in
    ``lines``; unknown quantities are NaN / defaults."""
    found = [o for o in lines if not o.get("missed") and o.get("gt_z_m")]
    n = len(found)
    kp = np.array([[[np.nan if v is None else v for v in j] for j in o["keypoints_xyc"]] for o in found])
    kp = kp.reshape(n, NUM_KEYPOINTS, 3)
    seen = np.isfinite(kp[..., :2]).all(-1) & (np.nan_to_num(kp[..., 2]) > 0)
    kp[..., 2] = np.where(seen, kp[..., 2], 0.0)
    gt = np.array([o["gt_xy"] for o in found], dtype=np.float64).reshape(n, NUM_KEYPOINTS, 2)
    K = np.array([o["K"] for o in found], dtype=np.float64).reshape(n, 3, 3)
    wh = np.array([o["image_wh"] for o in found], dtype=np.float64).reshape(n, 2)
    inside = (gt >= 0).all(-1) & (gt[..., 0] < wh[:, None, 0]) & (gt[..., 1] < wh[:, None, 1])
    cols: dict[str, np.ndarray] = {c: np.full(n, np.nan, np.float32) for c in ALL_COLS}
    cols.update(
        {c: kp.reshape(n, -1)[:, i] for i, c in enumerate(KP_COLS)},
    )
    cols.update({c: gt.reshape(n, -1)[:, i] for i, c in enumerate(GT_KP_COLS)})
    intr = np.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 0, 1]], 1)
    cols.update({c: intr[:, i] for i, c in enumerate(INTRINSIC_COLS)})
    poses = np.array([str(o.get("pose") or "") for o in found], dtype=object)
    cols.update(
        sample_id=np.arange(n, dtype=np.int64),
        source="render",
        gt_vis_mask=(inside * (1 << np.arange(NUM_KEYPOINTS))).sum(1).astype(np.int32),
        img_w=wh[:, 0].astype(np.int32),
        img_h=wh[:, 1].astype(np.int32),
        z_m=np.array([o["gt_z_m"] for o in found], np.float32),
        body_id=np.full(n, -1, np.int32),
        tilt_deg=np.array([o.get("pitch_deg", np.nan) for o in found], np.float32),
        roll_deg=np.array([o.get("roll_deg", np.nan) for o in found], np.float32),
        person_px_height=np.array([o.get("person_px", np.nan) for o in found], np.float32),
        strategy="render",
        preset=np.where(np.isin(poses, list(ORDINARY_POSES)), "", poses).astype(str),
        walk=poses == "walk",
        both_walk=poses == "both_walk",
        **{t: np.zeros(n, bool) for t in ("hands_up", "spine_turn", "head_turn")},
        det_conf=np.array([o.get("det_conf", np.nan) for o in found], np.float32),
        oks=np.array([o.get("oks", np.nan) for o in found], np.float32),
    )
    return cols


def build(out: Path, pair_dirs: list[Path], exclude_mod: int = 5, shard_rows: int = 50_000) -> dict:
    """Write the pairs under ``pair_dirs`` as a shard dataset in ``out`` (refused when ``out`` holds one of
    the inputs or is not empty); returns the manifest."""
    out = Path(out)
    files = part_files([Path(d) for d in pair_dirs], exclude_mod)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"output directory '{out}' is not empty (never overwritten)")
    if any(out.resolve() in (f.resolve().parent, f.resolve().parent.parent) for f in files):
        raise InputError(f"output directory '{out}' holds the input parts")
    lines, missed = [], 0
    for f in files:
        for raw in f.read_text().splitlines():
            if raw.strip():
                o = json.loads(raw)
                missed += bool(o.get("missed"))
                lines.append(o)
    cols = rows_from_lines(lines)
    n = len(cols["z_m"])
    if n == 0:
        raise InputError("the pairs hold no person YOLO found")
    cols["pose_id"] = POSE_ID_OFFSET + np.arange(n, dtype=np.int64)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, a in enumerate(range(0, n, shard_rows)):
        part = {k: (v if isinstance(v, str) else v[a : a + shard_rows]) for k, v in cols.items()}
        entries.append(shards.write_shard(out, i, shards.to_table(part)))
    manifest = {
        "format": shards.FORMAT,
        "dataset_id": "render_pairs",
        "num_samples": n,
        "source": "render",
        "columns": list(ALL_COLS),
        "pairs": [{"file": str(f), "sha256": shards.sha256_file(f)} for f in files],
        "exclude_mod": exclude_mod,
        "missed_people": missed,
        "command": "python -m generation.render.pairs_set " + " ".join(sys.argv[1:]),
        "complete": True,
        "shards": entries,
    }
    shards.write_manifest(out, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("pairs", type=Path, nargs="+")
    ap.add_argument("--exclude-mod", type=int, default=5, help="leave out parts k %% M == 0 (0: none)")
    a = ap.parse_args(argv)
    try:
        m = build(a.out, a.pairs, a.exclude_mod)
    except (InputError, json.JSONDecodeError, KeyError) as e:
        print(f"pairs_set: {e}", file=sys.stderr)
        return 2
    print(f"{m['num_samples']} rows from {len(m['pairs'])} parts ({m['missed_people']} missed) -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
