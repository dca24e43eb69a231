"""Scene self-calibration as the commands use it (``dp-predict``, ``dp-eval``): the ``scene.*`` options beyond
the up direction, a calibration that is estimated (:func:`depth_pose.scene.calibrate_scene`), loaded (a
:class:`~depth_pose.scene.SceneCalibration` file) or given (``scene.height_m`` with the up direction), the
fall-back to single-frame depths when none can be made, and how it is reported.

* :func:`fit_scene`: one fixed camera's person-frames -> :class:`SceneFit` (``status``: ``calibrated`` = up
  direction and a level floor, ground contact and track scales apply; ``up_only`` = up direction only (no
  floor seen, or a floor that is not one level plane): depths stay single-frame; ``failed`` = nothing usable,
  ``why`` says why). An up direction looser than :data:`MAX_SIGMA_UP_DEG` counts as failed; one looser than
  :data:`~depth_pose.scene.calibration.MODEL_UP_MAX_SIGMA_DEG` is not given to the depth model
  (:attr:`~depth_pose.scene.SceneCalibration.model_up`; :func:`estimated_up_to_model`).
* :func:`fuse_fit`: :func:`depth_pose.scene.fuse_depths` with a fit, the model's depths unchanged without one.
* :class:`StreamScene`: live sources: calibrate once ``every`` person-frames have come (again after each
  ``every`` more until a level floor is found), fuse each new frame with the recent ones (track scales).
* :func:`calibrate_groups` / :func:`scene_metrics` / :func:`scene_markdown`: ``dp-eval``'s people grouped by
  camera, each group calibrated and fused; errors of single-frame and scene-aware depths side by side, the
  estimate against reported ground truth when the input has it (never used as input).
* :func:`scene_entry` / :func:`scene_line`: the summary mapping and the one console line of a fit.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from depth_pose.errors import InputError
from depth_pose.eval.metrics import depth_metrics
from depth_pose.gravity import AGREE_DEG, CALIBRATION_KEYS, KEYS, pitch_roll_rows
from depth_pose.jsonvalues import as_float
from depth_pose.scene import FusedDepth, SceneCalibration, calibrate_scene, fuse_depths
from depth_pose.scene.calibration import K_ATOL_PX, K_RTOL, MAX_HEIGHT_M, MODEL_UP_MAX_SIGMA_DEG
from depth_pose.scene.fusion import SOURCE_GROUND, SOURCE_MODEL, SOURCE_TRACK

CALIBRATE = ("auto", "true", "false")
SOURCES = (SOURCE_GROUND, SOURCE_TRACK, SOURCE_MODEL)
CALIBRATED, UP_ONLY, FAILED = "calibrated", "up_only", "failed"
GIVEN_UP = "given up, estimated height"
MAX_SIGMA_UP_DEG = 5.0  # a looser up direction (few or degenerate people) is no calibration
STREAM_WINDOW = 5000  # live sources: person-frames kept for calibration and track scales
TRUTH_KEYS = ("pitch_deg", "roll_deg", "height_m")
DEFAULT_TRUTH_FIELDS = {
    "pitch_deg": "camera_pitch_deg",
    "roll_deg": "camera_roll_deg",
    "height_m": "camera_height_m",
}
DEFAULT_TRACK_FIELDS = ("track_id", "person_id")
DEFAULT_GROUP = "camera_id"
IMAGE_SIZE_FIELD = "image_wh"


class SceneOptionsError(InputError):
    """An unusable ``scene.*`` calibration option (exit 2, one line naming the key)."""


# ---- options ---------------------------------------------------------------------------------------------


def _plain(block: Any) -> dict:
    if block is None:
        return {}
    if hasattr(block, "items") and not isinstance(block, dict):  # an OmegaConf node
        from omegaconf import OmegaConf

        block = OmegaConf.to_container(block, resolve=True)
    if not isinstance(block, Mapping):
        raise SceneOptionsError(f"scene must be a mapping, got {block!r}")
    unknown = sorted(set(block) - set(KEYS) - set(CALIBRATION_KEYS))
    if unknown:
        raise SceneOptionsError(
            f"scene: unknown keys {unknown} (known: {', '.join(KEYS + CALIBRATION_KEYS)})"
        )
    return dict(block)


def parse_calibrate(value: Any, name: str = "scene.calibrate") -> str:
    """``auto`` | ``true`` | ``false`` (YAML booleans and null = auto accepted)."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text in CALIBRATE:
        return text
    raise SceneOptionsError(f"{name} must be auto, true or false, got {value!r}")


def parse_height(value: Any, name: str = "scene.height_m") -> float | None:
    """A camera height above the floor in metres, (0, 1000], or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SceneOptionsError(f"{name} must be a number of metres, got {value!r}")
    if not 0.0 < float(value) <= MAX_HEIGHT_M:
        raise SceneOptionsError(f"{name} must be in (0, {MAX_HEIGHT_M:g}] metres, got {value!r}")
    return float(value)


def _path(value: Any, name: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | Path) or not str(value).strip():
        raise SceneOptionsError(f"{name} must be a file path, got {value!r}")
    return Path(str(value)).expanduser()


@dataclass(frozen=True)
class PredictSceneOptions:
    """``dp-predict``'s ``scene.*`` calibration options (the up direction is :mod:`depth_pose.gravity`'s)."""

    calibrate: str = "auto"
    height_m: float | None = None
    save: Path | None = None
    load: Path | None = None
    stream_person_frames: int = 300


def predict_scene_options(block: Any, resolve: Callable[[Path], Path] | None = None) -> PredictSceneOptions:
    """Check ``dp-predict``'s ``scene`` block; ``resolve`` makes the file paths absolute.
    :class:`SceneOptionsError` (exit 2) for a bad value or a contradiction."""
    d = _plain(block)
    for key in ("group", "track_fields", "truth_fields"):
        if key in d:
            raise SceneOptionsError(f"scene.{key} is a dp-eval option, not dp-predict's")
    calibrate = parse_calibrate(d.get("calibrate"))
    height = parse_height(d.get("height_m"))
    save, load = _path(d.get("save"), "scene.save"), _path(d.get("load"), "scene.load")
    if save is not None and save.suffix.lower() != ".json":
        raise SceneOptionsError(
            f"scene.save='{save}': a calibration is written as JSON; give a file name ending in .json (this "
            "also keeps it off images, videos and other files of the run)"
        )
    if resolve is not None:
        save, load = (resolve(p) if p is not None else None for p in (save, load))
    every = d.get("stream_person_frames", 300)
    if isinstance(every, bool) or not isinstance(every, int) or every < 10:
        raise SceneOptionsError(f"scene.stream_person_frames must be an integer >= 10, got {every!r}")
    if calibrate == "false":
        used = [k for k, v in (("height_m", height), ("save", save), ("load", load)) if v is not None]
        if used:
            raise SceneOptionsError(
                f"scene.calibrate=false turns the scene calibration off, but scene.{used[0]} is given: "
                "drop one of them"
            )
    if load is not None and height is not None:
        raise SceneOptionsError("scene.load and scene.height_m both give the camera height: give one of them")
    if load is not None and save is not None:
        raise SceneOptionsError("scene.load and scene.save: a loaded calibration is not estimated again")
    return PredictSceneOptions(calibrate, height, save, load, every)


@dataclass(frozen=True)
class EvalSceneOptions:
    """``dp-eval``'s ``scene.*`` calibration options: ``group`` = the JSONL field naming each line's camera
    (None = no scene calibration); ``track_fields`` the fields giving a person's track, first present wins;
    ``truth_fields`` the fields holding a reported pitch / roll / height (reported against, never used)."""

    group: str | None = None
    track_fields: tuple[str, ...] = DEFAULT_TRACK_FIELDS
    height_m: float | None = None
    truth_fields: Mapping[str, str | None] = field(default_factory=lambda: dict(DEFAULT_TRUTH_FIELDS))

    @property
    def enabled(self) -> bool:
        return self.group is not None

    def fields(self) -> tuple[str, ...]:
        """The JSONL fields the reader must keep."""
        truth = [f for f in (self.truth_fields or {}).values() if f]
        return tuple(
            dict.fromkeys([self.group or DEFAULT_GROUP, *self.track_fields, IMAGE_SIZE_FIELD, *truth])
        )


def _field_name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SceneOptionsError(f"{name} must be a JSONL field name, got {value!r}")
    return value.strip()


def eval_scene_options(block: Any) -> EvalSceneOptions:
    """Check ``dp-eval``'s ``scene`` block: ``calibrate`` (``auto`` = only when ``group`` is given; ``true``
    without ``group``: the ``camera_id`` field; ``false``), ``group``, ``track_fields``, ``height_m``,
    ``truth_fields``. :class:`SceneOptionsError` (exit 2) for a bad value."""
    d = _plain(block)
    for key in ("save", "load", "stream_person_frames"):
        if d.get(key) is not None:
            raise SceneOptionsError(f"scene.{key} is a dp-predict option, not dp-eval's")
    calibrate = parse_calibrate(d.get("calibrate", "auto"))
    group = d.get("group")
    group = None if group is None else _field_name(group, "scene.group")
    if calibrate == "false" and group is not None:
        raise SceneOptionsError(
            f"scene.group={group} asks for a scene calibration, but scene.calibrate=false"
        )
    if calibrate == "true" and group is None:
        group = DEFAULT_GROUP
    tracks = d.get("track_fields", list(DEFAULT_TRACK_FIELDS))
    if tracks is None:
        tracks = []
    if isinstance(tracks, str) or not isinstance(tracks, Sequence):
        raise SceneOptionsError(f"scene.track_fields must be a list of field names, got {tracks!r}")
    tracks = tuple(_field_name(t, "scene.track_fields") for t in tracks)
    truth = d.get("truth_fields", DEFAULT_TRUTH_FIELDS)
    truth = {} if truth is None else truth  # null: no reported values
    if not isinstance(truth, Mapping) or set(truth) - set(TRUTH_KEYS):
        raise SceneOptionsError(
            f"scene.truth_fields must map some of {', '.join(TRUTH_KEYS)} to JSONL field names (null: none), "
            f"got {truth!r}"
        )
    truth = {k: (None if truth.get(k) is None else _field_name(truth[k], f"scene.truth_fields.{k}"))
             for k in TRUTH_KEYS}  # fmt: skip
    height = parse_height(d.get("height_m"))
    if height is not None and group is None:
        raise SceneOptionsError("scene.height_m is for a scene calibration: give scene.group=FIELD too")
    return EvalSceneOptions(group, tracks, height, truth)


# ---- calibrations ----------------------------------------------------------------------------------------


def given_calibration(
    up: np.ndarray, height_m: float, K: np.ndarray, image_wh: tuple[int, int] | None = None
) -> SceneCalibration:
    """The calibration of a camera whose mount the user knows (up direction and height above a level floor),
    with zero uncertainty."""
    up = np.asarray(up, np.float64)
    pitch, roll = pitch_roll_rows(up, 1)
    return SceneCalibration(
        K=np.asarray(K, np.float64),
        up_cam=up / np.linalg.norm(up),
        pitch_deg=float(pitch[0]),
        roll_deg=float(roll[0]),
        sigma_up_deg=0.0,
        sigma_pitch_deg=0.0,
        sigma_roll_deg=0.0,
        n_up_inliers=0,
        height_m=float(height_m),
        sigma_height_m=0.0,
        n_height_inliers=0,
        planar=True,
        planarity="given (scene.height_m with the up direction): the floor is taken as one level plane",
        image_wh=None if image_wh is None else (int(image_wh[0]), int(image_wh[1])),
    )


@dataclass(frozen=True, eq=False)
class SceneFit:
    """A camera's scene calibration (None when there is none), where it came from (``estimated``,
    ``estimated up, given height``, ``given up, estimated height``, ``given``, ``loaded:<path>``), why there
    is none (or why it holds no usable floor), and from how many person-frames."""

    calib: SceneCalibration | None
    origin: str
    why: str | None
    n_person_frames: int

    @property
    def status(self) -> str:
        c = self.calib
        if c is None:
            return FAILED
        return CALIBRATED if (c.planar and c.height_m is not None) else UP_ONLY


def unique_tracks(track_ids: np.ndarray | None, n: int, start: int = 0) -> np.ndarray:
    """Track ids (N,) int with every untracked person-frame (id < 0, or no ids at all) its own negative id
    (``-1 - start - k``), so untracked people are never pooled into one track."""
    own = -1 - start - np.arange(n, dtype=np.int64)
    if track_ids is None:
        return own
    t = np.asarray(track_ids, np.int64).reshape(n)
    return np.where(t >= 0, t, own)


def _tracks_or_none(track_ids: np.ndarray | None, n: int) -> np.ndarray | None:
    """:func:`unique_tracks`, or None when no person-frame is tracked (the calibration's untracked mode: a
    floor test without per-track offsets)."""
    if track_ids is None or not (np.asarray(track_ids, np.int64) >= 0).any():
        return None
    return unique_tracks(track_ids, n)


def fit_scene(
    keypoints_xyc: np.ndarray,
    K: np.ndarray,
    z_model: np.ndarray,
    sigma_model: np.ndarray,
    track_ids: np.ndarray | None = None,
    image_wh: tuple[int, int] | None = None,
    *,
    up: np.ndarray | None = None,
    height_m: float | None = None,
    torso_lines: bool = False,
    seed: int = 0,
    fps: float | None = None,
) -> SceneFit:
    """Calibrate one fixed camera (``K`` (3, 3)) from its person-frames, never raising for data that cannot
    calibrate it (``status`` ``failed`` with ``why``).

    ``up`` and ``height_m`` both given (the user's mount): :func:`given_calibration`, nothing estimated.
    ``height_m`` alone: the up direction is estimated and sharpened by the height
    (:func:`~depth_pose.scene.calibration.up_at_height`), the height is the given one (the floor's planarity
    verdict is kept when a floor was measured; without one it is taken as level). ``up`` alone: the up
    direction is the user's, exact; the height and the floor are measured under it (origin ``given up,
    estimated height``). ``fps``: a video's frame rate (:func:`~depth_pose.scene.calibrate_scene`)."""
    n = len(z_model)
    if up is not None and height_m is not None:
        return SceneFit(given_calibration(up, height_m, K, image_wh), "given", None, n)
    tids = _tracks_or_none(track_ids, n)
    origin = "estimated" if up is None else GIVEN_UP
    try:
        calib = calibrate_scene(
            keypoints_xyc, K, z_model, sigma_model, tids, image_wh, torso_lines=torso_lines, seed=seed,
            up_cam=up, fps=fps, height_m=height_m,
        )  # fmt: skip
    except InputError as e:  # TooFewPeopleError, or people that fix no direction
        return SceneFit(None, origin, str(e), n)
    if up is not None:
        why = None if calib.planar else calib.planarity
        if calib.height_m is None:
            why = f"no floor under the given up direction: {calib.planarity}"
        return SceneFit(calib, origin, why, n)
    if not (math.isfinite(calib.sigma_up_deg) and calib.sigma_up_deg <= MAX_SIGMA_UP_DEG):
        return SceneFit(
            None,
            "estimated",
            f"the up direction is not determined by these people (pitch {calib.pitch_deg:.1f}, roll "
            f"{calib.roll_deg:.1f} from {calib.n_up_inliers} person-frames, {_spread(calib.sigma_up_deg)})",
            n,
        )
    if height_m is None:
        why = None if calib.planar else calib.planarity
        return SceneFit(calib, "estimated", why, n)
    # the user's height says there is a floor: level unless the floor was measured and found not to be
    tested = calib.height_m is not None and not calib.planarity.startswith("not tested")
    calib = replace(
        calib,
        height_m=float(height_m),
        sigma_height_m=0.0,
        planar=calib.planar if tested else True,
        planarity=calib.planarity if tested else f"taken as level (scene.height_m given; {calib.planarity})",
    )
    return SceneFit(calib, "estimated up, given height", None if calib.planar else calib.planarity, n)


def loaded_fit(path: Path, K: np.ndarray, image_wh: tuple[int, int] | None, n: int = 0) -> SceneFit:
    """A calibration file checked against this camera's ``K`` and image size (a
    :class:`~depth_pose.scene.CalibrationMismatchError` otherwise: exit 2)."""
    calib = SceneCalibration.load(path, K=K, image_wh=image_wh)
    return SceneFit(calib, f"loaded:{path}", None if calib.planar else calib.planarity, n)


def _spread(x: float) -> str:
    if not math.isfinite(x):
        return "no uncertainty can be computed"
    return f"uncertainty {x:.1f} deg, more than {MAX_SIGMA_UP_DEG:g}"


def model_only(z: np.ndarray, sigma: np.ndarray) -> FusedDepth:
    """The model's depths as a :class:`FusedDepth` (every source ``model``)."""
    z = np.asarray(z, np.float64).reshape(-1)
    n = len(z)
    return FusedDepth(
        z.copy(),
        np.asarray(sigma, np.float64).reshape(n).copy(),
        np.full(n, SOURCE_MODEL, dtype="<U6"),
        np.full(n, np.nan),
        np.full(n, np.nan),
        np.ones(n),
    )


def fuse_fit(
    fit: SceneFit | None,
    keypoints_xyc: np.ndarray,
    z_model: np.ndarray,
    sigma_model: np.ndarray,
    track_ids: np.ndarray | None = None,
    image_wh: tuple[int, int] | None = None,
) -> FusedDepth:
    """Model depths with ground contact and track scales of ``fit`` (unchanged without a calibration or a
    level floor)."""
    if fit is None or fit.calib is None or len(z_model) == 0:
        return model_only(z_model, sigma_model)
    tids = _tracks_or_none(track_ids, len(z_model))
    return fuse_depths(fit.calib, keypoints_xyc, z_model, sigma_model, tids, image_wh=image_wh)


def source_counts(source: np.ndarray) -> dict[str, int]:
    """Person-frames per depth source (``ground``, ``track``, ``model``)."""
    source = np.asarray(source).astype(str)
    return {s: int((source == s).sum()) for s in SOURCES}


def _num(x: Any, nd: int = 4) -> float | None:
    return round(float(x), nd) if x is not None and math.isfinite(float(x)) else None


def estimated_up_to_model(calib: SceneCalibration | None, gravity: bool, up_given: bool) -> bool | None:
    """Whether the depth model ran with a camera's estimated up direction: None where that is not in question
    (no calibration, a model without the gravity input, or an up direction the user gave, which the model
    gets instead), else whether the estimate is known well enough
    (:attr:`~depth_pose.scene.SceneCalibration.model_up`)."""
    if calib is None or not gravity or up_given:
        return None
    return calib.model_up is not None


def scene_entry(fit: SceneFit, fused: FusedDepth | None = None, *, up_to_model: bool | None) -> dict:
    """The JSON-ready summary of a fit: status, origin, why, the estimate with its 1-sigma uncertainties and
    observation counts, whether the depth model got the estimated up (``up_to_model``:
    :func:`estimated_up_to_model`), the floor's verdict, and (with ``fused``) the person-frames per depth
    source."""
    c = fit.calib
    out: dict[str, Any] = {
        "status": fit.status,
        "origin": fit.origin,
        "why": fit.why,
        "n_person_frames": fit.n_person_frames,
        "pitch_deg": _num(c.pitch_deg, 3) if c else None,
        "sigma_pitch_deg": _num(c.sigma_pitch_deg, 3) if c else None,
        "roll_deg": _num(c.roll_deg, 3) if c else None,
        "sigma_roll_deg": _num(c.sigma_roll_deg, 3) if c else None,
        "sigma_up_deg": _num(c.sigma_up_deg, 3) if c else None,
        "up_to_model": up_to_model,
        "up_cam": [_num(v, 6) for v in c.up_cam] if c else None,
        "n_up_inliers": c.n_up_inliers if c else 0,
        "height_m": _num(c.height_m) if c and c.height_m is not None else None,
        "sigma_height_m": _num(c.sigma_height_m) if c and c.sigma_height_m is not None else None,
        "n_height_inliers": c.n_height_inliers if c else 0,
        "planar": bool(c.planar) if c else False,
        "planarity": c.planarity if c else None,
    }
    if fused is not None:
        out["depth_source"] = source_counts(fused.source)
        out["n_tracks_scaled"] = len(fused.track_scales)
    return out


def scene_line(name: str, entry: Mapping[str, Any]) -> str:
    """One console line: the estimate with its uncertainty and observation counts, and what it did."""
    if entry["status"] == FAILED:
        return (
            f"scene {name}: not calibrated ({entry['why']}) from {entry['n_person_frames']} person-frames: "
            "single-frame depths"
        )

    def pm(v: float | None, s: float | None, unit: str) -> str:
        if v is None:
            return "unknown"
        return f"{v:.2f}{unit}" + (f" ± {s:.2f}{unit}" if s else "")

    origin = entry["origin"]
    up = f"pitch {pm(entry['pitch_deg'], entry['sigma_pitch_deg'], '°')}, roll " + pm(
        entry["roll_deg"], entry["sigma_roll_deg"], "°"
    )
    height = f"height {pm(entry['height_m'], entry['sigma_height_m'], ' m')}"
    if origin == "given":
        text = f"scene {name}: given {up}, {height}"
    elif origin.startswith("loaded:"):
        text = f"scene {name}: loaded {origin[7:]}: {up}, {height}"
    elif origin == GIVEN_UP:
        text = (
            f"scene {name}: given {up}, {height} from {entry['n_height_inliers']} person-frames "
            f"(of {entry['n_person_frames']})"
        )
    else:
        h_from = (
            "(given)"
            if origin == "estimated up, given height"
            else f"from {entry['n_height_inliers']} person-frames"
        )
        text = (
            f"scene {name}: {up} from {entry['n_up_inliers']} person-frames, {height} {h_from} "
            f"(of {entry['n_person_frames']})"
        )
    if entry["up_to_model"] is False:
        text += f"; up not known within {MODEL_UP_MAX_SIGMA_DEG:g}°: not given to the depth model"
    if entry["status"] == UP_ONLY:
        text += f"; no level floor ({entry['planarity']}): single-frame depths"
    else:
        text += "; level floor"
    counts = entry.get("depth_source")
    if counts:
        text += ": depths " + ", ".join(f"{v} {k}" for k, v in counts.items())
    return text


# ---- live sources ----------------------------------------------------------------------------------------


class StreamScene:
    """One live camera: person-frames are kept (the last ``window``); once ``every`` have come the camera is
    calibrated (again after each ``every`` more while no level floor was found), and from then on every new
    frame is fused with the kept ones (ground contact, track scales). ``fixed``: a loaded or given
    calibration, applied from the first frame. ``on_fit`` is called with each new fit (to save it)."""

    def __init__(
        self,
        K: np.ndarray,
        image_wh: tuple[int, int] | None,
        every: int,
        *,
        fixed: SceneFit | None = None,
        height_m: float | None = None,
        up: np.ndarray | None = None,
        window: int = STREAM_WINDOW,
        on_fit: Callable[[SceneFit], None] | None = None,
    ) -> None:
        self.K, self.image_wh, self.every, self.window = np.asarray(K, np.float64), image_wh, every, window
        self.fit = fixed
        self.frozen = fixed is not None
        self.height_m, self.given_up = height_m, up
        self.on_fit = on_fit
        self.next_try = every
        self.seen = 0
        self._kept_n = 0
        self.calibrated_after: int | None = 0 if fixed is not None else None
        self.last: SceneFit | None = fixed
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.counts = dict.fromkeys(SOURCES, 0)

    @property
    def up(self) -> np.ndarray | None:
        """The calibration's up direction once there is one."""
        return None if self.fit is None or self.fit.calib is None else self.fit.calib.up_cam

    @property
    def model_up(self) -> np.ndarray | None:
        """The calibration's up direction where it is precise enough for the depth model
        (:attr:`~depth_pose.scene.SceneCalibration.model_up`)."""
        return None if self.fit is None or self.fit.calib is None else self.fit.calib.model_up

    def _kept(self) -> tuple[np.ndarray, ...]:
        return tuple(np.concatenate(parts) for parts in zip(*self._chunks))

    def add(
        self, keypoints_xyc: np.ndarray, z: np.ndarray, sigma: np.ndarray, track_ids: np.ndarray | None
    ) -> FusedDepth:
        """This frame's person-frames (N,): their scene-aware depths."""
        n = len(z)
        tids = unique_tracks(track_ids, n, start=self.seen)
        self.seen += n
        kp = np.asarray(keypoints_xyc, np.float64).reshape(n, -1, 3)
        self._chunks.append((kp, np.asarray(z, np.float64), np.asarray(sigma, np.float64), tids))
        self._kept_n += n
        while len(self._chunks) > 1 and self._kept_n - len(self._chunks[0][1]) >= self.window:
            self._kept_n -= len(self._chunks.pop(0)[1])
        if n == 0:
            return model_only(z, sigma)
        if not self.frozen and self.seen >= self.next_try:
            kp, zz, ss, tt = self._kept()
            fit = fit_scene(kp, self.K, zz, ss, tt, self.image_wh, up=self.given_up, height_m=self.height_m)
            self.last = fit
            self.next_try = self.seen + self.every
            if fit.calib is not None:
                self.fit = fit
                if fit.status == CALIBRATED:
                    self.frozen = True
                    self.calibrated_after = self.seen
                if self.on_fit is not None:
                    self.on_fit(fit)
        if self.fit is None or self.fit.status != CALIBRATED:
            fused = model_only(z, sigma)
        else:
            kp, zz, ss, tt = self._kept()
            allf = fuse_fit(self.fit, kp, zz, ss, tt, self.image_wh)
            sl = slice(len(zz) - n, len(zz))
            shared = None if allf.sigma_shared is None else allf.sigma_shared[sl]
            fused = FusedDepth(
                allf.z[sl], allf.sigma[sl], allf.source[sl], allf.z_ground[sl], allf.sigma_ground[sl],
                allf.scale[sl], allf.track_scales, shared,
            )  # fmt: skip
        for k, v in source_counts(fused.source).items():
            self.counts[k] += v
        return fused

    def entry(self, *, gravity: bool) -> dict:
        """:func:`scene_entry` of the fit in use (else the last attempt), the person-frames seen, per depth
        source, and after how many the calibration was made (None: never; 0: loaded or given); ``gravity``:
        whether the depth model takes an up direction."""
        fit = self.fit if self.fit is not None else self.last
        if fit is None:
            why = f"fewer than {self.every} person-frames (scene.stream_person_frames)"
            fit = SceneFit(None, "estimated", why, self.seen)
        up_given = self.given_up is not None
        out = scene_entry(fit, up_to_model=estimated_up_to_model(fit.calib, gravity, up_given))
        out["n_seen"] = self.seen
        out["depth_source"] = dict(self.counts)
        out["calibrated_after_person_frames"] = self.calibrated_after
        return out


# ---- dp-eval: people grouped by camera -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GroupedScenes:
    """Scene-aware depths of N people (``z``, ``sigma``, ``source``; the model's where a person has no
    camera or the camera no calibration), the camera of each (None: no group field), and per camera its
    name, :class:`SceneFit`, member indices and fused depths."""

    z: np.ndarray
    sigma: np.ndarray
    source: np.ndarray
    camera: list[str | None]
    cameras: list[tuple[str, SceneFit, np.ndarray, FusedDepth]]
    gravity: bool = False  # the depth model was run again with each camera's up (when precise enough)
    up_given: bool = False  # an up direction given for every camera
    up_from_lines: frozenset[str] = frozenset()  # cameras whose lines all gave one up direction


def lines_up(ups: np.ndarray | None) -> np.ndarray | None:
    """The up direction (3,) that every one of a camera's lines gives (``ups`` (n, 3), NaN rows = none),
    when all give one and each lies within :data:`~depth_pose.gravity.AGREE_DEG` of their mean; else None
    (the camera's up is estimated)."""
    if ups is None or len(ups) == 0:
        return None
    u = np.asarray(ups, np.float64)
    if not np.isfinite(u).all():
        return None
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    mean = u.mean(0)
    mean /= np.linalg.norm(mean)
    if float(np.min(u @ mean)) < math.cos(math.radians(AGREE_DEG)):
        return None
    return mean


def _same_K(K: np.ndarray) -> bool:
    return bool(np.allclose(K, K[:1], rtol=K_RTOL, atol=K_ATOL_PX))


def image_size(value: Any) -> tuple[int, int] | None:
    """``[W, H]`` positive integers -> (W, H); anything else None."""
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return int(value[0]), int(value[1])
    return None


def track_codes(values: Sequence[Any]) -> np.ndarray:
    """Per person, an int code of its track value (equal values, equal codes; None -> -1)."""
    codes: dict[tuple[str, Any], int] = {}
    out = np.full(len(values), -1, np.int64)
    for i, v in enumerate(values):
        k = _id_key(v)
        if k is not None:
            out[i] = codes.setdefault(k, len(codes))
    return out


def usable_id(v: Any) -> bool:
    """Whether a JSON value can name a camera or a track: not null, a list, a mapping or a non-finite
    number (NaN would otherwise pool every person it marks)."""
    return _id_key(v) is not None


def _id_key(v: Any) -> tuple[str, Any] | None:
    """A JSON id's identity: numbers by exact value (1 and 1.0 alike, 2**53 and 2**53 + 1 not), strings and
    booleans by type and value; None for no usable id (:func:`usable_id`)."""
    if v is None or isinstance(v, dict | list):
        return None
    if isinstance(v, bool | np.bool_):
        return ("bool", bool(v))
    if isinstance(v, numbers.Integral):
        return ("number", int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        return None if not math.isfinite(f) else ("number", int(f) if f.is_integer() else f)
    if isinstance(v, str):
        return ("str", str(v))
    return (type(v).__name__, v)


def _shown(key: tuple[str, Any]) -> str:
    kind, v = key
    if kind == "bool":
        return json.dumps(v)
    return repr(v) if kind == "number" and isinstance(v, float) else str(v)


def camera_names(groups: Sequence[Any]) -> list[str | None]:
    """Per person the name of its camera (None: no usable id): equal JSON values name one camera; values
    that print alike (``1`` and ``"1"``) stay apart, named with their kind (``1 (number)``, ``1 (str)``),
    with a ``#n`` suffix where even that is some other camera's name. Names are unique per camera."""
    keys = [_id_key(g) for g in groups]
    distinct = list(dict.fromkeys(k for k in keys if k is not None))
    count: dict[str, int] = {}
    for k in distinct:
        count[_shown(k)] = count.get(_shown(k), 0) + 1
    name = {k: _shown(k) for k in distinct if count[_shown(k)] == 1}  # plain names first: they are kept
    taken = set(name.values())
    for k in distinct:  # then the ambiguous ones, in order of first appearance
        if k in name:
            continue
        base = candidate = f"{_shown(k)} ({k[0]})"
        n = 1
        while candidate in taken:
            n += 1
            candidate = f"{base} #{n}"
        name[k] = candidate
        taken.add(candidate)
    return [None if k is None else name[k] for k in keys]


def calibrate_groups(
    keypoints_xyc: np.ndarray,
    K: np.ndarray,
    z: np.ndarray,
    sigma: np.ndarray,
    groups: Sequence[Any],
    tracks: np.ndarray | None = None,
    image_wh: Sequence[tuple[int, int] | None] | None = None,
    *,
    up: np.ndarray | None = None,
    height_m: float | None = None,
    repredict: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    torso_lines: bool = False,
    line_up: np.ndarray | None = None,
) -> GroupedScenes:
    """Calibrate every camera (people with the same ``groups`` value; None = no camera) and fuse its
    people's depths. ``K`` (N, 3, 3) must be one matrix per camera and ``image_wh`` one size (else that camera
    fails, or has no border test). ``tracks`` (N,) int, -1 = none (tracks are per camera). ``repredict(idx,
    up)``: the model's depths (z, sigma) of people ``idx`` with the calibration's up direction (models with a
    gravity input; only where :attr:`~depth_pose.scene.SceneCalibration.model_up` gives one), the fusion's
    starting point. ``line_up`` (N, 3): each line's own up direction (NaN rows = none); a camera whose lines
    all give one (:func:`lines_up`) is calibrated under it, as a given ``up`` (its height and floor
    measured)."""
    n = len(z)
    names = camera_names(groups)
    from_lines = set()
    tracks = np.full(n, -1, np.int64) if tracks is None else np.asarray(tracks, np.int64)
    sizes = list(image_wh) if image_wh is not None else [None] * n
    z_out, s_out = np.asarray(z, np.float64).copy(), np.asarray(sigma, np.float64).copy()
    src = np.full(n, SOURCE_MODEL, dtype="<U6")
    cameras = []
    members: dict[str, list[int]] = {}
    for i, g in enumerate(names):
        if g is not None:
            members.setdefault(g, []).append(i)
    for name, rows in members.items():
        idx = np.asarray(rows, np.int64)
        Kg = np.asarray(K, np.float64)[idx]
        wh_set = {sizes[i] for i in idx if sizes[i] is not None}
        wh = next(iter(wh_set)) if len(wh_set) == 1 else None
        cam_up = up
        if cam_up is None and line_up is not None:
            cam_up = lines_up(np.asarray(line_up)[idx])
            if cam_up is not None:
                from_lines.add(name)
        if not _same_K(Kg):
            fit = SceneFit(None, "estimated", "the lines of this camera give different K", len(idx))
        else:
            fit = fit_scene(
                keypoints_xyc[idx], Kg[0], z_out[idx], s_out[idx], tracks[idx], wh,
                up=cam_up, height_m=height_m, torso_lines=torso_lines,
            )  # fmt: skip
        zg, sg = z_out[idx], s_out[idx]
        if fit.calib is not None and fit.calib.model_up is not None and repredict is not None:
            zg, sg = repredict(idx, fit.calib.model_up)
        fused = fuse_fit(fit, keypoints_xyc[idx], zg, sg, tracks[idx], wh)
        z_out[idx], s_out[idx], src[idx] = fused.z, fused.sigma, fused.source
        cameras.append((name, fit, idx, fused))
    return GroupedScenes(
        z_out, s_out, src, names, cameras, gravity=repredict is not None, up_given=up is not None,
        up_from_lines=frozenset(from_lines),
    )  # fmt: skip


def _truth(values: Sequence[Any]) -> float | None:
    nums = [f for f in map(as_float, values) if math.isfinite(f)]
    return float(np.median(nums)) if nums else None


def _median_rel(z: np.ndarray, gt: np.ndarray) -> float | None:
    ok = np.isfinite(z) & np.isfinite(gt) & (gt > 0)
    return _num(np.median(np.abs(z[ok] / gt[ok] - 1.0))) if ok.any() else None


def scene_metrics(
    result: GroupedScenes,
    z_single: np.ndarray,
    gt: np.ndarray,
    truth: Mapping[str, Sequence[Any]] | None = None,
    group_field: str | None = None,
) -> dict:
    """``metrics.json["scene"]``: cameras per status, person-frames per depth source, single-frame and
    scene-aware metrics on everyone with ground truth (and on the people of calibrated cameras only), and per
    camera the estimate (:func:`scene_entry`), its error against the reported ``truth`` values (per person,
    e.g. the panoptic ``camera_pitch_deg``; the median of a camera's), and its people's median relative error
    single-frame and scene-aware."""
    gt = np.asarray(gt, np.float64)
    has = np.isfinite(gt)
    per_cam = []
    in_calibrated = np.zeros(len(gt), bool)
    for name, fit, idx, fused in result.cameras:
        given = result.up_given or name in result.up_from_lines
        to_model = estimated_up_to_model(fit.calib, result.gravity, given)
        e = {"camera": name, "n": len(idx), **scene_entry(fit, fused, up_to_model=to_model)}
        e["n_with_gt"] = int(has[idx].sum())
        e["median_rel_single"] = _median_rel(np.asarray(z_single)[idx], gt[idx])
        e["median_rel_scene"] = _median_rel(fused.z, gt[idx])
        if truth:
            t = {k: _truth([truth[k][i] for i in idx]) for k in TRUTH_KEYS if k in truth}
            e["truth"] = t
            est = {"pitch_deg": e["pitch_deg"], "roll_deg": e["roll_deg"], "height_m": e["height_m"]}
            e["error"] = {
                k: (_num(est[k] - v) if est[k] is not None and v is not None else None) for k, v in t.items()
            }
        if fit.status == CALIBRATED:
            in_calibrated[idx] = True
        per_cam.append(e)
    statuses = [e["status"] for e in per_cam]
    sel = has & in_calibrated
    return {
        "group_field": group_field,
        "n_cameras": len(per_cam),
        "n_calibrated": statuses.count(CALIBRATED),
        "n_up_only": statuses.count(UP_ONLY),
        "n_failed": statuses.count(FAILED),
        "n_without_camera": int(sum(c is None for c in result.camera)),
        "depth_source": source_counts(result.source),
        "single": depth_metrics(np.asarray(z_single)[has], gt[has]),
        "scene": depth_metrics(result.z[has], gt[has], result.sigma[has]),
        "calibrated_cameras": {
            "n": int(sel.sum()),
            "single": depth_metrics(np.asarray(z_single)[sel], gt[sel]),
            "scene": depth_metrics(result.z[sel], gt[sel], result.sigma[sel]),
        },
        "cameras": per_cam,
    }


def _f(x: Any, fmt: str = ".2f") -> str:
    return "–" if x is None else format(x, fmt)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def scene_markdown(m: Mapping[str, Any]) -> str:
    """The Markdown section of :func:`scene_metrics`."""
    parts = [
        f"## Scene self-calibration (cameras by `{m['group_field']}`)",
        "",
        f"- cameras: {m['n_cameras']} ({m['n_calibrated']} calibrated with a level floor, "
        f"{m['n_up_only']} up direction only, {m['n_failed']} not calibrated); "
        f"{m['n_without_camera']} people without a camera",
        "- depth sources: " + ", ".join(f"{k} {v}" for k, v in m["depth_source"].items()),
        *reasons(m["cameras"]),
        "",
        "| depths | n | ALE (m) | median rel. error |",
        "|---|---|---|---|",
    ]
    for label, d in (
        ("single-frame", m["single"]),
        ("scene-aware", m["scene"]),
        ("single-frame, calibrated cameras", m["calibrated_cameras"]["single"]),
        ("scene-aware, calibrated cameras", m["calibrated_cameras"]["scene"]),
    ):
        parts.append(f"| {label} | {d['n']} | {_f(d.get('ale_m'), '.3f')} | {_pct(d.get('median_rel'))} |")
    truth = any("truth" in e for e in m["cameras"])
    head = "| camera | n | status | pitch (°) | roll (°) | height (m) | person-frames up / floor |"
    rule = "|---|---|---|---|---|---|---|"
    if truth:
        head += " Δpitch | Δroll | Δheight |"
        rule += "---|---|---|"
    head += " median rel. single | scene | ground / track / model |"
    rule += "---|---|---|"
    parts += ["", head, rule]
    for e in m["cameras"]:
        row = (
            f"| {_cell(e['camera'])} | {e['n']} | {e['status']} | "
            f"{_pm(e['pitch_deg'], e['sigma_pitch_deg'])} | {_pm(e['roll_deg'], e['sigma_roll_deg'])} | "
            f"{_pm(e['height_m'], e['sigma_height_m'])} | "
            f"{e['n_up_inliers']} / {e['n_height_inliers']} |"
        )
        if truth:
            err = e.get("error", {})
            row += f" {_f(err.get('pitch_deg'), '+.1f')} | {_f(err.get('roll_deg'), '+.1f')} | "
            row += f"{_f(err.get('height_m'), '+.2f')} |"
        src = e.get("depth_source", {})
        row += (
            f" {_pct(e['median_rel_single'])} | {_pct(e['median_rel_scene'])} | "
            f"{src.get('ground', 0)} / {src.get('track', 0)} / {src.get('model', 0)} |"
        )
        parts.append(row)
    if truth:
        parts += ["", "Δ = estimate − the input's reported value (reported values are never used as input)."]
    return "\n".join(parts) + "\n"


def _cell(text: Any, n: int = 60) -> str:
    """A camera name as one Markdown table cell: no line breaks, ``|`` escaped, long names shortened."""
    t = " ".join(str(text).split())
    t = t if len(t) <= n else f"{t[: n - 3]}..."
    return t.replace("|", "\\|")


def reasons(cameras: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown bullets: why cameras were not calibrated (or have no level floor), with counts (numbers in the
    reasons replaced by N, parenthesised asides left out)."""
    out: dict[str, int] = {}
    for c in cameras:
        if c["status"] == CALIBRATED:
            continue
        why = re.sub(r" \([^()]*\)", "", str(c["why"] or c["planarity"] or "?"))  # asides differ by camera
        key = f"{c['status']}: {re.sub(r'[-+]?[0-9]+([.][0-9]+)?', 'N', why)}"
        out[key] = out.get(key, 0) + 1
    return [f"- {n} × {k}" for k, n in sorted(out.items(), key=lambda kv: -kv[1])]


def _pm(v: float | None, s: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" + (f" ± {s:.2f}" if s is not None else "")
