"""dp-predict: people's metric depth on images, folders, globs, videos, cameras and streams.

Per frame: YOLO pose (tracking on sequences) -> zoom into small people -> depth head, batched over all people
of the frame -> per-track smoothing (sequences) -> 3D position and ground point -> outputs.

3D position and ground point (``hip_xyz_m``, ``ground_xyz_m``, ``ground_from``:
:mod:`depth_pose.predict.positions`, the ground point along the camera's up direction when it is known, given
or self-calibrated): ``dist_m`` = the mid-hip's Euclidean distance, with ``sigma_dist_m = sigma * dist / z``
(the error lies along the ray); ``ground_dist_m`` is the norm of ``ground_xyz_m`` (KITTI's "bottom centre"
distance).

The camera's up direction (:mod:`depth_pose.gravity`; conventions in :mod:`depth_pose.geometry`), for
models with a gravity input: ``scene.pitch_deg`` / ``scene.roll_deg`` / ``scene.up_cam``, or top-level
``pitch_deg`` / ``roll_deg`` / ``up_cam`` of the calibration file (``intrinsics.calib``); both given must
agree within :data:`depth_pose.gravity.AGREE_DEG` degrees (else exit 2; the file's is used). One direction
for the whole run; every record carries the ``pitch_deg`` / ``roll_deg`` given (null when unknown),
``summary.json["gravity"]`` the rest.

Every record carries the depth model's ``status`` (:mod:`depth_pose.ranges`: ``ok``, ``out_of_range``,
``degenerate``, ``too_few_joints``, ``no_joints``; sigma is widened for all but ``ok``);
``summary.json["counts"]["status"]`` counts the records per status.

Scene self-calibration (:mod:`depth_pose.scene_commands`, :mod:`depth_pose.scene`), ``scene.calibrate``:
``auto`` (default) calibrates videos, cameras and streams (a fixed camera), not images; ``true`` also takes
all images of the run as one fixed camera; ``false`` never. Videos take two passes: detect and track every
frame, calibrate from all person-frames (up direction, camera height, is the floor level), then depth with
the estimated up direction (models with a gravity input, when none was given and the estimate is known
within 1°: :attr:`~depth_pose.scene.SceneCalibration.model_up`), fusion with ground contact and
per-track scales, smoothing, records and annotated frames (the video is decoded again). Cameras and streams
calibrate once ``scene.stream_person_frames`` person-frames have come (again after as many more while no
level floor was found) and fuse every later frame with the recent ones. ``scene.load=FILE`` (a calibration
saved by ``scene.save=FILE``; refused, exit 2, for another K or image size) or ``scene.height_m`` with the up
direction (``scene.pitch_deg`` ...) replace the estimate, from the first frame on (images too). A camera
that cannot be calibrated (too few upright people, a floor that is not one level plane) keeps single-frame
depths, with a warning. Records: ``z_m`` / ``sigma_m`` the final depth (scene-aware, smoothed on
sequences), ``z_raw_m`` / ``sigma_raw_m`` the same before smoothing, ``z_single_m`` / ``sigma_single_m`` the
depth model's single-frame depth, ``depth_source`` (``ground``, ``track``, ``model``);
``summary.json["scene"]["cameras"]`` each camera's estimate with uncertainties and counts.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from depth_pose.detect import Detections
from depth_pose.errors import InputError
from depth_pose.fileio import check_outputs, refuse_non_directory
from depth_pose.gravity import (
    AGREE_DEG,
    GravityInputError,
    angle_between,
    describe,
    pitch_roll_rows,
    scene_up,
)
from depth_pose.predict.intrinsics import IntrinsicsError
from depth_pose.predict.outputs import (
    RECORD_FILES,
    RecordWriter,
    VideoOut,
    Viewer,
    annotate,
    write_image_atomic,
    write_json_atomic,
)
from depth_pose.predict.positions import positions
from depth_pose.predict.sources import Item, SourceError, VideoSource, read_image, resolve_source
from depth_pose.predictor import DEFAULT_MODEL
from depth_pose.ranges import STATUSES, status_counts
from depth_pose.scene import SceneCalibration, SceneCalibrationError
from depth_pose.scene_commands import (
    SOURCES,
    SceneFit,
    StreamScene,
    estimated_up_to_model,
    fit_scene,
    fuse_fit,
    given_calibration,
    loaded_fit,
    predict_scene_options,
    scene_entry,
    scene_line,
    source_counts,
)

STAGES = ("detection", "zoom", "depth", "scene", "smoothing", "output")
SUMMARY = "summary.json"


class PredictError(InputError):
    """The run produced nothing usable (a single bad source, or every file of a folder failed)."""


def run_up(
    scene, calib_up: np.ndarray | None, calib_path: str | None
) -> tuple[np.ndarray | None, str | None]:
    """The run's up direction (3,) and where it came from (``scene``, ``calib:<path>``, both), or
    (None, None); :class:`GravityInputError` (exit 2) for a bad ``scene.*`` or a scene and a calibration that
    disagree."""
    up = scene_up(scene)
    if calib_up is None:
        return up, ("scene" if up is not None else None)
    if up is None:
        return calib_up, f"calib:{calib_path}"
    off = angle_between(up, calib_up)
    if off > AGREE_DEG:
        raise GravityInputError(
            f"scene.* gives up_cam {describe(up)} but calibration file '{calib_path}' gives "
            f"{describe(calib_up)}: they disagree by {off:.1f} degrees (more than {AGREE_DEG:g}); give one "
            "of them, or make them agree"
        )
    return calib_up, f"scene+calib:{calib_path}"  # they agree: the file's (measured) direction


def check_loaded_up(path: Path, up: np.ndarray, up_from: str | None) -> None:
    """A loaded scene calibration must agree with the up direction given (``scene.*`` or the calibration
    file): :class:`GravityInputError` (exit 2) otherwise."""
    loaded = SceneCalibration.load(path).up_cam
    off = angle_between(up, loaded)
    if off > AGREE_DEG:
        where = "scene.*" if up_from == "scene" else f"the up direction from {up_from}"
        raise GravityInputError(
            f"{where} gives up_cam {describe(up)} but scene.load='{path}' holds {describe(loaded)}: they "
            f"disagree by {off:.1f} degrees (more than {AGREE_DEG:g}); give one of them, or make them agree"
        )


def _reset_tracker(detector) -> None:
    """Forget ultralytics tracker state (a new video starts with fresh track ids)."""
    pred = getattr(getattr(detector, "model", None), "predictor", None)
    for tr in getattr(pred, "trackers", None) or []:
        tr.reset()


class Predictor:
    """Holds the models and per-run state; :meth:`frame` turns one image into per-person records."""

    def __init__(self, cfg: DictConfig, depth_model=None, detector=None) -> None:
        self.cfg = cfg
        if depth_model is None:
            from depth_pose.predictor import DepthPredictor

            depth_model = DepthPredictor.load(cfg.ckpt, device=cfg.device)
        self.depth = depth_model
        self.detector = detector if detector is not None else instantiate(cfg.detector)
        self.zoom = instantiate(cfg.zoom)
        # Zoom crops run on a separate YOLO instance: calling the tracking model on crops would feed them to
        # the tracker. Loaded up front (load time: docs/bench_predict.md) so its loading is not timed as zoom
        # work.
        self._zoom_detector = instantiate(cfg.detector) if self.zoom.enabled else None
        self.resolver = instantiate(cfg.intrinsics)
        calib = getattr(self.resolver, "calibration", None)
        self.up, self.up_from = run_up(
            cfg.get("scene"), getattr(calib, "up", None), getattr(calib, "path", None)
        )
        self.scene = predict_scene_options(cfg.get("scene"))
        if self.scene.load is not None and self.up is not None:
            check_loaded_up(self.scene.load, self.up, self.up_from)
        pitch, roll = pitch_roll_rows(self.up, 1)
        self.pitch_deg = round(float(pitch[0]), 3) if self.up is not None else None
        self.roll_deg = round(float(roll[0]), 3) if self.up is not None else None
        self.uses_gravity = bool(getattr(self.depth, "uses_gravity", False))
        self.uses_border = bool(getattr(self.depth, "uses_border", False))  # takes the frame's size
        if self.up is not None and not self.uses_gravity:
            warnings.warn(
                "the camera's up direction was given but the depth model does not use it (no gravity input): "
                "ignored",
                stacklevel=2,
            )
        self.smoother = instantiate(cfg.smoothing)
        self.kp_thr = float(cfg.keypoint_threshold)
        self.times = dict.fromkeys(STAGES, 0.0)
        self.zoom_uses = 0
        self.status_counts = dict.fromkeys(STATUSES, 0)
        self.source_counts = dict.fromkeys(SOURCES, 0)
        self.scene_entries: list[dict] = []
        self.saved: tuple[str, str] | None = None  # (path, camera) of scene.save

    @property
    def zoom_detector(self):
        if self._zoom_detector is None:
            self._zoom_detector = instantiate(self.cfg.detector)
        return self._zoom_detector

    def _timed(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.times[stage] += t1 - t0
        return t1

    def frame(
        self, image: np.ndarray, K: np.ndarray, *, track: bool, t: float, base: dict, scene=None
    ) -> list[dict]:
        """Detect (or track), zoom, predict depth (one batch), fuse with the live ``scene``
        (:class:`~depth_pose.scene_commands.StreamScene`), smooth and build the records of one frame."""
        dets, zoomed = self.detect(image, track=track)
        n = len(dets)
        if n == 0:
            return []
        known = None if scene is None else scene.up
        up = self.model_up(None if scene is None else scene.model_up)
        z1, s1, status = self.depth_of(dets.keypoints, K, up, (image.shape[1], image.shape[0]))
        ids = dets.track_ids if dets.track_ids is not None else np.full(n, -1, np.int64)
        fused = None
        if scene is not None:
            t0 = time.perf_counter()
            f = scene.add(dets.keypoints, z1, s1, ids)
            fused = (f.z, f.sigma, f.source, f.sigma_shared)
            self._timed("scene", t0)
        return self.finish(
            dets, zoomed, z1, s1, status, fused, K, base, track=track, t=t, up=self.known_up(known)
        )

    def model_up(self, estimated: np.ndarray | None) -> np.ndarray | None:
        """The up direction the depth model gets: the given one, else (gravity models) the scene's where it is
        precise enough (``estimated``: :attr:`~depth_pose.scene.SceneCalibration.model_up`)."""
        if self.up is not None or not self.uses_gravity:
            return self.up
        return estimated

    def up_to_model(self, calib: SceneCalibration | None) -> bool | None:
        """Whether the depth model ran with ``calib``'s estimated up (:func:`~depth_pose.scene_commands.
        estimated_up_to_model`)."""
        return estimated_up_to_model(calib, self.uses_gravity, self.up is not None)

    def known_up(self, estimated: np.ndarray | None) -> np.ndarray | None:
        """The camera's up direction as known (the records' pitch/roll): given, else estimated, else None."""
        return self.up if self.up is not None else estimated

    def depth_of(self, kp: np.ndarray, K: np.ndarray, up: np.ndarray | None, image_wh):
        """The depth model on person-frames (N, 17, 3) with K (3, 3) or (N, 3, 3) and the frame's size
        ``image_wh`` (2,) or (N, 2) pixels (where the frame's border is: border models): z, sigma, status
        (N,)."""
        t0 = time.perf_counter()
        n = len(kp)
        if n == 0:
            return np.zeros(0), np.zeros(0), np.zeros(0, dtype="<U32")
        up32 = None if up is None else np.asarray(up, np.float32)
        frame = {"image_wh": np.asarray(image_wh, np.float32)} if self.uses_border else {}
        pred = self.depth.predict(kp.astype(np.float32), np.asarray(K, np.float32), up=up32, **frame)
        z = np.asarray(pred.z_m, np.float64).reshape(n)
        s = np.asarray(pred.sigma_m, np.float64).reshape(n)
        status = np.asarray(getattr(pred, "status", np.full(n, STATUSES[0]))).astype("<U32").reshape(n)
        self._timed("depth", t0)
        return z, s, status

    def detect(self, image: np.ndarray, *, track: bool) -> tuple[Detections, np.ndarray]:
        """Detect (or track) the people of one image and zoom into the small ones; (detections, zoomed)."""
        t0 = time.perf_counter()
        if track:
            dets = self.detector.track(image, tracker=f"{self.cfg.tracking.tracker}.yaml")
        else:
            dets = self.detector(image)[0]
        t0 = self._timed("detection", t0)
        if (
            len(dets)
            and self.zoom.enabled
            and (dets.boxes[:, 3] - dets.boxes[:, 1]).min() < self.zoom.min_box_px
        ):
            dets, zoomed = self.zoom(image, dets, self.zoom_detector)
        else:
            zoomed = np.zeros(len(dets), bool)
        self.zoom_uses += int(zoomed.sum())
        self._timed("zoom", t0)
        return dets, zoomed

    def finish(
        self, dets: Detections, zoomed, z1, s1, status, fused, K, base, *, track: bool, t: float, up
    ) -> list[dict]:
        """Smooth (sequences) the scene-aware depths (``fused``: z, sigma, source and the calibration's shared
        part of sigma (N,) or None; None = the model's ``z1``, ``s1``) and build the records of one frame."""
        n = len(dets)
        ids = dets.track_ids if dets.track_ids is not None else np.full(n, -1, np.int64)
        z_raw, s_raw, source, s_shared = (z1, s1, np.full(n, "model"), None) if fused is None else fused
        t0 = time.perf_counter()
        if track:
            z, s = self.smoother(t, ids, z_raw, s_raw, s_shared)
        else:
            z, s = z_raw, s_raw
        self._timed("smoothing", t0)
        for k, v in status_counts(status).items():
            self.status_counts[k] = self.status_counts.get(k, 0) + v
        for k, v in source_counts(source).items():
            self.source_counts[k] += v
        extra = {"z_single": z1, "s_single": s1, "source": source, "up": up}
        return self._records(dets, zoomed, ids, z, s, z_raw, s_raw, K, base, status, extra)

    def _records(
        self, dets: Detections, zoomed, ids, z, s, z_raw, s_raw, K, base, status, extra
    ) -> list[dict]:
        hip, ground, rule = positions(dets.keypoints, dets.boxes, z, K, self.kp_thr, extra["up"])
        pitch, roll = pitch_roll_rows(extra["up"], 1)
        pitch_deg = round(float(pitch[0]), 3) if extra["up"] is not None else None
        roll_deg = round(float(roll[0]), 3) if extra["up"] is not None else None
        recs = []
        for i in range(len(dets)):
            dist = float(np.linalg.norm(hip[i]))
            recs.append(
                {
                    **base,
                    "person": i,
                    "track_id": int(ids[i]),
                    "box_xyxy": [round(float(v), 2) for v in dets.boxes[i]],
                    "box_score": round(float(dets.scores[i]), 4),
                    "keypoints_xyc": np.round(dets.keypoints[i].astype(np.float64), 3).tolist(),
                    "mean_kp_conf": round(float(dets.keypoints[i, :, 2].mean()), 4),
                    "zoomed": bool(zoomed[i]),
                    "z_m": float(z[i]),
                    "sigma_m": float(s[i]),
                    "z_raw_m": float(z_raw[i]),
                    "sigma_raw_m": float(s_raw[i]),
                    "z_single_m": float(extra["z_single"][i]),
                    "sigma_single_m": float(extra["s_single"][i]),
                    "depth_source": str(extra["source"][i]),
                    "status": str(status[i]),
                    "dist_m": dist,
                    "sigma_dist_m": float(s[i] * dist / z[i]) if z[i] > 0 else float("nan"),
                    "hip_xyz_m": [round(float(v), 4) for v in hip[i]],
                    "ground_xyz_m": [round(float(v), 4) for v in ground[i]],
                    "ground_dist_m": float(np.linalg.norm(ground[i])),
                    "ground_from": rule[i],
                    "pitch_deg": pitch_deg,
                    "roll_deg": roll_deg,
                }
            )
        return recs

    # ---- scene calibration (module docstring) ----------------------------------------------------------

    def scene_mode(self, item: Item) -> str:
        """``off``, ``batch`` (videos; images of one camera, pooled over the run) or ``online`` (cameras,
        streams)."""
        return scene_mode(self.scene, item, self.up is not None)

    def fixed_fit(self, K: np.ndarray, image_wh: tuple[int, int]) -> SceneFit | None:
        """A loaded (checked against ``K`` and the image size: exit 2 on a mismatch) or given calibration."""
        if self.scene.load is not None:
            return loaded_fit(self.scene.load, K, image_wh)
        if self.up is not None and self.scene.height_m is not None:
            return SceneFit(given_calibration(self.up, self.scene.height_m, K, image_wh), "given", None, 0)
        return None

    def save_fit(self, name: str, fit: SceneFit) -> None:
        """``scene.save``: write a new calibration (atomically); one camera per run."""
        path = self.scene.save
        if path is None or fit.calib is None or fit.origin.startswith("loaded:"):
            return
        if self.saved is not None and self.saved[1] != name:
            warnings.warn(
                f"scene.save='{path}' already holds the calibration of {self.saved[1]}; {name}'s is not "
                "saved",
                stacklevel=2,
            )
            return
        try:
            fit.calib.save(path)
        except SceneCalibrationError as e:  # an estimate out of range: the run's records are kept
            warnings.warn(str(e), stacklevel=2)
            return
        self.saved = (str(path), name)

    def scene_done(self, name: str, entry: dict, fit: SceneFit | None) -> None:
        """Keep a camera's summary entry; a warning when it could not be calibrated or saved."""
        entry = {"source": name, **entry}
        self.scene_entries.append(entry)
        if entry["status"] == "failed":
            warnings.warn(scene_line(name, entry), stacklevel=2)
        if fit is not None:
            self.save_fit(name, fit)
        if self.scene.save is not None and self.saved is None and entry["status"] == "failed":
            warnings.warn(f"scene.save='{self.scene.save}': {name} has no calibration to save", stacklevel=2)


def scene_mode(opts, item: Item, up_given: bool) -> str:
    """How ``item`` uses the scene calibration (see :meth:`Predictor.scene_mode`)."""
    if opts.calibrate == "false":
        return "off"
    if item.kind in ("camera", "stream"):
        return "online"
    if item.kind == "video":
        return "batch"
    fixed = opts.load is not None or (up_given and opts.height_m is not None)
    return "batch" if opts.calibrate == "true" or fixed else "off"


def _unique_name(used: set[str], name: str) -> str:
    stem, suffix, k = Path(name).stem, Path(name).suffix, 1
    out = name
    while out in used:
        out, k = f"{stem}_{k}{suffix}", k + 1
    used.add(out)
    return out


def check_paths(
    cfg: DictConfig, out: Path, items: list[Item], errors: list[dict], skipped: list[str]
) -> None:
    """``out`` is a folder (or not there yet) that is not, is not inside and does not contain the source
    folder, any listed source file, the calibration file or the model; its fixed files are no FIFOs/devices.
    :class:`~depth_pose.fileio.OutputPathError` (exit 2) before any work otherwise."""
    refuse_non_directory(out, "out")
    inputs: list[tuple[str, str | Path]] = []
    src = str(cfg.source).strip()
    if not src.isdigit() and Path(src).expanduser().is_dir():
        inputs.append(("source", Path(src).expanduser()))
    inputs += [("source", str(it.ref)) for it in items if it.kind in ("image", "video")]
    inputs += [("source", e["source"]) for e in errors] + [("source", f) for f in skipped]
    calib = (cfg.get("intrinsics") or {}).get("calib")
    model = cfg.get("ckpt") or DEFAULT_MODEL  # the shipped model is an input too
    for key, path in (("intrinsics.calib", calib), ("ckpt", model)):
        if path:
            path = Path(str(path)).expanduser()
            inputs.append((key, path))
            if path.suffix == ".safetensors":
                inputs.append((key, path.with_suffix(".json")))
    sopts = predict_scene_options(cfg.get("scene"))
    outputs: list[tuple[str, str | Path]] = [("out", out)]
    outputs += [("out", out / name) for name in (SUMMARY, *RECORD_FILES)]
    if sopts.load is not None:
        inputs.append(("scene.load", sopts.load))
    if sopts.save is not None:
        if sopts.save.is_dir():
            raise PredictError(f"scene.save='{sopts.save}' is a folder; give a file name such as scene.json")
        outputs.append(("scene.save", sopts.save))
    check_outputs(outputs, inputs)


def check_scene_save(cfg: DictConfig, items: list[Item]) -> None:
    """``scene.save`` writes one camera's calibration: refuse (exit 2, before any work) a run that calibrates
    no camera or several (videos, cameras, streams: one each; the images of a run: one)."""
    opts = predict_scene_options(cfg.get("scene"))
    if opts.save is None:
        return
    up_given = scene_up(cfg.get("scene")) is not None
    modes = [scene_mode(opts, it, up_given) for it in items]
    n = sum(m != "off" for m, it in zip(modes, items) if it.is_sequence)
    n += any(m == "batch" for m, it in zip(modes, items) if not it.is_sequence)
    if n == 0:
        raise PredictError(
            f"scene.save='{opts.save}': this run calibrates no camera (scene.calibrate={opts.calibrate}; "
            "images are calibrated only with scene.calibrate=true, all of them as one camera)"
        )
    if n > 1:
        raise PredictError(
            f"scene.save='{opts.save}' holds one camera's calibration, but this run calibrates {n} (each "
            "video, camera or stream is its own): run them one at a time"
        )


def predict(cfg: DictConfig, depth_model=None, detector=None) -> dict:
    """Run prediction over ``cfg.source`` and write outputs to ``cfg.out``; returns (and writes) the summary.

    Raises :class:`SourceError` for an unusable source, :class:`PredictError` when nothing could be processed
    (summary.json is written first, listing the errors).
    """
    out = Path(str(cfg.out)).expanduser()
    mf = cfg.get("max_frames")
    if mf is not None and (isinstance(mf, bool) or not isinstance(mf, int) or mf <= 0):
        raise PredictError(f"max_frames must be a positive integer or null (all frames), got {mf!r}")
    scene_up(cfg.get("scene"))  # a bad scene.* value: exit 2 before any work
    sopts = predict_scene_options(cfg.get("scene"))
    if sopts.load is not None:
        SceneCalibration.load(sopts.load)  # a missing or malformed file: exit 2 before any work
    items, errors, skipped = resolve_source(cfg.source)  # SourceError for a missing/unsupported single source
    n_listed = len(items) + len(errors)
    check_paths(cfg, out, items, errors, skipped)
    check_scene_save(cfg, items)
    up_given = scene_up(cfg.get("scene")) is not None
    if sopts.height_m is not None and all(scene_mode(sopts, it, up_given) == "off" for it in items):
        warnings.warn(
            f"scene.height_m={sopts.height_m:g} is not used: images are calibrated only with the up "
            "direction (scene.pitch_deg / scene.roll_deg) or scene.calibrate=true",
            stacklevel=1,
        )
    t_load = time.perf_counter()
    P = Predictor(cfg, depth_model=depth_model, detector=detector)  # its refusals: before out exists
    load_s = time.perf_counter() - t_load
    out.mkdir(parents=True, exist_ok=True)
    viewer = Viewer(bool(cfg.show))
    writer = RecordWriter(out)
    used_names: set[str] = set()
    n_frames = n_people = 0
    per_source: list[dict] = []
    track_ids: set[tuple[str, int]] = set()
    t_run = time.perf_counter()
    stop = interrupted = finished = False
    multi = len(items) > 1 or bool(errors)
    bar = tqdm(items, desc="dp-predict", unit="file", disable=not (cfg.progress and multi), leave=False)
    pooled = [it for it in items if not it.is_sequence and P.scene_mode(it) == "batch"]
    try:
        for item in bar:
            if stop:
                break
            if any(item is it for it in pooled):  # the run's images as one camera: all at the first of them
                if item is not pooled[0]:
                    continue
                infos: list[dict] = []
                try:
                    stop = _run_image_pool(P, pooled, cfg, out, used_names, writer, viewer, errors, infos)
                except KeyboardInterrupt:  # the images written so far stay in infos
                    interrupted = stop = True
                for info in infos:
                    n_frames += info["frames"]
                    n_people += info["people"]
                    per_source.append(info)
                continue
            info: dict = {"source": str(item.ref), "kind": item.kind, "frames": 0, "people": 0}
            try:
                if item.is_sequence:
                    stop = _run_sequence(P, item, cfg, out, used_names, writer, viewer, info, track_ids)
                else:
                    stop = _run_image(P, item, cfg, out, used_names, writer, viewer, info)
            except (SourceError, IntrinsicsError) as e:
                errors.append({"source": str(item.ref), "error": str(e)})
                warnings.warn(str(e), stacklevel=1)
                continue
            except KeyboardInterrupt:  # Ctrl-C on a camera/stream: keep what was done, write the summary
                interrupted = stop = True
            n_frames += info["frames"]
            n_people += info["people"]
            per_source.append(info)
        finished = True
    finally:  # a failed run (a late bad input: exit 2; a bug) leaves an earlier run's records as they were,
        # and so does one stopped by Ctrl-C before its first frame was written (a video's first pass)
        if finished and not (interrupted and n_frames == 0):
            writer.close()
        else:
            writer.discard()
        viewer.close()
    run_s = time.perf_counter() - t_run
    busy = sum(P.times.values())
    summary = {
        "source": str(cfg.source),
        "out": str(out),
        "counts": {
            "sources": n_listed,
            "processed": len(per_source),
            "failed": len(errors),
            "frames": n_frames,
            "people": n_people,
            "records": writer.count,
            "tracks": len(track_ids),
            "zoom_uses": P.zoom_uses,
            "status": P.status_counts,
            "depth_source": P.source_counts,
        },
        "fps": n_frames / run_s if run_s > 0 else None,
        "time_s": {"load": load_s, "run": run_s, **P.times},
        "time_share": {k: (v / busy if busy > 0 else 0.0) for k, v in P.times.items()},
        "depth_ms_per_frame": 1000 * P.times["depth"] / max(n_frames, 1),
        "detection_ms_per_frame": 1000 * P.times["detection"] / max(n_frames, 1),
        "sources": per_source,
        "errors": errors,
        "skipped": skipped,
        "interrupted": interrupted,
        "model_uses_border": P.uses_border,  # takes the frame's size (always known to dp-predict)
        "gravity": {
            "model_uses_gravity": P.uses_gravity,
            "from": P.up_from,
            "pitch_deg": P.pitch_deg,
            "roll_deg": P.roll_deg,
            "up_cam": None if P.up is None else [round(float(v), 6) for v in P.up],
        },
        "scene": {
            "calibrate": P.scene.calibrate,
            "height_m": P.scene.height_m,
            "load": None if P.scene.load is None else str(P.scene.load),
            "save": None if P.scene.save is None else str(P.scene.save),
            "saved": P.saved is not None,
            "cameras": P.scene_entries,
        },
        "config": OmegaConf.to_container(cfg, resolve=False),
    }
    if interrupted and n_frames == 0:
        return summary  # nothing written: an earlier run's summary stays beside its records
    write_json_atomic(out / SUMMARY, summary)
    if not per_source and not interrupted:
        raise PredictError(
            "nothing processed: "
            + "; ".join(e["error"] for e in errors[:5])
            + (" ..." if len(errors) > 5 else "")
        )
    return summary


def _run_image(P: Predictor, item: Item, cfg, out: Path, used, writer, viewer, info) -> bool:
    img = read_image(item.ref)
    H, W = img.shape[:2]
    K, k_src = P.resolver(W, H, item.ref)
    info.update(size=[W, H], K=K.tolist(), K_source=k_src)
    recs = P.frame(
        img, K, track=False, t=0.0, base={"source": item.name, "frame": 0, "t_s": 0.0, "K_source": k_src}
    )
    t0 = time.perf_counter()
    for r in recs:
        writer.write(r)
    info["frames"], info["people"] = 1, len(recs)
    keep_going = True
    if cfg.save or viewer.enabled:
        vis = annotate(img, recs)
        if cfg.save:
            write_image_atomic(out / _unique_name(used, Path(item.name).stem + ".jpg"), vis)
        keep_going = viewer.show(vis)
    P._timed("output", t0)
    return not keep_going


def _emit(P: Predictor, recs: list[dict], image, writer, video, viewer, info, track_ids, name: str) -> bool:
    """Write one frame's records (and annotated frame); True when the user asked to stop."""
    t0 = time.perf_counter()
    for r in recs:
        writer.write(r)
        if r["track_id"] >= 0:
            track_ids.add((name, r["track_id"]))
    info["frames"] += 1
    info["people"] += len(recs)
    stop = False
    if image is not None and (video is not None or viewer.enabled):
        vis = annotate(image, recs)
        if video is not None:
            video.write(vis)
        stop = not viewer.show(vis)
    P._timed("output", t0)
    return stop


def _run_sequence(P: Predictor, item: Item, cfg, out: Path, used, writer, viewer, info, track_ids) -> bool:
    src = VideoSource(item, max_frames=cfg.max_frames)
    W, H = src.size
    K, k_src = P.resolver(W, H, None)
    info.update(size=[W, H], K=K.tolist(), K_source=k_src, fps_in=src.fps)
    mode = P.scene_mode(item)
    fixed = P.fixed_fit(K, (W, H)) if mode != "off" else None  # a mismatched scene.load: exit 2
    track = bool(cfg.tracking.enabled)
    _reset_tracker(P.detector)
    P.smoother.reset()
    video = (
        VideoOut(out / _unique_name(used, Path(item.name).stem + "_pred.mp4"), src.fps, (W, H))
        if cfg.save
        else None
    )
    scene = None
    if mode == "online":
        scene = StreamScene(
            K,
            (W, H),
            P.scene.stream_person_frames,
            fixed=fixed,
            height_m=P.scene.height_m,
            up=P.up,
            on_fit=lambda fit: P.save_fit(item.name, fit),
        )
    stop = False
    try:
        if mode == "batch":
            return _run_video_batch(
                P, item, src, K, k_src, fixed, cfg, writer, video, viewer, info, track_ids
            )
        for fr in tqdm(
            src, total=src.total, desc=item.name, unit="frame", disable=not cfg.progress, leave=False
        ):
            base = {"source": item.name, "frame": fr.index, "t_s": round(fr.t, 4), "K_source": k_src}
            recs = P.frame(fr.image, K, track=track, t=fr.t, base=base, scene=scene)
            if _emit(P, recs, fr.image, writer, video, viewer, info, track_ids, item.name):
                stop = True
                break
    finally:
        if video is not None:
            video.close()
        if scene is not None:
            # a given mount is never fitted (on_fit): saved here, as a video's is (a loaded one is not)
            P.scene_done(item.name, scene.entry(gravity=P.uses_gravity), fixed)
        info["tracks"] = len({tid for name, tid in track_ids if name == item.name})
    return stop


def _run_video_batch(
    P: Predictor, item: Item, src, K, k_src, fixed, cfg, writer, video, viewer, info, track_ids
):
    """A video file in two passes (module docstring): detect and track every frame; calibrate from all of
    them (unless ``fixed``); depth, fusion and smoothing; records and annotated frames (decoded again)."""
    W, H = src.size
    track = bool(cfg.tracking.enabled)
    frames = []
    for fr in tqdm(src, total=src.total, desc=item.name, unit="frame", disable=not cfg.progress, leave=False):
        dets, zoomed = P.detect(fr.image, track=track)
        frames.append((fr.index, fr.t, dets, zoomed))
    kp = np.concatenate([d.keypoints for _, _, d, _ in frames]) if frames else np.zeros((0, 17, 3))
    ids = np.concatenate(
        [d.track_ids if d.track_ids is not None else np.full(len(d), -1, np.int64) for _, _, d, _ in frames]
        or [np.zeros(0, np.int64)]
    )
    z, s, status = P.depth_of(kp, K, P.model_up(None), (W, H))
    t0 = time.perf_counter()
    fit = fixed or fit_scene(kp, K, z, s, ids, (W, H), up=P.up, height_m=P.scene.height_m, fps=src.fps)
    estimated = None if fit.calib is None else fit.calib.up_cam
    P._timed("scene", t0)
    up = P.model_up(None if fit.calib is None else fit.calib.model_up)
    if up is not P.up:  # a gravity model without a given up: again with the scene's
        z, s, status = P.depth_of(kp, K, up, (W, H))
    t0 = time.perf_counter()
    fused = fuse_fit(fit, kp, z, s, ids, (W, H))
    P._timed("scene", t0)
    P.scene_done(item.name, scene_entry(fit, fused, up_to_model=P.up_to_model(fit.calib)), fit)
    redraw = video is not None or viewer.enabled
    again = iter(VideoSource(item, max_frames=cfg.max_frames)) if redraw else None
    known = P.known_up(estimated)
    off = 0
    for index, t, dets, zoomed in frames:
        n = len(dets)
        sl = slice(off, off + n)
        off += n
        image = next(again, None) if again is not None else None
        base = {"source": item.name, "frame": index, "t_s": round(t, 4), "K_source": k_src}
        recs = []
        if n:
            shared = None if fused.sigma_shared is None else fused.sigma_shared[sl]
            part = (fused.z[sl], fused.sigma[sl], fused.source[sl], shared)
            recs = P.finish(dets, zoomed, z[sl], s[sl], status[sl], part, K, base, track=track, t=t, up=known)
        img = None if image is None else image.image
        if _emit(P, recs, img, writer, video, viewer, info, track_ids, item.name):
            return True
    return False


def _run_image_pool(
    P: Predictor, items: list[Item], cfg, out: Path, used, writer, viewer, errors, infos: list[dict]
) -> bool:
    """The run's images as one fixed camera (``scene.calibrate=true``, or a loaded / given calibration):
    detect in all, calibrate from all of them (one K and image size needed; a loaded or given calibration
    applies to each size), fuse (no tracks) and write records and annotated images. Each image written adds
    its info to ``infos`` (the caller's: kept when a Ctrl-C stops the rest). Returns stop."""
    done = []
    for item in items:
        info: dict = {"source": str(item.ref), "kind": item.kind, "frames": 0, "people": 0}
        try:
            img = read_image(item.ref)
            H, W = img.shape[:2]
            K, k_src = P.resolver(W, H, item.ref)
        except (SourceError, IntrinsicsError) as e:
            errors.append({"source": str(item.ref), "error": str(e)})
            warnings.warn(str(e), stacklevel=1)
            continue
        info.update(size=[W, H], K=K.tolist(), K_source=k_src)
        dets, zoomed = P.detect(img, track=False)
        done.append((item, info, np.asarray(K, np.float64), k_src, (W, H), dets, zoomed))
    if not done:
        return False
    counts = [len(d[5]) for d in done]
    kp = np.concatenate([d[5].keypoints for d in done])
    K_rows = np.concatenate([np.broadcast_to(d[2], (len(d[5]), 3, 3)) for d in done])
    wh_rows = np.concatenate([np.broadcast_to(np.asarray(d[4], np.float32), (len(d[5]), 2)) for d in done])
    z, s, status = P.depth_of(kp, K_rows, P.model_up(None), wh_rows)
    cams: dict[tuple, list[int]] = {}
    for k, d in enumerate(done):
        cams.setdefault((np.round(d[2], 6).tobytes(), d[4]), []).append(k)
    if P.scene.save is not None and len(cams) > 1:  # known only once the images are read: before any record
        first = [done[m[0]] for m in cams.values()]  # one image of each camera, named with its K and size
        which = "; ".join(
            f"'{Path(str(d[0].ref)).name}': fx {d[2][0, 0]:.6g}, cx {d[2][0, 2]:.6g}, cy {d[2][1, 2]:.6g}, "
            f"{d[4][0]}x{d[4][1]}"
            for d in first[:3]
        )
        raise PredictError(
            f"scene.save='{P.scene.save}' holds one camera's calibration, but the run's images come from "
            f"{len(cams)} cameras (another K or image size: {which}{' ...' if len(first) > 3 else ''}): run "
            "them one at a time"
        )
    row_of = np.repeat(np.arange(len(done)), counts)
    zf, sf, src = z.copy(), s.copy(), np.full(len(z), "model", dtype="<U6")
    known = np.full((len(z), 3), np.nan)
    for members in cams.values():
        K0, size = done[members[0]][2], done[members[0]][4]
        rows = np.flatnonzero(np.isin(row_of, members))
        name = "images" if len(cams) == 1 else f"images {size[0]}x{size[1]}"
        t0 = time.perf_counter()
        fit = P.fixed_fit(K0, size)
        if fit is None and len(cams) > 1:
            why = "the images differ in intrinsics or size: not one camera"
            fit = SceneFit(None, "estimated", why, len(rows))
        elif fit is None:
            fit = fit_scene(kp[rows], K0, z[rows], s[rows], None, size, up=P.up, height_m=P.scene.height_m)
        estimated = None if fit.calib is None else fit.calib.up_cam
        P._timed("scene", t0)
        up = P.model_up(None if fit.calib is None else fit.calib.model_up)
        if up is not P.up and len(rows):
            z[rows], s[rows], status[rows] = P.depth_of(kp[rows], K0, up, size)
        t0 = time.perf_counter()
        fused = fuse_fit(fit, kp[rows], z[rows], s[rows], None, size)
        zf[rows], sf[rows], src[rows] = fused.z, fused.sigma, fused.source
        P._timed("scene", t0)
        k_up = P.known_up(estimated)
        if k_up is not None:
            known[rows] = k_up
        P.scene_done(name, scene_entry(fit, fused, up_to_model=P.up_to_model(fit.calib)), fit)
    off, stop = 0, False
    for (item, info, K, k_src, _, dets, zoomed), n in zip(done, counts):
        sl = slice(off, off + n)
        off += n
        base = {"source": item.name, "frame": 0, "t_s": 0.0, "K_source": k_src}
        recs = []
        if n:
            up = known[off - n] if np.isfinite(known[off - n]).all() else None
            part = (zf[sl], sf[sl], src[sl], None)
            recs = P.finish(dets, zoomed, z[sl], s[sl], status[sl], part, K, base, track=False, t=0.0, up=up)
        t0 = time.perf_counter()
        for r in recs:
            writer.write(r)
        info["frames"], info["people"] = 1, len(recs)
        infos.append(info)
        if not stop and (cfg.save or viewer.enabled):
            try:
                vis = annotate(read_image(item.ref), recs)
            except SourceError as e:  # changed since the first pass
                warnings.warn(str(e), stacklevel=1)
            else:
                if cfg.save:
                    write_image_atomic(out / _unique_name(used, Path(item.name).stem + ".jpg"), vis)
                stop = not viewer.show(vis)
        P._timed("output", t0)
    return stop
