"""Column names of a synthetic sample (one row of a Parquet shard), shared by generation and training.

A row is one person seen by one camera. Notebooks open shards with ``pandas.read_parquet``.

* Detector keypoints ``{name}_x, {name}_y, {name}_c`` (pixels, confidence) in COCO/YOLO order: what a
  detector reports (analytic path: exact projection + detector-noise model; render path: YOLO pose).
  An unseen joint has confidence 0 (and may have NaN coordinates).
* Exact projections ``gt_{name}_x, gt_{name}_y`` and ``gt_vis_mask`` (bit j set = joint j inside the image
  and, when enabled, not self-occluded).
* Intrinsics ``fx, fy, cx, cy, skew`` and image size ``img_w, img_h``.
* Target ``z_m`` = camera z (m) of the midpoint of the two 3D hips; ``dist_m`` its Euclidean distance;
  ``hip_cam_{x,y,z}_m`` its camera position; ``ground_cam_{x,y,z}_m`` the floor point below it.
"""

from __future__ import annotations

from depth_pose.keypoints import COCO_NAMES

KP_COLS: list[str] = [f"{n}_{a}" for n in COCO_NAMES for a in ("x", "y", "c")]
GT_KP_COLS: list[str] = [f"gt_{n}_{a}" for n in COCO_NAMES for a in ("x", "y")]
INTRINSIC_COLS: list[str] = ["fx", "fy", "cx", "cy", "skew"]
IMAGE_COLS: list[str] = ["img_w", "img_h"]
TARGET_COL = "z_m"
TARGET_COLS: list[str] = [
    "z_m",
    "dist_m",
    "hip_cam_x_m",
    "hip_cam_y_m",
    "hip_cam_z_m",
    "ground_cam_x_m",
    "ground_cam_y_m",
    "ground_cam_z_m",
]
BODY_COLS: list[str] = ["body_id", "stature_m", "age_years", "gender", "weight", "muscle", "proportions"]
CAMERA_COLS: list[str] = ["cam_height_m", "tilt_deg", "roll_deg", "yaw_deg", "hfov_deg", "person_px_height"]
# Pose tags (bool) and the preset name (str, "" when no preset) so analyses can slice by pose.
TAG_COLS: list[str] = ["walk", "both_walk", "hands_up", "spine_turn", "head_turn"]
POSE_COLS: list[str] = ["pose_id", "strategy", "preset", *TAG_COLS, "hip_height_m"]
META_COLS: list[str] = ["sample_id", "source", "gt_vis_mask"]  # source: "analytic" | "render"
# Render path only (NaN / defaults elsewhere).
RENDER_COLS: list[str] = ["scale", "det_conf", "oks"]

ALL_COLS: list[str] = [
    *META_COLS,
    *KP_COLS,
    *GT_KP_COLS,
    *INTRINSIC_COLS,
    *IMAGE_COLS,
    *TARGET_COLS,
    *BODY_COLS,
    *CAMERA_COLS,
    *POSE_COLS,
    *RENDER_COLS,
]
