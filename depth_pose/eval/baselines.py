"""Geometric baselines measured on the same people as the model (numpy in, numpy out, NaN = not applicable).

* **Box height** (pinhole on the keypoint extent): ``z = H_kp / (vertical extent of the visible keypoints in
  normalised image coordinates)``, i.e. ``fy * H_kp / pixel height`` for a zero-skew ``K``, with
  ``H_kp = KP_EXTENT_OVER_STATURE * stature`` and an assumed stature of 1.71 m. The factor 0.88 is the
  eyes-to-ankles height over the stature of standing adult Anny bodies (measured: 0.879 +- 0.004 over 53
  sampled adults in the rest pose), since keypoints stop at the eyes and ankles, not at the crown and soles.
  A box height needs the whole body: the baseline applies only when a head joint (nose, eyes, ears) and an
  ankle are among the visible joints (confidence >= 0.1); otherwise NaN.
* **Shoulder-hip** (MonoLoco's geometric baseline): ``z = 0.48 m / mean(shoulder-to-hip length)`` in
  normalised coordinates (= ``fy * 0.48 / pixel length``), over the body sides whose shoulder and hip both
  have confidence >= 0.3; NaN when neither side qualifies.
* **Floor**: the error that stature variation alone leaves to any single-image method, 0.046 x depth.

Pixels go through :func:`depth_pose.geometry.normalise_pixels` (no projection code here).
"""

from __future__ import annotations

import numpy as np
import torch

from depth_pose.geometry import normalise_pixels
from depth_pose.keypoints import L_ANKLE, L_HIP, L_SHOULDER, R_ANKLE, R_HIP, R_SHOULDER

ASSUMED_STATURE_M = 1.71
KP_EXTENT_OVER_STATURE = 0.88
SHOULDER_HIP_M = 0.48
SHOULDER_HIP_MIN_CONF = 0.3
FLOOR_REL = 0.046
HEAD = [0, 1, 2, 3, 4]  # nose, eyes, ears


def _normalised(keypoints_xyc: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 17, 3) pixels + conf and (N, 3, 3) or (3, 3) K -> (N, 17, 2) normalised image coordinates."""
    kp = torch.as_tensor(np.asarray(keypoints_xyc, np.float64)[..., :2])
    Kt = torch.as_tensor(np.asarray(K, np.float64))
    if Kt.ndim == 2:
        Kt = Kt.expand(kp.shape[0], 3, 3)
    return normalise_pixels(kp, Kt).numpy()


def _seen(keypoints_xyc: np.ndarray, min_conf: float) -> np.ndarray:
    kp = np.asarray(keypoints_xyc, np.float64)
    return (
        np.isfinite(kp[..., 0]) & np.isfinite(kp[..., 1]) & (np.nan_to_num(kp[..., 2], nan=0.0) >= min_conf)
    )


def box_height_depth(
    keypoints_xyc: np.ndarray,
    K: np.ndarray,
    stature_m: float = ASSUMED_STATURE_M,
    extent_over_stature: float = KP_EXTENT_OVER_STATURE,
    min_conf: float = 0.1,
    require_full_body: bool = True,
) -> np.ndarray:
    """Pinhole depth from the vertical extent of the keypoints with confidence >= ``min_conf`` (N,).

    NaN for people with fewer than two such keypoints, a zero extent or (``require_full_body``) no visible
    head joint or no visible ankle.
    """
    xy = _normalised(keypoints_xyc, K)
    seen = _seen(keypoints_xyc, min_conf)
    y = xy[..., 1]
    top = np.where(seen, y, np.inf).min(axis=-1)
    bottom = np.where(seen, y, -np.inf).max(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        extent = bottom - top
        z = stature_m * extent_over_stature / extent
    ok = (seen.sum(axis=-1) >= 2) & (extent > 1e-9)
    if require_full_body:
        ok &= seen[:, HEAD].any(axis=-1) & seen[:, [L_ANKLE, R_ANKLE]].any(axis=-1)
    return np.where(ok, z, np.nan)


def shoulder_hip_depth(
    keypoints_xyc: np.ndarray,
    K: np.ndarray,
    length_m: float = SHOULDER_HIP_M,
    min_conf: float = SHOULDER_HIP_MIN_CONF,
) -> np.ndarray:
    """MonoLoco's shoulder-hip pinhole depth (N,), NaN when no side has both joints at ``min_conf``."""
    xy = _normalised(keypoints_xyc, K)
    seen = _seen(keypoints_xyc, min_conf)
    lengths, counts = np.zeros(xy.shape[0]), np.zeros(xy.shape[0])
    for s, h in ((L_SHOULDER, L_HIP), (R_SHOULDER, R_HIP)):
        ok = seen[:, s] & seen[:, h]
        seg = np.linalg.norm(xy[:, s] - xy[:, h], axis=-1)
        lengths += np.where(ok, seg, 0.0)
        counts += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_len = lengths / counts
        z = length_m / mean_len
    return np.where((counts > 0) & (mean_len > 1e-9), z, np.nan)


def floor_depth(true_z_m: np.ndarray, rel: float = FLOOR_REL) -> np.ndarray:
    """A stand-in 'prediction' whose error is exactly the stature-variation floor: ``z * (1 + rel)``.

    Its ALE is ``rel * mean(z)`` and its ALP counts people with ``rel * z < threshold``.
    """
    return np.asarray(true_z_m, np.float64) * (1.0 + rel)
