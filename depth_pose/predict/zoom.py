"""Zoom into small people: crop a context region, upscale, run pose again, map the keypoints back.

A person whose box is shorter than ``min_box_px`` gets a crop centred on the box, ``context`` times the box
height tall (and as wide, at least ``context`` times the box width), clipped to the image. The crop is resized
by ``s`` so that the box becomes ``target_px`` tall (at most ``max_scale``). Pose runs on all crops of a frame
in one batch; the detection in a crop whose box best overlaps the original box (IoU >= ``min_iou``, in
full-image pixels) is mapped back with :func:`depth_pose.geometry.transform_pixels` (the inverse of
crop-then-resize: ``u = u' / s + x0``) and replaces the original only if its mean keypoint confidence is
higher. The depth model then sees full-image pixels with the full-image ``K``, so nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from depth_pose import geometry
from depth_pose.detect import Detections
from depth_pose.jsonvalues import option_number


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


@dataclass
class Crop:
    x0: int
    y0: int
    scale: float
    image: np.ndarray


def crop_for_box(
    image: np.ndarray, box: np.ndarray, context: float, target_px: float, max_scale: float
) -> Crop:
    """Context crop around ``box`` (xyxy), upscaled so the box is ``target_px`` tall (scale <=
    ``max_scale``)."""
    H, W = image.shape[:2]
    x1, y1, x2, y2 = box.tolist()
    bh, bw = max(y2 - y1, 1.0), max(x2 - x1, 1.0)
    side_h = context * bh
    side_w = max(context * bw, side_h)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0, y0 = int(max(0, np.floor(cx - side_w / 2))), int(max(0, np.floor(cy - side_h / 2)))
    xe, ye = int(min(W, np.ceil(cx + side_w / 2))), int(min(H, np.ceil(cy + side_h / 2)))
    s = float(np.clip(target_px / bh, 1.0, max_scale))
    sub = image[y0:ye, x0:xe]
    out_w, out_h = max(1, round(sub.shape[1] * s)), max(1, round(sub.shape[0] * s))
    # Exact scale per axis after rounding would differ by < 1/size; use the x scale for both (square pixels
    # kept).
    s = out_w / sub.shape[1]
    out_h = max(1, round(sub.shape[0] * s))
    up = cv2.resize(sub, (out_w, out_h), interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA)
    return Crop(x0, y0, s, up)


def crop_to_image(points_xy: np.ndarray, crop: Crop) -> np.ndarray:
    """Crop pixels (..., N, 2) -> full-image pixels: inverse of ``u' = s (u - x0)`` via
    geometry.transform_pixels."""
    px = torch.as_tensor(points_xy, dtype=torch.float64)
    return geometry.transform_pixels(px, 1.0 / crop.scale, (float(crop.x0), float(crop.y0))).numpy()


class Zoom:
    """Re-detect small people on upscaled crops; Hydra-instantiable (the detector is given at call time)."""

    def __init__(
        self,
        enabled: bool = True,
        min_box_px: float = 100.0,
        context: float = 1.6,
        target_px: float = 256.0,
        max_scale: float = 4.0,
        min_iou: float = 0.3,
        imgsz: int = 416,
    ) -> None:
        option_number(min_box_px, "zoom.min_box_px", 0.0)
        option_number(context, "zoom.context", 1.0)
        option_number(target_px, "zoom.target_px", 1.0)
        option_number(max_scale, "zoom.max_scale", 1.0)
        option_number(min_iou, "zoom.min_iou", 0.0, 1.0)
        option_number(imgsz, "zoom.imgsz", 32, 8192, integer=True)
        self.enabled, self.min_box_px, self.context = enabled, min_box_px, context
        self.target_px, self.max_scale, self.min_iou, self.imgsz = target_px, max_scale, min_iou, imgsz

    def __call__(self, image: np.ndarray, dets: Detections, detector) -> tuple[Detections, np.ndarray]:
        """Return (possibly improved detections, per-person ``zoomed`` flags). ``detector``: a
        PoseDetector."""
        n = len(dets)
        zoomed = np.zeros(n, bool)
        if not self.enabled or n == 0:
            return dets, zoomed
        heights = dets.boxes[:, 3] - dets.boxes[:, 1]
        small = np.flatnonzero(heights < self.min_box_px)
        if small.size == 0:
            return dets, zoomed
        crops = [
            crop_for_box(image, dets.boxes[i], self.context, self.target_px, self.max_scale) for i in small
        ]
        # A crop is about context * target_px (~410 px) tall: imgsz 416 sees it at ~1:1, with (416/640)^2 of
        # the pixels of a 640 pass (measured cost: docs/bench_predict.md).
        results = detector([c.image for c in crops], imgsz=self.imgsz)
        kp = dets.keypoints.copy()
        boxes = dets.boxes.copy()
        for i, crop, res in zip(small, crops, results):
            if len(res) == 0:
                continue
            b_full = crop_to_image(res.boxes.reshape(-1, 2, 2), crop).reshape(-1, 4)
            iou = box_iou(dets.boxes[i : i + 1], b_full)[0]
            j = int(np.argmax(iou))
            if iou[j] < self.min_iou:
                continue
            new_kp = res.keypoints[j].copy()
            new_kp[:, :2] = crop_to_image(new_kp[None, :, :2], crop)[0]
            if float(new_kp[:, 2].mean()) > float(kp[i, :, 2].mean()):
                kp[i], boxes[i], zoomed[i] = new_kp, b_full[j], True
        out = Detections(boxes.astype(np.float32), dets.scores, kp.astype(np.float32), dets.track_ids)
        return out, zoomed
