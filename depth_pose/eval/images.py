"""Image sets with ground truth: a folder of images + ``gt.json``, run through YOLO pose, one labelled person
matched per entry.

Two ``gt.json`` layouts are read:

* one image, top-level ``K`` and ``image``, ``people[]`` each with ``bbox_xyxy_px`` and ``gt_z_m``
  (``kitti_000000``);
* ``samples[]``, each with ``image``, ``K`` and ``person_depth_m_approx`` (or ``gt_z_m``), optionally a
  ``bbox_xyxy_px`` (``phone_3to6m``).

Matching: the detection with the highest IoU >= ``min_iou`` with the labelled box; without a box, the largest
detection. Ids are the image stem (``stem-<i>`` when an image lists several people).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from depth_pose.detect import Detections
from depth_pose.eval.io import EvalInputError, PeopleSet, float_array, parse_gt_depth
from depth_pose.geometry import check_intrinsics


@dataclass
class LabelledPerson:
    """One ground-truth entry of an image set."""

    id: str
    image: Path
    K: np.ndarray  # (3, 3)
    gt_z: float  # NaN when absent
    box: np.ndarray | None  # (4,) xyxy px, None = take the largest detection


def _gt_depth(entry: dict, where: str) -> float:
    """The entry's true depth (``gt_z_m``, else ``person_depth_m_approx``); NaN when it gives none (an
    unlabelled person); EvalInputError naming ``where`` and the key when a given one is not a depth."""
    key = "gt_z_m" if entry.get("gt_z_m") is not None else "person_depth_m_approx"
    try:
        return parse_gt_depth(entry.get(key), key)
    except ValueError as e:
        raise EvalInputError(f"{where}: {e}") from None


def _box(entry: dict, where: str) -> np.ndarray | None:
    """The entry's ``bbox_xyxy_px`` (4,), None when absent; EvalInputError naming ``where`` when malformed."""
    if entry.get("bbox_xyxy_px") is None:
        return None
    try:
        return float_array(entry["bbox_xyxy_px"], (4,), f"{where}: bbox_xyxy_px")
    except ValueError as e:
        raise EvalInputError(str(e)) from None


def _K(value, where: str) -> np.ndarray:
    try:
        K = float_array(value, (3, 3), f"{where}: K")
    except ValueError as e:
        raise EvalInputError(str(e)) from None
    why = check_intrinsics(torch.as_tensor(K))
    if why:
        raise EvalInputError(f"{where}: {why}")
    return K


def read_image_set(folder: str | Path) -> list[LabelledPerson]:
    """Parse ``folder/gt.json`` (either layout) into labelled people; EvalInputError when unusable."""
    folder = Path(folder)
    gt_path = folder / "gt.json"
    if not folder.is_dir():
        raise EvalInputError(f"image folder not found: '{folder}'")
    if not gt_path.is_file():
        raise EvalInputError(f"no gt.json in image folder '{folder}'")
    try:
        gt = json.loads(gt_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EvalInputError(f"cannot read '{gt_path}': {e}") from e
    if not isinstance(gt, dict):
        raise EvalInputError(f"'{gt_path}' must hold a JSON object")
    people: list[LabelledPerson] = []
    if "people" in gt:
        if "image" not in gt or "K" not in gt:
            raise EvalInputError(f"'{gt_path}': the 'people' layout needs top-level 'image' and 'K'")
        K = _K(gt["K"], str(gt_path))
        image = folder / str(gt["image"])
        entries = gt["people"] if isinstance(gt["people"], list) else []
        for i, p in enumerate(entries):
            pid = Path(image).stem if len(entries) == 1 else f"{Path(image).stem}-{i}"
            where = f"{gt_path} people[{i}]"
            if not isinstance(p, dict):
                raise EvalInputError(f"{where} must be a JSON object")
            people.append(LabelledPerson(pid, image, K, _gt_depth(p, where), _box(p, where)))
    elif "samples" in gt:
        for i, s in enumerate(gt["samples"] if isinstance(gt["samples"], list) else []):
            if not isinstance(s, dict) or "image" not in s:
                raise EvalInputError(f"'{gt_path}': samples[{i}] has no 'image'")
            where = f"{gt_path} samples[{i}]"
            K = _K(s.get("K", gt.get("K")), where)
            people.append(
                LabelledPerson(
                    Path(s["image"]).stem, folder / str(s["image"]), K, _gt_depth(s, where), _box(s, where)
                )
            )
    else:
        raise EvalInputError(f"'{gt_path}': expected a 'people' or a 'samples' list")
    if not people:
        raise EvalInputError(f"'{gt_path}' lists no people")
    return people


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box ``a`` (4,) with boxes ``b`` (M, 4) -> (M,)."""
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda bx: np.clip(bx[..., 2] - bx[..., 0], 0, None) * np.clip(bx[..., 3] - bx[..., 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_person(det: Detections, box: np.ndarray | None, min_iou: float = 0.3) -> tuple[int | None, float]:
    """Index of the detection for a labelled person (None when unmatched) and its IoU (NaN without a box)."""
    if len(det) == 0:
        return None, math.nan
    if box is None:
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        return int(np.argmax(areas)), math.nan
    iou = box_iou(np.asarray(box, np.float64), det.boxes.astype(np.float64))
    j = int(np.argmax(iou))
    return (j, float(iou[j])) if iou[j] >= min_iou else (None, float(iou[j]))


def detect_people(folder: str | Path, detector, min_iou: float = 0.3, progress: bool = True) -> PeopleSet:
    """Run ``detector`` (a :class:`depth_pose.detect.PoseDetector`) on every labelled image and match people.

    Each person carries its image's size (``PeopleSet.image_wh``). Unreadable images and unmatched people
    are listed in ``skipped`` (``image NAME``, why). A ``K`` whose field of view for its image's width is not
    sane (:func:`depth_pose.geometry.check_intrinsics`) is refused (:class:`EvalInputError`, naming
    ``gt.json`` and the image).
    """
    import cv2

    people = read_image_set(folder)
    ids, kps, Ks, gts, whs, extra, skipped = [], [], [], [], [], [], []
    cache: dict[Path, tuple[Detections, tuple[int, int]] | None] = {}
    for person in tqdm(people, desc="detect", disable=not progress):
        if person.image not in cache:
            img = cv2.imread(str(person.image), cv2.IMREAD_COLOR) if person.image.is_file() else None
            cache[person.image] = None if img is None else (detector(img)[0], (img.shape[1], img.shape[0]))
        where = f"image {person.image.name}"
        if cache[person.image] is None:
            skipped.append((where, "image missing or unreadable"))
            continue
        det, size = cache[person.image]
        why = check_intrinsics(torch.as_tensor(person.K), size)
        if why:
            gt_path = Path(folder) / "gt.json"
            raise EvalInputError(f"'{gt_path}' ({person.image.name}, {size[0]}x{size[1]} px): {why}")
        j, iou = match_person(det, person.box, min_iou)
        if j is None:
            why = (
                "no person detected"
                if len(det) == 0
                else f"no detection with IoU >= {min_iou} (best {iou:.2f})"
            )
            skipped.append((where, why))
            continue
        ids.append(person.id)
        kps.append(det.keypoints[j].astype(np.float64))
        Ks.append(person.K)
        gts.append(person.gt_z)
        whs.append(size)  # the real image size: where the frame is (models with the border input)
        extra.append(
            {
                "image": person.image.name,
                "det_score": float(det.scores[j]),
                "det_box_xyxy_px": [round(float(v), 2) for v in det.boxes[j]],
                **({"iou": round(iou, 4)} if math.isfinite(iou) else {}),
            }
        )
    return PeopleSet.from_lists(ids, kps, Ks, gts, skipped, extra, len(people), image_whs=whs)
