"""Convention check of a depth model on the 178 real KITTI dev pedestrians (read-only shared data).

Prints ALE, distance-band errors, relative error, bias and calibration of sigma for the model and for the
shoulder-hip pinhole rule (0.48 m). Fit nothing to this set: it is a check, not a validation split.

    python experiments/kitti_check.py [--model PATH] [--data ../shared/data/real/kitti_pedestrians_dev.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import depth_pose  # noqa: F401
from depth_pose._env import REPO_ROOT
from depth_pose.keypoints import L_HIP, L_SHOULDER, R_HIP, R_SHOULDER
from depth_pose.predictor import DepthPredictor

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "real" / "kitti_pedestrians_dev.jsonl"
BANDS = ((0, 10), (10, 20), (20, 30), (30, np.inf))


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kp = np.array([r["keypoints_xyc"] for r in rows], dtype=np.float32)
    K = np.array([r["K"] for r in rows], dtype=np.float32)
    z = np.array([r["gt_z_m"] for r in rows], dtype=np.float32)
    return kp, K, z


def shoulder_hip_rule(kp: np.ndarray, K: np.ndarray, length_m: float = 0.48) -> np.ndarray:
    """z = f * 0.48 m / (pixel distance mid-shoulder -> mid-hip): the classic baseline."""
    sh = 0.5 * (kp[:, L_SHOULDER, :2] + kp[:, R_SHOULDER, :2])
    hp = 0.5 * (kp[:, L_HIP, :2] + kp[:, R_HIP, :2])
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    return f * length_m / np.maximum(np.linalg.norm(sh - hp, axis=1), 1e-3)


def report(name: str, zh: np.ndarray, z: np.ndarray, sigma: np.ndarray | None = None) -> dict:
    err = np.abs(zh - z)
    out = {"ale": float(err.mean()), "rel": float((err / z).mean()), "bias_rel": float(((zh - z) / z).mean()),
           "delta125": float((np.maximum(zh / z, z / zh) < 1.25).mean()), "finite": int(np.isfinite(zh).sum())}
    for lo, hi in BANDS:
        m = (z >= lo) & (z < hi)
        out[f"ale_{lo}_{hi if np.isfinite(hi) else 'inf'}"] = float(err[m].mean()) if m.any() else float("nan")
    if sigma is not None:
        out["within_1sigma"] = float((err <= sigma).mean())  # Laplace: ~0.76 if calibrated
        out["median_sigma_rel"] = float(np.median(sigma / zh))
    bands = " ".join(f"{out[k]:6.2f}" for k in out if k.startswith("ale_"))
    print(f"{name:<28}{out['ale']:7.3f}  {bands}  {100 * out['rel']:6.1f}% {100 * out['bias_rel']:+6.1f}% "
          f"{out['delta125']:6.3f} {out['finite']:>4}" + (f"  {out['within_1sigma']:.2f}" if sigma is not None else ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model file (default: the shipped default model)")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    path = Path(args.data)
    if not path.exists():
        raise SystemExit(f"error: {path} not found (the shared real data); pass --data")
    kp, K, z = load(path)
    pred = DepthPredictor.load(args.model)
    out = pred.predict(kp, K)
    print(f"{len(z)} KITTI pedestrians, depth {z.min():.1f}-{z.max():.1f} m; model {pred.metadata.get('source')}")
    print(f"{'method':<28}{'ALE':>7}  {'0-10':>6} {'10-20':>6} {'20-30':>6} {'>30':>6}  {'rel':>6} {'bias':>6} "
          f"{'d<1.25':>6} {'fin':>4}  in1sig")
    res = {"model": report("model", out.z_m, z, out.sigma_m),
           "shoulder_hip_0.48": report("shoulder-hip 0.48 m rule", shoulder_hip_rule(kp, K), z)}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
