"""Camera intrinsics for prediction: calibration file, fx/fy/cx/cy, horizontal FOV, EXIF, or a default.

Precedence (first that applies wins, per image):

1. ``calib``: a calibration file, read once.
   * JSON or YAML with a top-level ``K`` (3x3 nested list, or 9 numbers row-major), or OpenCV's
     ``cameraMatrix`` / ``camera_matrix`` (nested list, 9 numbers, or ``{rows, cols, data}`` as written by
     ``cv2.FileStorage``);
   * per-image entries ``samples: [{image: NAME, K: ...}, ...]`` (the layout of
     ``shared/data/real/*/gt.json``), looked up by file name; a top-level ``K`` is the fallback for names not
     listed;
   * OpenCV ``FileStorage`` YAML/XML (``%YAML:1.0`` with ``!!opencv-matrix``) is read through
     ``cv2.FileStorage``.
   The calibration's image size is taken from ``width``/``height``, ``image_width``/``image_height`` or
   ``image_size``/``imageSize`` ([W, H]) in the file, else from the ``calib_size`` option, else it is assumed
   to be the size of the image being processed.
   Optional top-level ``up_cam`` (3 numbers) or ``pitch_deg`` (+ ``roll_deg``): the camera's up direction
   (:mod:`depth_pose.gravity`; conventions in :mod:`depth_pose.geometry`), same rules as ``scene.*``;
   :attr:`Calibration.up`.
2. ``fx`` (+ optional ``fy``, ``cx``, ``cy``; defaults fy = fx, principal point at the image centre), in
   pixels of ``calib_size`` when given, else of the processed image.
3. ``hfov_deg``: square pixels, principal point at the centre, focal = W / (2 tan(hfov/2)) for each image's
   own width.
4. ``exif`` (on by default): 35 mm-equivalent focal length of a JPEG/TIFF (``FocalLengthIn35mmFilm``),
   converted through the diagonal: ``f_px = f35 * hypot(W, H) / hypot(36, 24)``, principal point at the
   centre.
5. Default: ``default_hfov_deg`` (60 degrees, a typical phone/webcam main camera), with a warning printed
   once.

Every ``K`` is checked by :func:`depth_pose.geometry.check_intrinsics` (a transposed matrix, a bottom row
other than ``[0, 0, 1]``, a non-positive focal length), and, for the image it is used on, its horizontal field
of view must lie within :data:`depth_pose.geometry.SANE_HFOV_DEG` (1-175 degrees; ``hfov_deg`` and
``default_hfov_deg`` too): else :class:`IntrinsicsError`, one line naming the option or file.

Images of another size than the calibration (a folder mixing sizes, a downscaled video): ``K`` is scaled by
``s = W / W_calib`` (a corner-aligned resize, :func:`depth_pose.geometry.transform_intrinsics`); when the
aspect ratio differs too, the image is taken as a centred crop/pad of the scaled calibration image (principal
point shifted by half the height difference), with a warning. FOV and EXIF are per image, so they scale by
construction.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_pose import geometry
from depth_pose.errors import InputError
from depth_pose.gravity import up_from_mapping
from depth_pose.jsonvalues import option_number, shown

DIAG_35MM = math.hypot(36.0, 24.0)  # full-frame diagonal (mm), the reference of "35 mm equivalent"


class IntrinsicsError(InputError):
    """Unusable camera intrinsics input (names the file or option)."""


@dataclass
class Calibration:
    """What a calibration file holds: one ``K`` and/or per-image ``K``s, with the image size they belong
    to."""

    K: np.ndarray | None
    per_image: dict[str, np.ndarray]
    size: tuple[int, int] | None  # (W, H)
    path: str
    up: np.ndarray | None = None  # (3,) the camera's up direction (top-level up_cam / pitch_deg / roll_deg)


def _as_matrix(value: Any, where: str) -> np.ndarray:
    """A 3x3 float matrix from a nested list, 9 numbers, or an OpenCV ``{rows, cols, data}`` mapping."""
    if isinstance(value, dict):
        if "data" not in value:
            raise IntrinsicsError(f"{where}: matrix mapping without 'data'")
        value = value["data"]
    try:
        K = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise IntrinsicsError(f"{where}: not a numeric matrix ({e})") from e
    if K.size == 9:
        K = K.reshape(3, 3)
    why = (
        geometry.check_intrinsics(torch.as_tensor(K)) if K.shape == (3, 3) else f"expected 3x3, got {K.shape}"
    )
    if why:
        raise IntrinsicsError(f"{where}: {why}")
    return K


def _size_from(d: dict) -> tuple[int, int] | None:
    for kw, kh in (("width", "height"), ("image_width", "image_height"), ("imageWidth", "imageHeight")):
        if kw in d and kh in d:
            return int(d[kw]), int(d[kh])
    for k in ("image_size", "imageSize"):
        if k in d:
            v = np.asarray(d[k].get("data", d[k]) if isinstance(d[k], dict) else d[k]).ravel()
            if v.size == 2:
                return int(v[0]), int(v[1])
    return None


_K_KEYS = ("K", "cameraMatrix", "camera_matrix", "intrinsics")


def _read_opencv_storage(path: Path) -> Calibration:
    import cv2

    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    try:
        if not fs.isOpened():
            raise IntrinsicsError(f"calibration file '{path}': OpenCV FileStorage cannot open it")
        K = None
        for key in _K_KEYS:
            node = fs.getNode(key)
            if not node.empty():
                K = _as_matrix(node.mat(), f"calibration file '{path}' ({key})")
                break
        if K is None:
            raise IntrinsicsError(f"calibration file '{path}': no {'/'.join(_K_KEYS)} entry")
        size = None
        w, h = fs.getNode("image_width"), fs.getNode("image_height")
        if not w.empty() and not h.empty():
            size = (int(w.real()), int(h.real()))
        return Calibration(K, {}, size, str(path), _calib_up(_opencv_up_fields(fs), path))
    finally:
        fs.release()


def _opencv_up_fields(fs) -> dict:
    """``pitch_deg`` / ``roll_deg`` (reals) and ``up_cam`` (a sequence or a matrix) of a FileStorage file."""
    out: dict = {}
    for key in ("pitch_deg", "roll_deg", "up_cam"):
        node = fs.getNode(key)
        if node.empty() or node.isNone():
            continue
        if key != "up_cam":
            out[key] = node.real() if node.isReal() or node.isInt() else node.string()
        elif node.isSeq():
            out[key] = [node.at(i).real() for i in range(node.size())]
        else:
            mat = node.mat()
            out[key] = mat.ravel().tolist() if mat is not None else node.string()
    return out


def _calib_up(fields: dict, path: Path) -> np.ndarray | None:
    try:
        return up_from_mapping(fields)
    except ValueError as e:
        raise IntrinsicsError(f"calibration file '{path}': {e}") from None


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file (JSON, YAML, or OpenCV FileStorage YAML/XML); see the module docstring."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise IntrinsicsError(f"calibration file '{path}' does not exist")
    text = path.read_text(errors="replace")
    if path.suffix.lower() == ".xml" or text.lstrip().startswith("%YAML") or "!!opencv-matrix" in text:
        return _read_opencv_storage(path)
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parse error is a bad file
        raise IntrinsicsError(f"calibration file '{path}': cannot parse ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
        raise IntrinsicsError(f"calibration file '{path}': expected a mapping at the top level")
    K = None
    for key in _K_KEYS:
        if key in data:
            K = _as_matrix(data[key], f"calibration file '{path}' ({key})")
            break
    per_image: dict[str, np.ndarray] = {}
    for i, s in enumerate(data.get("samples") or []):
        if isinstance(s, dict) and "image" in s and any(k in s for k in _K_KEYS):
            key = next(k for k in _K_KEYS if k in s)
            per_image[Path(str(s["image"])).name] = _as_matrix(
                s[key], f"calibration file '{path}' samples[{i}]"
            )
    if K is None and not per_image:
        raise IntrinsicsError(
            f"calibration file '{path}': no top-level {'/'.join(_K_KEYS)} and no samples[].K entries"
        )
    return Calibration(K, per_image, _size_from(data), str(path), _calib_up(data, path))


def scale_to_image(
    K: np.ndarray, ref_size: tuple[int, int] | None, size: tuple[int, int]
) -> tuple[np.ndarray, str]:
    """``K`` of a ``ref_size`` (W, H) image adapted to an image of ``size`` (resize, then centred
    crop/pad)."""
    if ref_size is None or tuple(ref_size) == tuple(size):
        return K, ""
    (W0, H0), (W, H) = ref_size, size
    s = W / W0
    dy = (H - s * H0) / 2.0
    note = f"scaled x{s:.4g} from {W0}x{H0}"
    if abs(dy) > 0.005 * H:
        note += f", aspect differs: assumed a centred crop (cy shifted {dy:+.1f} px)"
    else:
        dy = 0.0
    out = geometry.transform_intrinsics(torch.as_tensor(K, dtype=torch.float64), s, (0.0, dy))
    return out.numpy(), note


def exif_focal_35mm(path: str | Path) -> float | None:
    """``FocalLengthIn35mmFilm`` (mm) from an image's EXIF, or None (no EXIF, not an image PIL reads, or
    0)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            exif = im.getexif()
            f35 = exif.get_ifd(0x8769).get(0xA405) or exif.get(0xA405)
    except Exception:  # noqa: BLE001 - missing/odd EXIF simply means "no EXIF focal"
        return None
    try:
        f35 = float(f35)
    except (TypeError, ValueError):
        return None
    return f35 if f35 > 0 else None


def intrinsics_from_exif_35mm(f35_mm: float, width: int, height: int) -> np.ndarray:
    """``K`` from a 35 mm-equivalent focal length (diagonal convention), principal point at the centre."""
    f = f35_mm * math.hypot(width, height) / DIAG_35MM
    return geometry.intrinsics(f, f, width / 2.0, height / 2.0).double().numpy()


class IntrinsicsResolver:
    """Gives ``K`` (3x3 float64) and a description of where it came from, for each image (see module
    docstring)."""

    def __init__(
        self,
        calib: str | None = None,
        fx: float | None = None,
        fy: float | None = None,
        cx: float | None = None,
        cy: float | None = None,
        hfov_deg: float | None = None,
        exif: bool = True,
        default_hfov_deg: float = 60.0,
        calib_size: tuple[int, int] | list[int] | None = None,
    ) -> None:
        def number(v, key: str, lo: float, hi: float = math.inf, **kw) -> float | None:
            return (
                None
                if v is None
                else option_number(v, f"intrinsics.{key}", lo, hi, error=IntrinsicsError, **kw)
            )

        self.calibration = load_calibration(calib) if calib else None
        if fx is None and any(v is not None for v in (fy, cx, cy)):
            raise IntrinsicsError("intrinsics: fy/cx/cy given without fx")
        fx, fy = (number(v, k, 0.0, open_lo=True) for k, v in (("fx", fx), ("fy", fy)))
        cx, cy = (number(v, k, -math.inf) for k, v in (("cx", cx), ("cy", cy)))
        lo, hi = geometry.SANE_HFOV_DEG
        hfov_deg, default_hfov_deg = (
            number(v, k, lo, hi) for k, v in (("hfov_deg", hfov_deg), ("default_hfov_deg", default_hfov_deg))
        )
        if calib_size is not None and (
            isinstance(calib_size, str) or not isinstance(calib_size, Sequence) or len(calib_size) != 2
        ):
            raise IntrinsicsError(
                f"intrinsics.calib_size must be [width, height] in pixels, got {shown(calib_size)}"
            )
        self.fx, self.fy, self.cx, self.cy = fx, fy, cx, cy
        self.hfov_deg, self.exif, self.default_hfov_deg = hfov_deg, exif, default_hfov_deg
        self.calib_size = (
            tuple(int(number(v, "calib_size", 1, 1e6, integer=True)) for v in calib_size)
            if calib_size
            else None
        )
        self._warned: set[str] = set()

    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(msg, stacklevel=3)

    def __call__(
        self, width: int, height: int, image_path: str | Path | None = None
    ) -> tuple[np.ndarray, str]:
        """``(K, source)`` for an image ``width`` x ``height``; ``image_path`` is used for per-image calib and
        EXIF. :class:`IntrinsicsError` when that ``K`` is not sane for the image (field of view)."""
        K, src = self._resolve(width, height, image_path)
        why = geometry.check_intrinsics(torch.as_tensor(K), (int(width), int(height)))
        if why:
            name = f" for image '{Path(image_path).name}'" if image_path is not None else ""
            raise IntrinsicsError(f"intrinsics from {src}{name} ({int(width)}x{int(height)} px): {why}")
        return K, src

    def _resolve(self, width: int, height: int, image_path: str | Path | None) -> tuple[np.ndarray, str]:
        size = (int(width), int(height))
        name = Path(image_path).name if image_path is not None else None
        c = self.calibration
        if c is not None:
            K = c.per_image.get(name) if name else None
            src = f"calib:{c.path}[{name}]" if K is not None else f"calib:{c.path}"
            if K is None:
                K = c.K
            if K is None:
                raise IntrinsicsError(
                    f"calibration file '{c.path}' has no entry for image '{name}' and no top-level K"
                )
            ref = c.size or self.calib_size
            if ref is None and (K[0, 2] > width or K[1, 2] > height):
                self._warn_once(
                    "calib-size",
                    f"calibration '{c.path}': principal point ({K[0, 2]:.0f}, {K[1, 2]:.0f}) "
                    "lies outside the "
                    f"{width}x{height} image; give calib_size=[W,H] so K can be scaled",
                )
            K, note = scale_to_image(K, ref, size)
            return K, src + (f" ({note})" if note else "")
        if self.fx is not None:
            ref = self.calib_size or size
            fy = self.fy if self.fy is not None else self.fx
            cx = self.cx if self.cx is not None else ref[0] / 2.0
            cy = self.cy if self.cy is not None else ref[1] / 2.0
            K = geometry.intrinsics(self.fx, fy, cx, cy).double().numpy()
            K, note = scale_to_image(K, ref, size)
            return K, "fx/fy/cx/cy" + (f" ({note})" if note else "")
        if self.hfov_deg is not None:
            return _hfov_K(self.hfov_deg, width, height), f"hfov_deg={self.hfov_deg:g}"
        if self.exif and image_path is not None:
            f35 = exif_focal_35mm(image_path)
            if f35 is not None:
                return intrinsics_from_exif_35mm(f35, width, height), f"exif:f35={f35:g}mm"
        self._warn_once(
            "default",
            "no camera intrinsics given (calib=, fx=, hfov_deg=, or EXIF): "
            f"assuming a {self.default_hfov_deg:g} deg "
            "horizontal field of view; metric depth scales with the focal length, "
            "so expect a proportional error",
        )
        return _hfov_K(self.default_hfov_deg, width, height), f"default hfov_deg={self.default_hfov_deg:g}"


def _hfov_K(hfov_deg: float, width: int, height: int) -> np.ndarray:
    return geometry.intrinsics_from_hfov(hfov_deg, width, height).double().numpy()
