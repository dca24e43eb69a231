"""What a model knows: the ranges of its training set, and the status of each prediction against them.

Every prediction (:class:`depth_pose.predictor.DepthPrediction`, ``dp-eval`` rows, ``dp-predict`` records)
carries one status, the first that applies in this order:

* ``no_joints``: no joint with finite coordinates. ``z_m`` and ``sigma_m`` are NaN; metrics leave the person
  out (they count in ``n_total``, not in ``n``).
* ``too_few_joints``: fewer than the normaliser's ``min_visible`` (5) confident joints. The model uses every
  finite joint (the detector's guesses, as in training); with a single finite joint the depth is the
  training mean and sigma = z.
* ``degenerate``: the keypoint box of the joints the model uses is smaller than :data:`DEGENERATE_PX` on its
  larger side (all joints at one pixel, a 2-px blob), or the network's output is not finite.
* ``out_of_range``: the predicted depth, the person's size in pixels (larger side of that keypoint box) or
  the camera's horizontal field of view lies outside the model's training ranges widened by
  :data:`RANGE_MARGIN` (x/÷ 1.25). The field of view is read from ``K`` as ``2 atan(cx / fx)`` (principal
  point at the image centre, as in training); when ``cx <= 0`` the focal length in pixels is checked instead.
  Only the lower end of the person size is checked: a large person is a near one, caught by the depth range.
* ``ok``: none of the above.

Sigma of every non-``ok`` person is widened (:data:`SIGMA_WIDENING`: ``max(factor * sigma, min_rel * z)``):
x3 and at least 30% of z (``too_few_joints``, ``out_of_range``; the factor the predictor always used for a
guessed skeleton), x3 and at least z (``degenerate``).

Training ranges: ``metadata["training_ranges"]`` of an exported model (the model's JSON), the 0.5% and 99.5%
quantiles (:data:`QUANTILES`) of its training set's depth, person size, focal length and field of view,
written by ``make model`` (:func:`compute_ranges`). Models without them (older exports, Lightning ``.ckpt``)
use :data:`DEFAULT_RANGES` (the default camera config: depth 1-60 m, person 16 px and up, hfov 30-110
degrees). Add them to an exported model afterwards (its JSON's sha256 covers the weights file only)::

    python -m depth_pose.ranges MODEL.safetensors DATASET_DIR [--max-rows N]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from depth_pose.errors import EXIT_USAGE, InputError
from depth_pose.features import visibility
from depth_pose.fileio import atomic_write_text
from depth_pose.geometry import hfov_from_intrinsics

STATUSES = ("ok", "out_of_range", "degenerate", "too_few_joints", "no_joints")  # codes 0..4
OK, OUT_OF_RANGE, DEGENERATE, TOO_FEW_JOINTS, NO_JOINTS = range(len(STATUSES))
DEGENERATE_PX = 4.0  # keypoint box (larger side, px) below this: no usable shape
RANGE_MARGIN = 1.25  # a value is out of range below lo / margin or above hi * margin
QUANTILES = (0.005, 0.995)  # the training ranges: these quantiles of the training set
# status -> (factor, min_rel): sigma = max(factor * sigma, min_rel * z)
SIGMA_WIDENING: dict[int, tuple[float, float]] = {
    TOO_FEW_JOINTS: (3.0, 0.3),
    DEGENERATE: (3.0, 1.0),
    OUT_OF_RANGE: (3.0, 0.3),
}
RANGE_KEYS = ("z_m", "person_px", "focal_px", "hfov_deg")


@dataclass(frozen=True)
class TrainingRanges:
    """``(lo, hi)`` per quantity (``None`` = open end): depth ``z_m`` (m), ``person_px`` (larger side of the
    keypoint box, px), ``focal_px`` (fx, px), ``hfov_deg``; ``source`` says where they come from."""

    z_m: tuple[float | None, float | None]
    person_px: tuple[float | None, float | None]
    focal_px: tuple[float | None, float | None]
    hfov_deg: tuple[float | None, float | None]
    source: str = "defaults"

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], where: str = "model") -> TrainingRanges:
        """The model's ``training_ranges`` entry, or :data:`DEFAULT_RANGES` when it has none; ValueError
        naming ``where`` for a malformed one."""
        entry = (metadata or {}).get("training_ranges")
        if entry is None:
            return DEFAULT_RANGES
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: training_ranges must be a mapping, got {type(entry).__name__}")
        vals = {}
        for key in RANGE_KEYS:
            v = entry.get(key, getattr(DEFAULT_RANGES, key))
            ok = isinstance(v, list | tuple) and len(v) == 2
            ok = ok and all(
                x is None or (isinstance(x, int | float) and math.isfinite(x) and x > 0) for x in v
            )
            if not ok or (None not in v and v[0] > v[1]):
                raise ValueError(
                    f"{where}: training_ranges.{key} must be [lo, hi] (positive or null), got {v!r}"
                )
            vals[key] = (None if v[0] is None else float(v[0]), None if v[1] is None else float(v[1]))
        return cls(**vals, source=str(entry.get("data_id") or entry.get("source") or "model"))

    def to_dict(self) -> dict[str, Any]:
        return {key: list(getattr(self, key)) for key in RANGE_KEYS} | {"source": self.source}


DEFAULT_RANGES = TrainingRanges(
    z_m=(1.0, 60.0), person_px=(16.0, None), focal_px=(None, None), hfov_deg=(30.0, 110.0)
)


def person_box_px(kp_xyc: Tensor, threshold: float, min_visible: int) -> Tensor:
    """(B,) larger side (px) of the box of the joints the model uses: the confident ones, or every finite
    one when fewer than ``min_visible`` are confident (the rule of
    :meth:`depth_pose.features.Normaliser.observe`); NaN without a finite joint."""
    finite = torch.isfinite(kp_xyc[..., 0]) & torch.isfinite(kp_xyc[..., 1])
    mask = visibility(kp_xyc, threshold)
    few = (mask.sum(1) < min_visible) & (finite.sum(1) > mask.sum(1))
    mask = torch.where(few[:, None], finite, mask)
    xy = torch.nan_to_num(kp_xyc[..., :2], nan=0.0, posinf=0.0, neginf=0.0)
    big = torch.finfo(xy.dtype).max
    lo = torch.where(mask[..., None], xy, torch.full_like(xy, big)).amin(1)
    hi = torch.where(mask[..., None], xy, torch.full_like(xy, -big)).amax(1)
    side = (hi - lo).amax(1)
    return torch.where(mask.any(1), side, torch.full_like(side, float("nan")))


def hfov_of_K(K: Tensor) -> Tensor:
    """(B,) horizontal field of view (degrees) of ``K`` (B, 3, 3) for an image ``2 cx`` wide (principal point
    at the centre); NaN where ``cx <= 0``."""
    cx = K[..., 0, 2]
    h = hfov_from_intrinsics(K, 2.0 * cx.clamp_min(0.0))
    return torch.where(cx > 0, h, torch.full_like(h, float("nan")))


def _outside(x: Tensor, lo_hi: tuple[float | None, float | None], below_only: bool = False) -> Tensor:
    lo, hi = lo_hi
    out = torch.zeros_like(x, dtype=torch.bool)
    if lo is not None:
        out |= x < lo / RANGE_MARGIN
    if hi is not None and not below_only:
        out |= x > hi * RANGE_MARGIN
    return out


def status_codes(
    ranges: TrainingRanges,
    *,
    n_finite: Tensor,
    n_visible: Tensor,
    min_visible: int,
    box_px: Tensor,
    z: Tensor,
    K: Tensor,
    bad_output: Tensor,
) -> Tensor:
    """(B,) status codes (index into :data:`STATUSES`; the module docstring's order)."""
    hfov = hfov_of_K(K)
    camera = torch.where(
        torch.isfinite(hfov), _outside(hfov, ranges.hfov_deg), _outside(K[..., 0, 0], ranges.focal_px)
    )
    oor = _outside(z, ranges.z_m) | _outside(box_px, ranges.person_px, below_only=True) | camera
    code = torch.where(oor, OUT_OF_RANGE, OK)
    code = torch.where((box_px < DEGENERATE_PX) | bad_output, DEGENERATE, code)
    code = torch.where(n_visible < min_visible, TOO_FEW_JOINTS, code)
    return torch.where(n_finite == 0, NO_JOINTS, code)


def widen_sigma(sigma: Tensor, z: Tensor, code: Tensor) -> Tensor:
    """Sigma of the non-``ok`` people widened per :data:`SIGMA_WIDENING`."""
    out = sigma
    for status, (factor, min_rel) in SIGMA_WIDENING.items():
        out = torch.where(code == status, torch.maximum(sigma * factor, min_rel * z), out)
    return out


def status_names(code: Tensor | np.ndarray) -> np.ndarray:
    """Codes -> status strings (numpy str array)."""
    c = np.asarray(code.cpu() if torch.is_tensor(code) else code, np.int64)
    return np.asarray(STATUSES)[c] if c.size else np.zeros(0, dtype="<U14")


def status_counts(status: Any) -> dict[str, int]:
    """``{status: count}`` for every status, in :data:`STATUSES` order (zeros included)."""
    s = np.asarray(status).astype(str)
    return {name: int((s == name).sum()) for name in STATUSES}


def _quantiles(x: np.ndarray) -> list[float | None]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return [None, None]
    return [round(float(v), 4) for v in np.quantile(x, QUANTILES)]


def compute_ranges(
    dataset_dir: str | Path,
    *,
    threshold: float = 0.1,
    min_visible: int = 5,
    max_rows: int | None = 500_000,
    verify: bool = True,
) -> dict[str, Any]:
    """``training_ranges`` of a generated set (its first ``max_rows`` rows; shards are random samples): the
    :data:`QUANTILES` of ``z_m``, the person size (:func:`person_box_px` of the detector keypoints, with the
    model's visibility ``threshold`` and ``min_visible``), ``fx`` and the field of view as the predictor
    reads it from ``K`` (:func:`hfov_of_K`: ``2 atan(cx / fx)``)."""
    from depth_pose.schema import KP_COLS
    from depth_pose.shards import load_manifest, read_table

    dataset_dir = Path(dataset_dir)
    table = read_table(dataset_dir, columns=[*KP_COLS, "z_m", "fx", "cx"], max_rows=max_rows, verify=verify)
    col = {c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in table.column_names}
    kp = torch.from_numpy(np.stack([col[c] for c in KP_COLS], 1).astype(np.float32)).reshape(-1, 17, 3)
    box = person_box_px(kp, threshold, min_visible).numpy().astype(np.float64)
    K = torch.zeros(len(box), 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 0, 2] = torch.from_numpy(col["fx"]), torch.from_numpy(col["cx"])
    hfov = hfov_of_K(K).numpy()
    manifest = load_manifest(dataset_dir)
    return {
        "z_m": _quantiles(col["z_m"]),
        "person_px": _quantiles(box),
        "focal_px": _quantiles(col["fx"]),
        "hfov_deg": _quantiles(hfov),
        "quantiles": list(QUANTILES),
        "rows": int(table.num_rows),
        "data_id": manifest.get("dataset_id") or dataset_dir.name,
        "data_dir": str(dataset_dir),
        "person_px_is": "larger side of the keypoint box of the joints the model uses",
    }


def add_ranges(model: str | Path, dataset_dir: str | Path, max_rows: int | None = 500_000) -> dict[str, Any]:
    """Compute the ranges of ``dataset_dir`` and store them in the JSON beside ``model`` (.safetensors),
    atomically; returns them. The visibility threshold and ``min_visible`` come from the model's stored
    normalisation."""
    meta_path = Path(model).with_suffix(".json")
    if Path(model).suffix != ".safetensors" or not meta_path.is_file():
        raise FileNotFoundError(f"{model}: expected an exported .safetensors model with its .json beside it")
    meta = json.loads(meta_path.read_text())
    norm = meta.get("normalisation") or {}
    ranges = compute_ranges(
        dataset_dir,
        threshold=float(norm.get("threshold", 0.1)),
        min_visible=int(norm.get("min_visible", 5)),
        max_rows=max_rows,
    )
    TrainingRanges.from_metadata({"training_ranges": ranges}, str(meta_path))  # refuse what would not load
    meta["training_ranges"] = ranges
    atomic_write_text(meta_path, json.dumps(meta, indent=1, default=str) + "\n")
    return ranges


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m depth_pose.ranges",
        description="Store the training ranges of DATASET_DIR in MODEL's JSON (out-of-range flags).",
    )
    ap.add_argument("model", help="exported model (.safetensors, its .json beside it)")
    ap.add_argument("dataset", help="the generated set it was trained on (dp-generate folder)")
    ap.add_argument("--max-rows", type=int, default=500_000, help="rows read (default 500000)")
    args = ap.parse_args(argv)
    try:
        ranges = add_ranges(args.model, args.dataset, args.max_rows)
    except (OSError, ValueError, KeyError, InputError) as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    print(json.dumps(ranges, indent=1))


if __name__ == "__main__":
    main()
