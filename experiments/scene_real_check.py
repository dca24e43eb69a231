"""Scene self-calibration on real data, as ``dp-eval keypoints=... scene.group=...`` does it
(:func:`depth_pose.scene_commands.calibrate_groups`), read from the shared data folder (never copied into the
repository; see ``../shared/data/real/README.md`` and ``panoptic_band/README.md``).

    .venv/bin/python experiments/scene_real_check.py [--panoptic FILE] [--kitti FILE] [--model M]
        [--torso-lines] [--out TABLES.md]

* CMU Panoptic band (``panoptic_band.jsonl``): per camera (``camera_id``, tracks ``person_id``; three seated
  musicians, 36-60 exact person-views per camera over 20 frames), the estimated pitch / roll / height against
  the file's ``camera_pitch_deg`` / ``camera_roll_deg`` / ``camera_height_m`` (reported only, never input;
  its height is above the ankle plane, the calibration's above the floor the ankles are taken to stand
  ``ANKLE_HEIGHT_M`` above), and median |z/true - 1| single-frame vs scene-aware.
* KITTI dev pedestrians (``kitti_pedestrians_dev.jsonl``): grouped by image (the ``image`` field: what
  ``scene.group=image`` does; 1-7 people per image) and, beside it, every image of one KITTI calibration day
  (the same ``K``: one camera on one car, a fixed mount about 1.65 m above the road) pooled as one camera. The
  reported height there is the median of the people's ``gt_xyz_bottom_center_m`` y (their feet's drop below
  the camera, exact for a level camera). ALE and median |z/true - 1| single-frame vs scene-aware; two more
  rows give the mount instead (level, 1.65 m: KITTI's recording setup, not read from the data), as
  ``scene.pitch_deg=0 scene.height_m=1.65`` does.

Prints Markdown tables (and writes them to ``--out``). A check, not a validation split: fit nothing to it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

import depth_pose  # noqa: F401  (project env first)
from depth_pose.env import real_data_dir
from depth_pose.eval.io import read_keypoints_jsonl
from depth_pose.geometry import up_from_pitch_roll
from depth_pose.predictor import DepthPredictor
from depth_pose.scene_commands import (
    FAILED,
    calibrate_groups,
    image_size,
    reasons,
    scene_metrics,
    track_codes,
)

REAL = real_data_dir()
PANOPTIC = REAL / "panoptic_band" / "panoptic_band.jsonl"
KITTI = REAL / "kitti_pedestrians_dev.jsonl"
KITTI_HEIGHT_M = 1.65  # KITTI's colour cameras above the road (the recording setup), for the "assumed" rows
TRUTH = {"pitch_deg": "camera_pitch_deg", "roll_deg": "camera_roll_deg", "height_m": "camera_height_m"}


def model_depths(predictor: DepthPredictor, people) -> tuple[np.ndarray, np.ndarray]:
    """Single-frame depths (no up direction: nothing the scene does not know)."""
    pred = predictor.predict(people.keypoints.astype(np.float32), people.K.astype(np.float32))
    return np.asarray(pred.z_m, np.float64), np.asarray(pred.sigma_m, np.float64)


def repredictor(predictor: DepthPredictor, people):
    """The model again with a camera's estimated up direction (gravity models), as dp-eval does."""
    if not predictor.uses_gravity:
        return None

    def again(idx: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pred = predictor.predict(
            people.keypoints[idx].astype(np.float32),
            people.K[idx].astype(np.float32),
            up=np.broadcast_to(up, (len(idx), 3)).astype(np.float32),
        )
        return np.asarray(pred.z_m, np.float64), np.asarray(pred.sigma_m, np.float64)

    return again


def pct(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def pm(v, s, nd: int = 1) -> str:
    if v is None:
        return "–"
    return f"{v:.{nd}f}" + (f" ± {s:.{nd}f}" if s is not None else "")


def num(v, nd: int = 1, sign: bool = False) -> str:
    return "–" if v is None else (f"{v:+.{nd}f}" if sign else f"{v:.{nd}f}")


def status_counts(m: dict) -> str:
    return f"{m['n_calibrated']} calibrated, {m['n_up_only']} up only, {m['n_failed']} failed"


def why_counts(cams: list[dict]) -> str:
    """The reasons cameras were not calibrated, with counts."""
    return "\n".join(reasons(cams)) or "- none"


def seated_leans(f: dict) -> str:
    """Each musician's median 3D lean from the file's up (its pitch and roll: reported truth, never input) of
    the torso (mid-hip -> mid-shoulder) and the shins (knee -> ankle), from the exact 3D joints: the
    verticals a seated person could give the up direction, and how far from vertical they are."""
    by: dict[tuple[str, int], dict[str, list[float]]] = {}
    for seq, pid, xyz, pitch, roll in zip(
        f["sequence"], f["person_id"], f["keypoints_cam_m"], f["camera_pitch_deg"], f["camera_roll_deg"]
    ):
        u = up_from_pitch_roll(float(pitch), float(roll)).double().numpy()
        P = np.asarray(xyz, np.float64)
        segs = {"torso": [P[5] + P[6] - P[11] - P[12]], "shin": [P[15] - P[13], P[16] - P[14]]}
        rec = by.setdefault((str(seq), int(pid)), {"torso": [], "shin": []})
        for name, vs in segs.items():
            for v in vs:
                n = float(np.linalg.norm(v))
                if np.isfinite(n) and n > 0:
                    rec[name].append(math.degrees(math.acos(min(1.0, abs(float(v @ u)) / n))))
    cells = [
        f"{seq.split('_')[-1]} person {pid}: torso {np.median(r['torso']):.0f}°, shins "
        f"{np.median(r['shin']):.0f}°"
        for (seq, pid), r in sorted(by.items())
    ]
    return (
        "The musicians' verticals, median 3D lean from the file's up (exact joints, all cameras): "
        + "; ".join(cells)
        + ". Self-calibration wants upright people whose persistent lean is a few degrees "
        "(the scene suite's walkers: 1.5° per axis); three seated players' torsos and shins are not "
        "verticals to that precision."
    )


def panoptic(path: Path, predictor: DepthPredictor, torso_lines: bool) -> str:
    keep = ("camera_id", "person_id", "sequence", "keypoints_cam_m", "image_wh", *TRUTH.values())
    people = read_keypoints_jsonl(path, keep=keep)
    z, s = model_depths(predictor, people)
    f = people.fields
    res = calibrate_groups(
        people.keypoints, people.K, z, s, f["camera_id"], track_codes(f["person_id"]),
        [image_size(v) for v in f["image_wh"]], repredict=repredictor(predictor, people),
        torso_lines=torso_lines,
    )  # fmt: skip
    truth = {k: f[name] for k, name in TRUTH.items()}
    m = scene_metrics(res, z, people.gt_z, truth, "camera_id")
    mc = m["calibrated_cameras"]
    lines = [
        f"## Panoptic band: per camera ({len(people)} person-views, {m['n_cameras']} camera-sequences: "
        f"{status_counts(m)}{', torso lines allowed' if torso_lines else ''})",
        "",
        "| | n | median \\|z/true−1\\| single-frame | scene-aware | ALE single (m) | scene (m) |",
        "|---|---|---|---|---|---|",
        f"| all cameras | {m['single']['n']} | {pct(m['single']['median_rel'])} | "
        f"{pct(m['scene']['median_rel'])} | {num(m['single']['ale_m'], 3)} | {num(m['scene']['ale_m'], 3)} |",
        f"| calibrated cameras | {mc['n']} | {pct(mc['single']['median_rel'])} | "
        f"{pct(mc['scene']['median_rel'])} | {num(mc['single']['ale_m'], 3)} | "
        f"{num(mc['scene']['ale_m'], 3)} |",
        "",
        "Why cameras were not calibrated:",
        "",
        why_counts(m["cameras"]),
        "",
        seated_leans(f),
        "",
        "| camera | n | status | pitch est. (°) | file | roll est. (°) | file | height est. (m) | file | "
        "up / floor person-frames | median \\|z/true−1\\| single | scene |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(m["cameras"], key=lambda c: (c["truth"]["pitch_deg"], c["camera"])):
        t = c["truth"]
        lines.append(
            f"| {c['camera']} | {c['n']} | {c['status']} | {pm(c['pitch_deg'], c['sigma_pitch_deg'])} | "
            f"{num(t['pitch_deg'])} | {pm(c['roll_deg'], c['sigma_roll_deg'])} | {num(t['roll_deg'])} | "
            f"{pm(c['height_m'], c['sigma_height_m'], 2)} | {num(t['height_m'], 2)} | "
            f"{c['n_up_inliers']} / {c['n_height_inliers']} | {pct(c['median_rel_single'])} | "
            f"{pct(c['median_rel_scene'])} |"
        )
    return "\n".join(lines) + "\n"


def kitti(path: Path, predictor: DepthPredictor) -> str:
    people = read_keypoints_jsonl(path, keep=("image", "gt_xyz_bottom_center_m"))
    z, s = model_depths(predictor, people)
    f = people.fields
    feet_y = [v[1] if isinstance(v, list) and len(v) == 3 else None for v in f["gt_xyz_bottom_center_m"]]
    K_ids = {}
    day = [
        f"K{K_ids.setdefault(np.round(K, 4).tobytes(), len(K_ids)) + 1} (fx {K[0, 0]:.1f})" for K in people.K
    ]
    level = up_from_pitch_roll(0.0, 0.0).double().numpy()
    mount = "assumed mount (not from the data): "
    groupings = (  # (name, groups, given up, given height); the pooled one last (its cameras are listed)
        ("by image (`image`)", f["image"], None, None),
        (f"by image, {mount}level, {KITTI_HEIGHT_M} m", f["image"], level, KITTI_HEIGHT_M),
        (f"one camera per K, {mount}height {KITTI_HEIGHT_M} m, up estimated", day, None, KITTI_HEIGHT_M),
        ("one camera per K (pooled images)", day, None, None),
    )
    lines = [
        f"## KITTI dev pedestrians ({len(people)} people, {len(set(f['image']))} images)",
        "",
        "| grouping | cameras | n | ALE single (m) | ALE scene (m) | median \\|z/true−1\\| single | scene | "
        "depth sources ground / track / model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pooled = None
    for name, groups, up, height in groupings:
        res = calibrate_groups(
            people.keypoints, people.K, z, s, groups, None, None,
            up=up, height_m=height, repredict=repredictor(predictor, people),
        )  # fmt: skip
        m = scene_metrics(res, z, people.gt_z, {"height_m": feet_y}, name)
        src = m["depth_source"]
        lines.append(
            f"| {name} | {m['n_cameras']} ({status_counts(m)}) | {m['single']['n']} | "
            f"{num(m['single']['ale_m'], 3)} | {num(m['scene']['ale_m'], 3)} | "
            f"{pct(m['single']['median_rel'])} | {pct(m['scene']['median_rel'])} | "
            f"{src['ground']} / {src['track']} / {src['model']} |"
        )
        pooled = m
    lines += [
        "",
        'Pooled per K (one car camera each; height "reported" = median feet drop below the camera):',
        "",
        "| camera | n | status | pitch est. (°) | roll est. (°) | height est. (m) | feet drop (m) | "
        "up / floor person-frames | ALE single (m) | scene (m) | planarity |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in pooled["cameras"]:
        idx = [i for i, g in enumerate(day) if g == c["camera"]]
        single, scene = (float(np.mean(np.abs(np.asarray(zz)[idx] - people.gt_z[idx]))) for zz in (z, res.z))
        lines.append(
            f"| {c['camera']} | {c['n']} | {c['status']} | {pm(c['pitch_deg'], c['sigma_pitch_deg'], 2)} | "
            f"{pm(c['roll_deg'], c['sigma_roll_deg'], 2)} | {pm(c['height_m'], c['sigma_height_m'], 2)} | "
            f"{num(c['truth']['height_m'], 2)} | {c['n_up_inliers']} / {c['n_height_inliers']} | "
            f"{single:.3f} | {scene:.3f} | {c['planarity'] or c['why']} |"
        )
    if any(c["status"] == FAILED for c in pooled["cameras"]):
        lines += ["", why_counts(pooled["cameras"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--panoptic", type=Path, default=PANOPTIC, help="panoptic_band.jsonl")
    ap.add_argument("--kitti", type=Path, default=KITTI, help="kitti_pedestrians_dev.jsonl")
    ap.add_argument("--model", type=Path, default=None, help="depth model (default: the shipped one)")
    ap.add_argument("--torso-lines", action="store_true", help="panoptic: also hip->shoulder lines")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables to this file")
    args = ap.parse_args(argv)
    for p in (args.panoptic, args.kitti):
        if not p.is_file():
            ap.error(f"data file not found: {p} (see ../shared/data/real/README.md)")
    predictor = DepthPredictor.load(args.model)
    meta = getattr(predictor, "metadata", {}) or {}
    head = (
        f"# Scene self-calibration on real data\n\nmodel: `{args.model or 'shipped default'}` "
        f"({meta.get('recipe', '')}; gravity input: {predictor.uses_gravity})\n"
    )
    text = (
        head
        + "\n"
        + panoptic(args.panoptic, predictor, args.torso_lines)
        + "\n"
        + kitti(args.kitti, predictor)
    )
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
