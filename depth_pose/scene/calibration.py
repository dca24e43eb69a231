"""A fixed camera's self-calibration from the people it watches: up direction, height above a level floor,
their uncertainties, and the JSON file that keeps them.

:func:`calibrate_scene` runs the steps (:mod:`~depth_pose.scene.vanishing`, :mod:`~depth_pose.scene.floor`,
:mod:`~depth_pose.scene.planarity`). The file is a JSON mapping written atomically; its top-level ``K``,
``image_size`` ([W, H]), ``up_cam``, ``pitch_deg`` and ``roll_deg`` are the keys ``dp-predict``'s
``intrinsics.calib`` reads too. :meth:`SceneCalibration.load` checks every field and, given the camera's ``K``
or image size, refuses a calibration made for another camera (:class:`CalibrationMismatchError`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_pose.errors import InputError
from depth_pose.fileio import atomic_write_text
from depth_pose.geometry import check_intrinsics, pitch_roll_from_up
from depth_pose.gravity import parse_up
from depth_pose.jsonvalues import as_float, shown
from depth_pose.scene.floor import (
    ANKLE_HEIGHT_M,
    HIP_ABOVE_ANKLE_M,
    MIN_FLOOR_FRAMES,
    FloorEstimate,
    feet_seen,
    fit_floor,
    horizontal_axes,
)
from depth_pose.scene.joints import DEFAULT_MIN_CONF, BodyPoints, TooFewPeopleError, body_points
from depth_pose.scene.planarity import check_planarity, chi2_critical, floor_tilt, segment_rows
from depth_pose.scene.vanishing import UpEstimate, estimate_up, pitch_roll_sigma

FORMAT = "depth_pose.scene_calibration"
VERSION = 1
MAX_HEIGHT_M = 1000.0  # a camera height above this (metres) is a mistake, not a mount
MAX_COUNT = 10**12  # person-frame counts above this are a damaged file
K_RTOL, K_ATOL_PX = 1e-4, 1e-3  # a calibration's K matches the camera's within these
REFINE_STEPS = 6  # at most: up <- verticals + the floor's tilt, the floor again (the tilt is linearised) ...
REFINE_TOL_DEG = 0.02  # ... until up moves less than this
START_SIGMAS = 3.0  # no floor under the verticals' up: look for one up to this many sigmas away ...
START_STEP = 0.5  # ... on a grid of this step (sigmas) ...
START_MIN_TRACKS = 3  # ... standing on it
MODEL_UP_MAX_SIGMA_DEG = 1.0  # an estimated up reaches the depth model only when known this well (deg)
HEIGHT_STEP_DEG = 1.0  # the up moved this far each way to measure how the fitted height follows it
HEIGHT_ITERATIONS = 3  # chord steps of the up under a given height
HEIGHT_GATE_SIGMAS = 3.0  # a given height further than this from the people's floor is of another floor
# The model's scale error common to a scene's people (its view bias), in no term of the floor fit's sigma:
# 1-2% measured on the scene suite (docs/bench_scenes.md, session 18). A self-calibrated height carries it
# (added to its sigma); a given height weighs against it.
MODEL_SCALE_REL = 0.02


class SceneCalibrationError(InputError):
    """A scene calibration file that cannot be used (missing, malformed, out of range); names the file."""


class CalibrationMismatchError(SceneCalibrationError):
    """A scene calibration made for other intrinsics or another image size than the camera's."""


@dataclass(frozen=True, eq=False)
class SceneCalibration:
    """What a fixed camera learnt about its scene. ``up_cam`` (3,) unit, camera coordinates; ``pitch_deg`` /
    ``roll_deg`` the same direction in the project's conventions; ``sigma_*`` 1-sigma uncertainties (NaN when
    unknown); ``height_m`` the camera's height above the floor (None when no feet were usable); ``planar``
    whether the floor was shown to be one level plane (ground-contact depth is used only then) and
    ``planarity`` why; ``K`` (3, 3) and ``image_wh`` the camera it belongs to."""

    K: np.ndarray
    up_cam: np.ndarray
    pitch_deg: float
    roll_deg: float
    sigma_up_deg: float
    sigma_pitch_deg: float
    sigma_roll_deg: float
    n_up_inliers: int
    height_m: float | None
    sigma_height_m: float | None
    n_height_inliers: int
    planar: bool
    planarity: str
    image_wh: tuple[int, int] | None = None

    @property
    def model_up(self) -> np.ndarray | None:
        """The up direction a depth model with a gravity input gets from this calibration: ``up_cam`` when
        its uncertainty (``sigma_up_deg``) is at most :data:`MODEL_UP_MAX_SIGMA_DEG`, else None (the
        single-frame model; also for an unknown uncertainty). The model was trained on exact up directions
        and takes one as exact; the fusion, which weighs the up's uncertainty, uses ``up_cam`` either way. A
        looser up read into the model moved whole scenes' depths against the single-frame model's:
        docs/bench_scenes.md, session 20."""
        ok = math.isfinite(self.sigma_up_deg) and self.sigma_up_deg <= MODEL_UP_MAX_SIGMA_DEG
        return self.up_cam if ok else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (non-finite numbers as null)."""

        def num(x: float | None) -> float | None:
            return float(x) if x is not None and math.isfinite(x) else None

        return {
            "format": FORMAT,
            "version": VERSION,
            "K": np.asarray(self.K, np.float64).tolist(),
            "image_size": list(self.image_wh) if self.image_wh is not None else None,
            "up_cam": [float(v) for v in self.up_cam],
            "pitch_deg": float(self.pitch_deg),
            "roll_deg": float(self.roll_deg),
            "sigma_up_deg": num(self.sigma_up_deg),
            "sigma_pitch_deg": num(self.sigma_pitch_deg),
            "sigma_roll_deg": num(self.sigma_roll_deg),
            "n_up_inliers": int(self.n_up_inliers),
            "height_m": num(self.height_m),
            "sigma_height_m": num(self.sigma_height_m),
            "n_height_inliers": int(self.n_height_inliers),
            "planar": bool(self.planar),
            "planarity": str(self.planarity),
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "scene calibration") -> SceneCalibration:
        """Check and convert a :meth:`to_dict` mapping; :class:`SceneCalibrationError` naming ``where``, the
        key and the value on any problem."""
        if not isinstance(d, dict):
            raise SceneCalibrationError(f"{where}: expected a JSON mapping, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise SceneCalibrationError(f"{where}: format is {d.get('format')!r}, expected {FORMAT!r}")
        if isinstance(d.get("version"), bool) or d.get("version") != VERSION:
            raise SceneCalibrationError(f"{where}: version {d.get('version')!r} is not supported ({VERSION})")
        missing = [k for k in cls._REQUIRED if k not in d]
        if missing:
            raise SceneCalibrationError(f"{where}: missing keys {missing}")
        try:
            K = np.asarray(d["K"], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise SceneCalibrationError(
                f"{where}: K must be a 3x3 matrix of numbers, got {d['K']!r}"
            ) from None
        why = check_intrinsics(torch.as_tensor(K)) if K.shape == (3, 3) else f"K must be 3x3, got {K.shape}"
        if why:
            raise SceneCalibrationError(f"{where}: {why}")
        try:
            up = parse_up(d["pitch_deg"], d["roll_deg"], d["up_cam"])
        except ValueError as e:
            raise SceneCalibrationError(f"{where}: {e}") from None
        size = d.get("image_size")
        if size is not None and not (
            isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)
        ):
            raise SceneCalibrationError(f"{where}: image_size must be [W, H] positive integers, got {size!r}")
        height = _number(d, "height_m", where, 0.0, MAX_HEIGHT_M, allow_none=True, positive=True)
        if not isinstance(d["planar"], bool):
            raise SceneCalibrationError(f"{where}: planar must be true or false, got {d['planar']!r}")
        if d["planar"] and height is None:
            raise SceneCalibrationError(f"{where}: planar is true but height_m is null")
        if not isinstance(d["planarity"], str):
            raise SceneCalibrationError(f"{where}: planarity must be a string, got {d['planarity']!r}")
        counts = {}
        for k in ("n_up_inliers", "n_height_inliers"):
            if not (_is_int(d[k]) and 0 <= d[k] <= MAX_COUNT):
                raise SceneCalibrationError(
                    f"{where}: {k} must be an integer in [0, {MAX_COUNT}], got {shown(d[k])}"
                )
            counts[k] = int(d[k])
        sig = {k: _number(d, k, where, 0.0, math.inf, allow_none=True) for k in cls._SIGMAS}
        pitch, roll = (float(v) for v in pitch_roll_from_up(torch.as_tensor(up, dtype=torch.float64)))
        return cls(
            K=K,
            up_cam=up,
            pitch_deg=pitch,
            roll_deg=roll,
            sigma_up_deg=_nan_if_none(sig["sigma_up_deg"]),
            sigma_pitch_deg=_nan_if_none(sig["sigma_pitch_deg"]),
            sigma_roll_deg=_nan_if_none(sig["sigma_roll_deg"]),
            n_up_inliers=counts["n_up_inliers"],
            height_m=height,
            sigma_height_m=sig["sigma_height_m"] if height is not None else None,
            n_height_inliers=counts["n_height_inliers"],
            planar=d["planar"],
            planarity=d["planarity"],
            image_wh=(int(size[0]), int(size[1])) if size is not None else None,
        )

    def save(self, path: str | Path) -> Path:
        """Write the calibration as JSON, atomically (a reader never sees half a file), with the sha256 of
        its content (:func:`content_sha256`), which :meth:`load` verifies. A calibration that :meth:`load`
        would refuse (an estimate out of range: a camera 100 km up from absurd intrinsics) is not written:
        :class:`SceneCalibrationError`."""
        d = self.to_dict()
        try:
            type(self).from_dict(d, "the calibration")
        except SceneCalibrationError as e:
            raise SceneCalibrationError(f"scene calibration '{path}' not saved: {e}") from None
        return atomic_write_text(path, json.dumps(d | {"sha256": content_sha256(d)}, indent=2) + "\n")

    @classmethod
    def load(
        cls,
        path: str | Path,
        K: np.ndarray | torch.Tensor | None = None,
        image_wh: tuple[int, int] | None = None,
    ) -> SceneCalibration:
        """Read and check a calibration file. Given the camera's ``K`` and/or ``image_wh``, refuse
        (:class:`CalibrationMismatchError`) a calibration made for other intrinsics or another image size
        (a calibration without an image size is not checked against ``image_wh``)."""
        path = Path(path).expanduser()
        where = f"scene calibration '{path}'"
        if not path.is_file():
            raise SceneCalibrationError(f"{where} does not exist or is not a file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSON, huge integers
            raise SceneCalibrationError(f"{where}: not valid JSON ({type(e).__name__}: {e})") from None
        if isinstance(data, dict) and "sha256" in data:
            stated = data.pop("sha256")
            try:
                same = stated == content_sha256(data)
            except ValueError:  # NaN / Infinity in the file: nothing save() writes
                same = False
            if not same:
                raise SceneCalibrationError(
                    f"{where}: its content does not match its sha256 (changed or damaged since it was "
                    'saved): recalibrate, or delete the "sha256" line to load a calibration edited by hand'
                )
        calib = cls.from_dict(data, where)
        if K is not None:
            K = np.asarray(K.detach().cpu() if isinstance(K, torch.Tensor) else K, dtype=np.float64)
            if K.shape != (3, 3) or not np.allclose(calib.K, K, rtol=K_RTOL, atol=K_ATOL_PX):
                raise CalibrationMismatchError(
                    f"{where} was made for intrinsics K={_short(calib.K)}, but the camera's K is "
                    f"{_short(K)}: recalibrate the scene for this camera"
                )
        if image_wh is not None and calib.image_wh is not None and tuple(image_wh) != calib.image_wh:
            W, H = calib.image_wh
            raise CalibrationMismatchError(
                f"{where} was made for {W}x{H} images, but these are {image_wh[0]}x{image_wh[1]}: "
                f"recalibrate the scene for this image size"
            )
        return calib

    _REQUIRED = (
        "K",
        "up_cam",
        "pitch_deg",
        "roll_deg",
        "sigma_up_deg",
        "sigma_pitch_deg",
        "sigma_roll_deg",
        "n_up_inliers",
        "height_m",
        "sigma_height_m",
        "n_height_inliers",
        "planar",
        "planarity",
    )
    _SIGMAS = ("sigma_up_deg", "sigma_pitch_deg", "sigma_roll_deg", "sigma_height_m")


def content_sha256(d: dict[str, Any]) -> str:
    """sha256 of a calibration mapping (without its ``sha256`` key) in a canonical form: sorted keys, no
    spaces; what :meth:`SceneCalibration.save` writes and :meth:`SceneCalibration.load` verifies."""
    canon = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (json's default keeps the last of a repeated key)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r} appears twice")
        out[k] = v
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else x


def _number(
    d: dict, key: str, where: str, lo: float, hi: float, allow_none: bool = False, positive: bool = False
) -> float | None:
    v = d[key]
    if v is None and allow_none:
        return None
    f = as_float(v)
    if not math.isfinite(f):
        raise SceneCalibrationError(f"{where}: {key} must be a finite number, got {shown(v)}")
    if not lo <= f <= hi or (positive and f <= 0):
        span = f"({lo:g}, {hi:g}]" if positive else f"[{lo:g}, {hi:g}]"
        raise SceneCalibrationError(f"{where}: {key}={shown(v)} is out of range {span}")
    return f


def _short(K: np.ndarray) -> str:
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3):
        return f"(shape {K.shape})"
    return f"[fx {K[0, 0]:.6g}, fy {K[1, 1]:.6g}, cx {K[0, 2]:.6g}, cy {K[1, 2]:.6g}]"


def floor_refined_up(
    up: np.ndarray,
    cov: np.ndarray,
    tilt: np.ndarray,
    tilt_cov: np.ndarray,
    at: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Combine an up direction (3,) with covariance (3, 3) and a level floor's apparent ``tilt`` (2,) along
    :func:`~depth_pose.scene.floor.horizontal_axes` of ``at`` (default ``up``; covariance ``tilt_cov``
    (2, 2)), measured with ``at`` as the up direction: a floor rising by ``m`` along an axis says up leans by
    ``-m`` along it from ``at``. Inverse-covariance mean in the tangent plane at ``at``; returns the new unit
    up and its covariance (``up`` and ``cov`` unchanged when either is unknown)."""
    at = up if at is None else np.asarray(at, np.float64)
    if not (np.isfinite(cov).all() and np.isfinite(tilt).all() and np.isfinite(tilt_cov).all()):
        return up, cov
    E = np.stack(horizontal_axes(at), 1)
    info_v, info_f = np.linalg.pinv(E.T @ cov @ E), np.linalg.pinv(tilt_cov)
    C = np.linalg.pinv(info_v + info_f)
    delta = C @ (info_v @ (E.T @ (up - at)) + info_f @ -np.asarray(tilt, np.float64))
    new = at + E @ delta
    return new / np.linalg.norm(new), E @ C @ E.T


def one_sigma_turns(up: np.ndarray, cov: np.ndarray, both_ways: bool = False) -> list[np.ndarray]:
    """The up direction (3,) turned by one sigma along each principal axis of its covariance ``cov`` (3, 3)
    with some spread (unit vectors; ``both_ways``: each axis in both directions): where a fit under up is
    redone to see what the up's own uncertainty does to it."""
    vals, vecs = np.linalg.eigh(cov)
    signs = (1.0, -1.0) if both_ways else (1.0,)
    out = []
    for val, vec in zip(vals, vecs.T, strict=True):
        if val <= 0:
            continue
        for sign in signs:
            moved = up + sign * math.sqrt(val) * vec
            out.append(moved / np.linalg.norm(moved))
    return out


def _height_sigma_from_up(
    points: BodyPoints,
    up: np.ndarray,
    cov: np.ndarray,
    height: float,
    floor_args: tuple,
    hip_above_ankle_m: float,
    min_people: int | None = None,
) -> float:
    """What the up direction's own uncertainty (``cov`` (3, 3)) does to the camera height: the floor fitted
    again with up moved by one sigma along each principal axis of ``cov`` (a level camera's height moves by
    the pitch error times the people's distance; ``min_people`` as the floor was fitted with)."""
    if not np.isfinite(cov).all():
        return 0.0
    var = 0.0
    for moved in one_sigma_turns(up, cov):
        try:
            h = fit_floor(
                points, moved, *floor_args, hip_above_ankle_m=hip_above_ankle_m, min_people=min_people
            ).height_m
        except TooFewPeopleError:
            continue
        var += (h - height) ** 2
    return math.sqrt(var)


def up_at_height(
    points: BodyPoints,
    up: np.ndarray,
    cov: np.ndarray,
    height_m: float,
    floor_args: tuple,
    hip_above_ankle_m: float,
    min_people: int | None = None,
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The up direction (3,) and its covariance (3, 3) once the camera's height above a level floor is known:
    the people's floor lies ``height_m`` below the camera only under the right up. The height fitted under an
    up (:func:`~depth_pose.scene.floor.fit_floor`) moves with it (a level camera's by the pitch error times
    the people's distance) and, apart from that, errs by the people's mean size (its own ``sigma_height_m``)
    and the model's scale error common to them (:data:`MODEL_SCALE_REL`);
    so ``height_m`` is one more measurement of up, combined with ``up`` / ``cov`` by inverse covariance in
    the tangent plane (linearised once, by refitting the floor with up moved :data:`HEIGHT_STEP_DEG` each way
    along each horizontal axis: the robust fit's height is not smooth on a finer scale; then
    :data:`HEIGHT_ITERATIONS` chord steps). Where the up is already precise (a
    floor's tilt after many frames) it hardly moves; where it is loose (a level camera's pitch after a few
    frames) the given height pins it. Without this, a user's true height combined with an up that was
    estimated together with a wrong height undoes the errors' cancellation: docs/bench_scenes.md, session 21.
    ``up`` / ``cov`` unchanged where the floor cannot be fitted or the covariance is unknown, and (third,
    the reason) where the given height lies more than :data:`HEIGHT_GATE_SIGMAS` from the people's floor,
    counting the up's own uncertainty: then it is not their floor's (a nominal car-camera height over
    pedestrians on a raised pavement: KITTI's second camera, 1.65 m given, 1.31 +- 0.02 m measured) and
    would turn the up by degrees to fit it. ``min_people``: as the floor was fitted with
    (:func:`few_people_floor`)."""
    up = np.asarray(up, np.float64)
    if not (np.isfinite(cov).all() and math.isfinite(height_m) and height_m > 0):
        return up, cov, None
    E = np.stack(horizontal_axes(up), 1)  # (3, 2) tangent basis at the prior's up
    C = E.T @ cov @ E
    info_prior = np.linalg.pinv(C)
    step = math.radians(HEIGHT_STEP_DEG)
    delta = np.zeros(2)

    def tilted(d: np.ndarray) -> np.ndarray:
        v = up + E @ d
        return v / np.linalg.norm(v)

    def fit(u: np.ndarray) -> FloorEstimate:
        return fit_floor(points, u, *floor_args, hip_above_ankle_m=hip_above_ankle_m, min_people=min_people)

    def height(d: np.ndarray) -> float:
        return fit(tilted(d)).height_m

    try:  # the height's slope against the tilt, once, by central differences (a robust fit: not too fine)
        grad = np.array([height(step * e) - height(-step * e) for e in np.eye(2)]) / (2 * step)
        base = fit(up)
    except TooFewPeopleError:
        return up, cov, None
    var_h = base.sigma_height_m**2 + (MODEL_SCALE_REL * base.height_m) ** 2
    if not (np.isfinite(grad).all() and math.isfinite(var_h) and var_h > 0):
        return up, cov, None
    spread = math.sqrt(var_h + float(grad @ C @ grad))  # of the fitted height, the up's share included
    if abs(height_m - base.height_m) > HEIGHT_GATE_SIGMAS * spread:
        return (
            up,
            cov,
            f"the given height {height_m:g} m is not the people's floor ({base.height_m:.2f} +- "
            f"{spread:.2f} m below the camera under the estimated up): the up is not turned to fit it",
        )
    # the height linear in the tilt delta (measured: height_m, variance var_h); the prior delta ~ N(0, C)
    info = info_prior + np.outer(grad, grad) / var_h
    post = np.linalg.pinv(info)
    h_at = base.height_m
    for _ in range(HEIGHT_ITERATIONS):  # chord steps: the slope kept, the height refitted where we are
        new = post @ (grad * (height_m - h_at + grad @ delta) / var_h)
        try:  # an up whose floor cannot be fitted is not taken
            h_new = height(new)
        except TooFewPeopleError:
            break
        moved = float(np.linalg.norm(new - delta))
        delta, h_at = new, h_new
        if moved < math.radians(REFINE_TOL_DEG):
            break
    return tilted(delta), E @ post @ E.T, None


def floor_start(
    points: BodyPoints, up: UpEstimate, floor_args: tuple, hip_above_ankle_m: float
) -> tuple[np.ndarray, FloorEstimate] | None:
    """Where to start the floor fit (an up direction and its floor) when the verticals' up ``up`` finds no
    floor: of the ups within :data:`START_SIGMAS` sigmas of it (a grid of :data:`START_STEP` sigmas along the
    axes of its covariance), the one whose floor holds the most person-frames, from at least
    :data:`START_MIN_TRACKS` people (``floor_args``: :func:`~depth_pose.scene.floor.fit_floor`'s model depths,
    spreads and track ids). A level camera's pitch from six people's nearly parallel verticals can be 10 deg
    off: the far people's ankles then lie above the camera and no floor is found, though the floor's own tilt,
    once found, pins the pitch to a fraction of a degree. None when no such floor is found, the uncertainty is
    unknown, or too few person-frames show their feet for any up
    (:func:`~depth_pose.scene.floor.feet_seen`)."""
    if not np.isfinite(up.cov).all() or feet_seen(points, floor_args[0]).sum() < MIN_FLOOR_FRAMES:
        return None  # unknown uncertainty, or too few feet for any up
    vals, vecs = np.linalg.eigh(up.cov)  # the smallest is the unit vector's own (radial) direction
    a1, a2 = (math.sqrt(max(v, 0.0)) * vecs[:, i] for i, v in ((1, vals[1]), (2, vals[2])))
    steps = np.arange(-START_SIGMAS, START_SIGMAS + 1e-9, START_STEP)
    best, best_key = None, (0, -math.inf)  # (up, floor), (inliers, -squared sigmas moved)
    for s1 in steps:
        for s2 in steps:
            if s1 * s1 + s2 * s2 > START_SIGMAS**2:
                continue
            moved = up.up_cam + s1 * a1 + s2 * a2
            moved /= np.linalg.norm(moved)
            try:
                floor = fit_floor(points, moved, *floor_args, hip_above_ankle_m=hip_above_ankle_m)
            except TooFewPeopleError:
                continue
            if len(np.unique(floor.groups[floor.inliers])) < START_MIN_TRACKS:
                continue
            key = (floor.n_inliers, -(s1 * s1 + s2 * s2))
            if key > best_key:
                best, best_key = (moved, floor), key
    return best


def few_people_floor(
    points: BodyPoints, up: UpEstimate, floor_args: tuple, hip_above_ankle_m: float
) -> FloorEstimate:
    """The floor under ``up`` of fewer than :data:`~depth_pose.scene.floor.MIN_FLOOR_FRAMES` upright
    person-frames, tried when neither the verticals' up nor any start finds more (``floor_args`` as for
    :func:`floor_start`, track ids given): six people's first 50 person-frames seen from high above can hold
    only 8 or 9 upright ones, and the height's error is the people's mean size, stated in its sigma, not a
    count of frames. It must keep :data:`START_MIN_TRACKS` people among its inliers
    (:func:`~depth_pose.scene.floor.fit_floor`'s ``min_people``) and still be found with up turned by one
    sigma along each axis of its covariance (:func:`one_sigma_turns`; else the up's share of the height's
    sigma is unknown: a few frames under a wrong up can make a floor metres off). Too small to test or to
    tilt up: the caller keeps the verticals' up. :class:`TooFewPeopleError` (why) when there is no such
    floor."""
    if not np.isfinite(up.cov).all():
        raise TooFewPeopleError(
            "the up direction's uncertainty is unknown: a floor of few person-frames is not used"
        )
    floor = fit_floor(
        points, up.up_cam, *floor_args, hip_above_ankle_m=hip_above_ankle_m, min_people=START_MIN_TRACKS
    )
    for moved in one_sigma_turns(up.up_cam, up.cov, both_ways=True):
        try:
            fit_floor(
                points, moved, *floor_args, hip_above_ankle_m=hip_above_ankle_m, min_people=START_MIN_TRACKS
            )
        except TooFewPeopleError as e:
            raise TooFewPeopleError(
                f"a floor of {floor.n_candidates} person-frames that up turned by one sigma loses ({e})"
            ) from None
    return floor


def given_up(up_cam: np.ndarray, n: int) -> UpEstimate:
    """A known up direction (3,) as an :class:`UpEstimate` of ``n`` person-frames: exact (zero covariance),
    no line used."""
    u = np.asarray(up_cam, np.float64)
    u = u / np.linalg.norm(u)
    pitch, roll = (float(v) for v in pitch_roll_from_up(torch.as_tensor(u)))
    return UpEstimate(
        u, pitch, roll, 0.0, 0.0, 0.0, 0, 0, np.zeros(n, bool), np.full(n, np.nan), np.zeros((3, 3))
    )


def floor_agrees_with_verticals(up: UpEstimate, u: np.ndarray, reason: str) -> tuple[bool, str]:
    """``(planar, reason)`` after the merge: a floor whose tilt moved up further from the people's verticals
    than their uncertainty allows (chi-square, :data:`~depth_pose.scene.planarity.Z_CRIT`) is a ramp, even
    when too few person-frames stood on it to test it before the merge (a level camera's ramp, taken in
    whole as the floor plane, would leave its far people's ground-contact depths tens of percent off)."""
    axes = np.stack(horizontal_axes(up.up_cam), 1)
    d = axes.T @ (u - up.up_cam)
    m2 = float(d @ np.linalg.pinv(axes.T @ up.cov @ axes) @ d)
    if m2 <= chi2_critical(2):
        return True, reason
    angle = math.degrees(math.acos(min(1.0, float(u @ up.up_cam))))
    return False, (
        f"ramp: the floor tilts {angle:.1f} deg against the people's verticals ({math.sqrt(m2):.1f} sigma)"
    )


def calibrate_scene(
    keypoints_xyc: np.ndarray | torch.Tensor,
    K: np.ndarray | torch.Tensor,
    z_model: np.ndarray,
    sigma_model: np.ndarray,
    track_ids: np.ndarray | None = None,
    image_wh: tuple[int, int] | None = None,
    *,
    min_conf: float = DEFAULT_MIN_CONF,
    torso_lines: bool = False,
    refine_up: bool = True,
    hip_above_ankle_m: float = HIP_ABOVE_ANKLE_M,
    up_cam: np.ndarray | None = None,
    seed: int = 0,
    fps: float | None = None,
    height_m: float | None = None,
) -> SceneCalibration:
    """Calibrate a fixed camera (one ``K`` (3, 3)) from N person-frames: keypoints (N, 17, 3), the model's
    mid-hip depths and spreads (N,), optional track ids (N,) (one id per person over frames) and image size.
    :class:`~depth_pose.scene.joints.TooFewPeopleError` when the up direction cannot be found; when only the
    floor cannot, ``height_m`` is None and ``planar`` False.

    Steps: up from the people's verticals (:func:`~depth_pose.scene.vanishing.estimate_up`); camera height
    (:func:`~depth_pose.scene.floor.fit_floor`; when that up finds no floor, from the up within its
    uncertainty that does: :func:`floor_start`; with track ids and no floor of
    :data:`~depth_pose.scene.floor.MIN_FLOOR_FRAMES` person-frames, one of three people under the
    verticals' up, which it does not refine: :func:`few_people_floor`); is the floor level
    (:func:`~depth_pose.scene.planarity.check_planarity`, which also measures the floor's tilt against that
    up: a ramp when they disagree).
    Unless it is a ramp (and with ``refine_up``), the floor's tilt (:func:`~depth_pose.scene.planarity.
    floor_tilt`, from every person-frame on the floor) is a second measurement of up, precise where
    verticals are weak (a level camera's pitch): both are combined (:func:`floor_refined_up`) and height and
    planarity computed again, until up moves less than :data:`REFINE_TOL_DEG` (at most
    :data:`REFINE_STEPS` times: still moving then, or a refined up that finds no floor, and the floor is not
    shown level; no finite tilt or up covariance ends the refinement); a merged up that leaves the
    verticals' uncertainty makes the floor a ramp (:func:`floor_agrees_with_verticals`); a floor tested in
    the end and not found level reports the up of the first fit (the verticals', or :func:`floor_start`'s)
    and the height under it: an uneven floor's tilt is no measurement of up (a model with a gravity input
    gets it when precise enough: :attr:`SceneCalibration.model_up`). A floor too small to test still refines
    up (unless a later test finds it uneven). ``sigma_height_m`` includes what
    the up direction's uncertainty does to the height, and the model's scale error common to the people
    (:data:`MODEL_SCALE_REL`). ``hip_above_ankle_m``: the people's mean hip height
    above their ankles (:func:`~depth_pose.scene.floor.fit_floor`). ``up_cam`` (3,): the user's up direction,
    taken as exact (no vanishing point, no refinement): only the height and the floor are measured, under it
    (:func:`given_up`). ``fps``: the frame rate of a video's person-frames (how many of a track's frames the
    planarity test takes as one piece of evidence: :func:`~depth_pose.scene.planarity.segment_rows`).
    ``height_m``: the camera's known height above the floor: where a floor is found, reported as it is (zero
    uncertainty) and, unless the floor was found uneven or the up was given (``up_cam``), one more
    measurement of the estimated up (:func:`up_at_height`)."""
    K = np.asarray(K.detach().cpu() if isinstance(K, torch.Tensor) else K, dtype=np.float64)
    if K.shape != (3, 3):
        raise InputError(f"calibrate_scene is for a fixed camera: K must be (3, 3), got {K.shape}")
    if height_m is not None and not 0.0 < as_float(height_m) <= MAX_HEIGHT_M:
        raise InputError(
            f"calibrate_scene: height_m must be a number in (0, {MAX_HEIGHT_M:g}], got {shown(height_m)}"
        )
    points = body_points(keypoints_xyc, K, min_conf, image_wh)
    if up_cam is not None:
        up, refine_up = given_up(up_cam, len(points.hip)), False
    else:
        up = estimate_up(points, track_ids, torso_lines=torso_lines, seed=seed)
    u, cov = up.up_cam, up.cov
    floor_args = (z_model, sigma_model, track_ids)
    height = sigma_h = None
    n_floor, planar, reason, fitted = 0, False, "no floor: ", (u, cov)
    first = first_fit = None
    tested, unsettled = False, ""  # unsettled: how the refinement failed to settle
    few = None  # people a floor of fewer than MIN_FLOOR_FRAMES person-frames needs (None: no such floor)
    for step in range(REFINE_STEPS + 1):
        try:
            floor = fit_floor(points, u, *floor_args, hip_above_ankle_m=hip_above_ankle_m, min_people=few)
        except TooFewPeopleError as e:
            start = (
                floor_start(points, up, floor_args, hip_above_ankle_m) if step == 0 and refine_up else None
            )
            why = str(e)
            if start is None and step == 0 and track_ids is not None:
                try:
                    start = (u, few_people_floor(points, up, floor_args, hip_above_ankle_m))
                    few = START_MIN_TRACKS
                except TooFewPeopleError as e_few:
                    why = f"{why}; with fewer person-frames: {e_few}"
            if start is None:
                if step == 0:
                    reason += why
                else:  # a refined up lost the floor the previous up stood on
                    unsettled = f"the refined up direction finds no floor: {e}"
                break
            u, floor = start
        height, sigma_h, n_floor = floor.height_m, floor.sigma_height_m, floor.n_inliers
        axes = np.stack(horizontal_axes(u), 1)  # (3, 2)
        inl = floor.inliers
        verdict = check_planarity(
            floor.drop[inl],
            floor.position[inl],
            floor.rel_sigma[inl],
            None if track_ids is None else floor.groups[inl],
            up_cov=axes.T @ (up.cov if step == 0 else cov) @ axes,
            floor_drop=height - ANKLE_HEIGHT_M,
            seed=seed,
            rows=segment_rows(fps),
        )
        planar, reason, fitted, tested = verdict.planar, verdict.reason, (u, cov), verdict.tested
        # Before verticals and floor are merged: a ramp, or a step the merged up would lean into. A floor
        # still tilted after the merge is a ramp too (the safe side: single-frame depths).
        if step == 0:
            first, first_fit = verdict, (u, cov, height, sigma_h, n_floor)
        elif first.ramp or first.step:
            planar, reason = False, first.reason
        if step == REFINE_STEPS or verdict.ramp or not refine_up or few:  # few: too small to tilt up
            if refine_up and step == REFINE_STEPS > 0:  # still moving after every refinement
                unsettled = f"in {REFINE_STEPS} refinements"
            break
        # every frame on the floor (not only the height's inliers): an up error shows most in the far ones
        tilt, tilt_cov = floor_tilt(  # without track ids every frame is its own person: no jackknife
            floor.drop,
            floor.position,
            None if track_ids is None else floor.groups,
            floor_drop=height - ANKLE_HEIGHT_M,
        )
        if not all(np.isfinite(a).all() for a in (tilt, tilt_cov, up.cov)):
            break  # nothing to combine: keep the up the height and the verdict were computed with
        u_prev = u
        u, cov = floor_refined_up(up.up_cam, up.cov, tilt, tilt_cov, at=u)
        if float(u @ u_prev) > math.cos(math.radians(REFINE_TOL_DEG)):
            break  # settled: keep the up direction the height and the verdict were computed with
    u, cov = fitted  # the up direction the height and the verdict were computed with
    if planar and unsettled:
        # a level floor and the verticals settle on one up in a few steps; a ramp's tilt, which each new up
        # reads anew, keeps moving it (docs/bench_scenes.md, session 19)
        planar = False
        reason = (
            f"not level: the floor's tilt and the people's verticals did not settle on one up direction "
            f"({unsettled}); the last test: {reason}"
        )
    if planar:
        planar, reason = floor_agrees_with_verticals(up, u, reason)
    if first_fit is not None and tested and not planar:
        # a floor tested and not found level tells nothing about up (nor did it while too small to test, when
        # it refined up all the same): the first fit's up (and its height)
        u, cov, height, sigma_h, n_floor = first_fit
    if height_m is not None and height is not None:  # the floor found, its height known
        if refine_up and not (tested and not planar):
            u, cov, conflict = up_at_height(
                points, u, cov, float(height_m), floor_args, hip_above_ankle_m, min_people=few
            )
            reason = reason if conflict is None else f"{reason}; {conflict}"
        height, sigma_h = float(height_m), 0.0
    elif height is not None:  # the people's mean size, the up's share, and the model's common scale error
        from_up = _height_sigma_from_up(points, u, cov, height, floor_args, hip_above_ankle_m, few)
        sigma_h = math.sqrt(sigma_h**2 + from_up**2 + (MODEL_SCALE_REL * height) ** 2)
    pitch, roll, s_pitch, s_roll = pitch_roll_sigma(u, cov)
    return SceneCalibration(
        K=K,
        up_cam=u,
        pitch_deg=pitch,
        roll_deg=roll,
        sigma_up_deg=math.degrees(math.sqrt(max(float(np.trace(cov)), 0.0))),
        sigma_pitch_deg=s_pitch,
        sigma_roll_deg=s_roll,
        n_up_inliers=up.n_inliers,
        height_m=height,
        sigma_height_m=sigma_h,
        n_height_inliers=n_floor,
        planar=planar,
        planarity=reason,
        image_wh=None if image_wh is None else (int(image_wh[0]), int(image_wh[1])),
    )
