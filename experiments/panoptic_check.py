"""Depth under real camera pitch: models on the CMU Panoptic band set (3206 person-views of three
seated musicians, 31 real calibrated HD cameras pitched -53 ... +15 deg, exact keypoints, no detector noise),
read from the shared data folder (never copied into the repository; see
``../shared/data/real/panoptic_band/README.md``).

    .venv/bin/python experiments/panoptic_check.py [DATA.jsonl] [--models A.safetensors ...] [--out TABLE.md]

Every model is scored without the up direction (``no up``) and, if it takes gravity
(``DepthPredictor.uses_gravity``), with the up direction made from each record's ``camera_pitch_deg`` /
``camera_roll_deg`` (:func:`depth_pose.geometry.up_from_pitch_roll`). Per camera-pitch bin (-53...-38,
-38...-10, level -10...+10, +10...+20 = the one +15 deg camera) and overall: n, median |z/true - 1| and the
median bias of z/true - 1. Prints one Markdown table and writes it to ``--out``. A check, not a validation
split: fit nothing to this set (everyone is seated, keypoints are exact).

Conventions, checked here on the data: the set's ``camera_pitch_deg`` (negative = looking down) and
``camera_roll_deg`` (positive = image-right side of the camera raised, i.e. the camera turned
counter-clockwise seen from behind = the scene rotated clockwise in the image) are the project's. For every
camera of ``cameras.json`` the world up (0, -1, 0) (Panoptic world: +y down) taken into the camera,
``R @ (0, -1, 0)``, agrees with ``up_from_pitch_roll(pitch_deg, roll_deg)`` to 0.017 deg (the rounding of
the stored angles); with the roll's sign flipped it would be off by up to 10.9 deg (the largest roll is
-7.2 deg, camera hd_00_17). Record ``band1-hd_00_00-f000168-p0``: pitch -4.96, roll -1.93 give
(-0.0336, -0.9957, -0.0865); its camera's R @ (0, -1, 0) = (-0.0336, -0.9957, -0.0864). The script repeats
the check when ``cameras.json`` lies beside the data and prints the largest angle.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import depth_pose  # noqa: F401
from depth_pose.env import real_data_dir
from depth_pose.geometry import up_from_pitch_roll
from depth_pose.predictor import DepthPredictor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tilt import DEFAULT_MODELS  # noqa: E402
from model_bench import add_model_args, emit, model_names  # noqa: E402

DEFAULT_DATA = real_data_dir() / "panoptic_band" / "panoptic_band.jsonl"
# (name, lowest pitch, highest pitch): half-open [lo, hi), the last one closed.
PITCH_BINS = [
    ("−53…−38° (steep)", -90.0, -38.0),
    ("−38…−10°", -38.0, -10.0),
    ("level −10…+10°", -10.0, 10.0),
    ("+10…+20° (the +15° camera)", 10.0, 20.0),
]


def load(path: Path) -> dict[str, np.ndarray]:
    """Keypoints (N, 17, 3; NaN unseen), K (N, 3, 3), gt z, camera pitch / roll (deg) and camera ids."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]  # bare NaN: ok
    if not rows:
        raise SystemExit(f"{path}: no records")
    return {
        "keypoints": np.array([r["keypoints_xyc"] for r in rows], np.float64),
        "K": np.array([r["K"] for r in rows], np.float64),
        "z": np.array([r["gt_z_m"] for r in rows], np.float64),
        "pitch": np.array([r["camera_pitch_deg"] for r in rows], np.float64),
        "roll": np.array([r["camera_roll_deg"] for r in rows], np.float64),
        "camera_id": np.array([r["camera_id"] for r in rows]),
    }


def convention_check(data: dict[str, np.ndarray], cameras_json: Path) -> str | None:
    """Largest angle between each camera's ``R @ (0, -1, 0)`` and ``up_from_pitch_roll`` of its records."""
    if not cameras_json.is_file():
        return None
    cams = json.loads(cameras_json.read_text())["cameras"]
    worst = 0.0
    for cid in np.unique(data["camera_id"]):
        i = int(np.flatnonzero(data["camera_id"] == cid)[0])
        up_R = np.array(cams[str(cid)]["R"]) @ np.array([0.0, -1.0, 0.0])
        up_pr = up_from_pitch_roll(float(data["pitch"][i]), float(data["roll"][i])).numpy()
        worst = max(worst, float(np.degrees(np.arccos(np.clip(up_R @ up_pr, -1.0, 1.0)))))
    return f"convention check: R @ (0,-1,0) vs up_from_pitch_roll(pitch, roll), largest angle {worst:.3f}°"


def bins(pitch: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(name, selection) per pitch bin, then everything."""
    out = []
    for k, (name, lo, hi) in enumerate(PITCH_BINS):
        last = k == len(PITCH_BINS) - 1
        out.append((name, (pitch >= lo) & ((pitch <= hi) if last else (pitch < hi))))
    return out + [("all", np.ones_like(pitch, dtype=bool))]


def stats(z_pred: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Median |pred/true - 1| and median of pred/true - 1."""
    rel = z_pred / z - 1.0
    return (float(np.median(np.abs(rel))), float(np.median(rel))) if rel.size else (np.nan, np.nan)


def score(predictor: DepthPredictor, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Depths without up and (gravity models) with the records' up directions."""
    kp, K = data["keypoints"].astype(np.float32), data["K"].astype(np.float32)
    out = {"no_up": np.asarray(predictor.predict(kp, K).z_m, np.float64)}
    if predictor.uses_gravity:
        up = up_from_pitch_roll(data["pitch"], data["roll"]).numpy()
        out["up"] = np.asarray(predictor.predict(kp, K, up=up).z_m, np.float64)
    return out


def table(preds: dict[str, dict[str, np.ndarray]], data: dict[str, np.ndarray]) -> str:
    cols = [(name, v) for name, by in preds.items() for v in by]
    title = lambda name, v: f"{name} ({'no up' if v == 'no_up' else 'with up'})"  # noqa: E731
    lines = [
        "| camera pitch | n | "
        + " | ".join(f"{title(*c)}: median \\|z/true−1\\| / bias" for c in cols)
        + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for name, sel in bins(data["pitch"]):
        cells = []
        for model, v in cols:
            med, bias = stats(preds[model][v][sel], data["z"][sel])
            cells.append(f"{100 * med:.1f}% / {100 * bias:+.1f}%")
        lines.append(f"| {name} | {int(sel.sum())} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="panoptic_band.jsonl")
    add_model_args(ap, DEFAULT_MODELS, "model files")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        ap.error(f"data file not found: {args.data} (see ../shared/data/real/panoptic_band/README.md)")
    names = model_names(ap, args)
    data = load(args.data)
    check = convention_check(data, args.data.parent / "cameras.json")
    preds = {
        name: score(DepthPredictor.load(path, args.device), data) for name, path in zip(names, args.models)
    }
    text = (
        f"Panoptic band ({args.data.name}): {len(data['z'])} person-views, exact keypoints, seated people; "
        f"gt z {data['z'].min():.2f}–{data['z'].max():.2f} m.\n"
        + (f"{check}.\n" if check else "")
        + "\n"
        + table(preds, data)
    )
    return emit(text, args.out)


if __name__ == "__main__":
    main()
