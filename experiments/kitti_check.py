"""Convention check of a depth model on the 178 real KITTI dev pedestrians (read-only shared data).

Prints ALE, distance-band errors, relative error, bias and calibration of sigma for the model and for the
shoulder-hip pinhole rule (0.48 m), and how much of the error the people's statures (KITTI box heights)
explain. Fit nothing to this set: it is a check, not a validation split.

    python experiments/kitti_check.py [--model PATH] [--data ../shared/data/real/kitti_pedestrians_dev.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import depth_pose  # noqa: F401
from depth_pose.env import real_data_dir
from depth_pose.eval.baselines import shoulder_hip_depth
from depth_pose.eval.io import read_keypoints_jsonl
from depth_pose.eval.metrics import PERSON_PX_BANDS, band_name, depth_metrics, per_band
from depth_pose.keypoints import pixel_height
from depth_pose.predictor import DepthPredictor

DEFAULT_DATA = real_data_dir() / "kitti_pedestrians_dev.jsonl"


def box_heights(path: Path) -> np.ndarray | None:
    """KITTI 3D box heights (m) when every line has ``gt_box_hwl_m``, else None."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not all("gt_box_hwl_m" in r for r in rows):
        return None
    return np.array([r["gt_box_hwl_m"][0] for r in rows], dtype=np.float64)


def report(name: str, zh: np.ndarray, z: np.ndarray, sigma: np.ndarray | None = None) -> dict:
    """The project's metrics (:mod:`depth_pose.eval.metrics`) of one method, printed as a table row."""
    out = depth_metrics(zh, z, sigma)
    out["bands"] = per_band(zh, z, sigma)
    bands = " ".join(
        f"{v['ale_m']:6.2f}" if v["ale_m"] is not None else f"{'-':>6}" for v in out["bands"].values()
    )
    print(
        f"{name:<34}{out['n']:>4}{out['ale_m']:7.3f}  {bands}  {100 * out['rel_err']:6.1f}% "
        f"{100 * out['bias_rel']:+6.1f}% {out['delta_1.25']:6.3f}"
        + (f"  {out['cov_1sigma']:.2f}" if sigma is not None else "")
    )
    return out


def stature_analysis(zh: np.ndarray, z: np.ndarray, box_h: np.ndarray) -> dict:
    """How much of the error a stature-blind method cannot avoid on THIS set, using KITTI's 3D box heights as
    the people's statures (nothing is fitted: the set's own mean is only used to centre the comparison).

    A method that reads every keypoint perfectly but assumes one stature ``h0`` for everyone predicts
    ``z * h0 / h``: its relative error is ``s = h0 / h - 1``. Reported: that oracle's ALE (the set's stature
    floor; box heights include label noise and a few sitting people, so it overstates the true floor), the
    correlation of the model's relative error ``r`` with ``s``, and the ALE left after removing ``s``.
    """
    r = zh / z - 1
    h0 = float(box_h.mean())
    s = h0 / box_h - 1
    upright = (box_h >= 1.5) & (box_h <= 2.0)
    out = {
        "box_h_mean_m": h0,
        "box_h_std_m": float(box_h.std()),
        "box_h_rel_std": float(box_h.std() / h0),
        "oracle_ale_m": float(np.abs(s * z).mean()),
        "oracle_ale_upright_m": float(np.abs(s * z)[upright].mean()),
        "n_upright": int(upright.sum()),
        "corr_r_s": float(np.corrcoef(r, s)[0, 1]),
        "model_ale_m": float(np.abs(zh - z).mean()),
        "model_ale_upright_m": float(np.abs(zh - z)[upright].mean()),
        "ale_without_stature_term_m": float(np.abs((r - s) * z).mean()),
    }
    print(
        f"\nstature (KITTI box heights {h0:.2f} +- {out['box_h_std_m']:.3f} m, "
        f"{100 * out['box_h_rel_std']:.1f}%): "
        f"a perfect stature-blind method would get ALE {out['oracle_ale_m']:.2f} m "
        f"({out['oracle_ale_upright_m']:.2f} m on the {out['n_upright']} with 1.5-2.0 m boxes; "
        "the model there: "
        f"{out['model_ale_upright_m']:.2f} m); corr(model rel. error, stature term) = {out['corr_r_s']:.2f}; "
        f"model ALE without the stature term {out['ale_without_stature_term_m']:.2f} m"
    )
    return out


def size_analysis(zh: np.ndarray, z: np.ndarray, kp: np.ndarray, box_h: np.ndarray | None) -> list[dict]:
    """Error and signed bias by the person's pixel height (extent of the confident keypoints), raw and with
    the stature term removed (as in :func:`stature_analysis`): a bias that changes with size is a
    keypoint-domain gap (the synthetic test split shows none: within +-1% in every size bin); a uniform one is
    a stature prior."""
    h_px = pixel_height(kp)
    r = zh / z - 1
    r_s = (zh / z) * (box_h / box_h.mean()) - 1 if box_h is not None else None
    rows = []
    head = f"{'person height (px)':<20}{'n':>4}{'ALE':>7}{'|rel|':>7}{'bias':>7}"
    print("\n" + head + ("  bias w/o stature" if r_s is not None else ""))
    for lo, hi in PERSON_PX_BANDS:
        m = (h_px >= lo) & (h_px < hi)
        if not m.any():
            continue
        row = {
            "h_lo": lo,
            "h_hi": None if np.isinf(hi) else hi,
            "n": int(m.sum()),
            "ale": float(np.abs(zh - z)[m].mean()),
            "rel": float(np.abs(r[m]).mean()),
            "bias_median": float(np.median(r[m])),
        }
        if r_s is not None:
            row["bias_median_without_stature"] = float(np.median(r_s[m]))
        rows.append(row)
        print(
            f"{band_name(lo, hi):<20}{row['n']:>4}{row['ale']:7.2f}{100 * row['rel']:6.1f}%"
            f"{100 * row['bias_median']:+6.1f}%"
            + (f"  {100 * row['bias_median_without_stature']:+6.1f}%" if r_s is not None else "")
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model file (default: the shipped default model)")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    path = Path(args.data)
    if not path.exists():
        raise SystemExit(f"error: {path} not found (the shared real data); pass --data")
    people = read_keypoints_jsonl(path)
    kp, K, z = people.keypoints, people.K, people.gt_z
    pred = DepthPredictor.load(args.model)
    out = pred.predict(kp, K)
    print(
        f"{len(z)} KITTI pedestrians, depth {z.min():.1f}-{z.max():.1f} m; "
        f"model {pred.metadata.get('source')}"
    )
    print(
        f"{'method':<34}{'n':>4}{'ALE':>7}  {'0-10':>6} {'10-20':>6} {'20-30':>6} {'>30':>6}  "
        f"{'rel':>6} {'bias':>6} "
        f"{'d<1.25':>6}  in1sig"
    )
    sh = shoulder_hip_depth(kp, K)  # the baseline of depth_pose.eval (sides with both joints at conf >= 0.3)
    on = np.isfinite(sh)
    res = {
        "model": report("model", out.z_m, z, out.sigma_m),
        "shoulder_hip_0.48": report("shoulder-hip 0.48 m rule", sh, z),
        "model_on_shoulder_hip_people": report(
            "model on the rule's people", out.z_m[on], z[on], out.sigma_m[on]
        ),
    }
    h = box_heights(path)
    if h is not None:
        res["stature"] = stature_analysis(out.z_m.astype(np.float64), z.astype(np.float64), h)
    res["by_size"] = size_analysis(out.z_m.astype(np.float64), z.astype(np.float64), kp, h)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
