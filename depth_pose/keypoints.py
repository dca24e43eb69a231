"""The 17 COCO keypoints in Ultralytics YOLO pose order, their skeleton, and a person's pixel height."""

from __future__ import annotations

import numpy as np

COCO_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(COCO_NAMES)
INDEX = {name: i for i, name in enumerate(COCO_NAMES)}
L_SHOULDER, R_SHOULDER = INDEX["left_shoulder"], INDEX["right_shoulder"]
L_HIP, R_HIP = INDEX["left_hip"], INDEX["right_hip"]
L_ANKLE, R_ANKLE = INDEX["left_ankle"], INDEX["right_ankle"]
L_WRIST, R_WRIST = INDEX["left_wrist"], INDEX["right_wrist"]
NOSE = INDEX["nose"]

# Index of each keypoint's mirror image (left <-> right), for flip augmentation and swap noise.
FLIP_INDEX: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

# Limb segments for drawing (pairs of indices).
SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)


def pixel_height(keypoints_xyc: np.ndarray, min_conf: float = 0.1) -> np.ndarray:
    """(N,) vertical extent in pixels of each person's keypoints with confidence >= ``min_conf`` and finite
    coordinates (every finite keypoint when fewer than two are confident; NaN when fewer than two are finite):
    the size that decides how noisy a detector's keypoints are."""
    kp = np.asarray(keypoints_xyc, np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    finite = np.isfinite(kp[..., 0]) & np.isfinite(kp[..., 1])
    seen = finite & (np.nan_to_num(kp[..., 2], nan=0.0) >= min_conf)
    use = np.where((seen.sum(1) >= 2)[:, None], seen, finite)
    y = np.where(use, kp[..., 1], np.nan)
    out = np.full(kp.shape[0], np.nan)
    ok = use.sum(1) >= 2
    out[ok] = np.nanmax(y[ok], 1) - np.nanmin(y[ok], 1)
    return out
