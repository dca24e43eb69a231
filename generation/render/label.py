"""Label rendered people with YOLO pose: batched detection, matching to the rendered person, OKS filter.

Each sample has its exact keypoints ``gt`` (17, 2) and the exact box of its projected mesh, both in the pixel
grid of the canvas the detector sees. Candidates are detections whose box centre falls inside the sample's
tile; the match is the candidate with the highest OKS against the exact keypoints (COCO OKS with the COCO
per-keypoint sigmas; object area = ``area_factor`` x mesh-box area, COCO-like since a person's segment fills
about half its box). A sample is accepted when its OKS >= ``oks_threshold``; otherwise it is counted as
``no_detection`` or ``low_oks`` (the counts go to the manifest).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from depth_pose.detect import Detections, PoseDetector
from generation.config import RENDER_TRUST_KEYS

# the render config's keys for the detector's weights (named when weights are refused)
RENDER_WEIGHT_KEYS = ("render.yolo_weights", *(f"render.{k}" for k in RENDER_TRUST_KEYS))

COCO_SIGMAS = np.array(
    [
        0.026,
        0.025,
        0.025,
        0.035,
        0.035,
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
    ]
)
STATUSES = ("accepted", "no_detection", "low_oks", "render_failed")


def oks(pred_xy: np.ndarray, gt_xy: np.ndarray, area: float, vis: np.ndarray | None = None) -> float:
    """COCO object keypoint similarity of one prediction (17, 2) against exact keypoints (17, 2)."""
    d2 = ((pred_xy - gt_xy) ** 2).sum(-1)
    e = d2 / (2.0 * max(area, 1e-6) * (2 * COCO_SIGMAS) ** 2)
    k = np.exp(-e)
    if vis is not None:
        if not vis.any():
            return 0.0
        k = k[vis]
    return float(np.nan_to_num(k).mean())


@dataclass
class Label:
    """YOLO's answer for one sample."""

    status: str
    keypoints: np.ndarray  # (17, 3) x, y, conf (NaN/0 when not accepted)
    det_conf: float
    oks: float


def match(
    dets: Detections,
    gt_xy: np.ndarray,
    box: np.ndarray,
    region: tuple[int, int, int, int],
    oks_threshold: float,
    area_factor: float = 0.5,
) -> Label:
    """Best detection for one sample (see module docstring). ``box``: exact mesh box xyxy; ``region``:
    the sample's tile on the canvas (x0, y0, x1, y1)."""
    empty = np.full((17, 3), np.nan, np.float32)
    empty[:, 2] = 0.0
    if len(dets) == 0:
        return Label("no_detection", empty, 0.0, 0.0)
    cx = 0.5 * (dets.boxes[:, 0] + dets.boxes[:, 2])
    cy = 0.5 * (dets.boxes[:, 1] + dets.boxes[:, 3])
    inside = (cx >= region[0]) & (cx < region[2]) & (cy >= region[1]) & (cy < region[3])
    cand = np.nonzero(inside)[0]
    if len(cand) == 0:
        return Label("no_detection", empty, 0.0, 0.0)
    area = area_factor * max(box[2] - box[0], 1.0) * max(box[3] - box[1], 1.0)
    scores = [oks(dets.keypoints[i, :, :2], gt_xy, area) for i in cand]
    best = int(cand[int(np.argmax(scores))])
    o = float(max(scores))
    kp = dets.keypoints[best].astype(np.float32)
    if o < oks_threshold:
        return Label("low_oks", kp, float(dets.scores[best]), o)
    return Label("accepted", kp, float(dets.scores[best]), o)


class Labeller:
    """YOLO pose on canvases, batched; :meth:`label` returns one :class:`Label` per sample key."""

    def __init__(
        self,
        weights=None,
        imgsz: int = 640,
        conf: float = 0.1,
        device: str | None = None,
        oks_threshold: float = 0.5,
        batch: int = 8,
        area_factor: float = 0.5,
        weights_sha256: str | None = None,
        trust_weights: bool = False,
    ) -> None:
        self.detector = PoseDetector(
            weights, imgsz, conf, device, weights_sha256, trust_weights, keys=RENDER_WEIGHT_KEYS
        )
        self.oks_threshold, self.batch, self.area_factor = (
            float(oks_threshold),
            int(batch),
            float(area_factor),
        )
        self.counts: Counter = Counter()

    def label(self, canvases, gt: dict[int, np.ndarray], boxes: dict[int, np.ndarray]) -> dict[int, Label]:
        """Detect on every canvas (``downscale.Canvas``), match each tile's sample; counts statuses."""
        out: dict[int, Label] = {}
        for s in range(0, len(canvases), self.batch):
            chunk = canvases[s : s + self.batch]
            for c, dets in zip(chunk, self.detector([c.image for c in chunk])):
                for key, (x, y), n in zip(c.keys, c.offsets, c.sizes):
                    lab = match(
                        dets, gt[key], boxes[key], (x, y, x + n, y + n), self.oks_threshold, self.area_factor
                    )
                    out[key] = lab
                    self.counts[lab.status] += 1
        return out
