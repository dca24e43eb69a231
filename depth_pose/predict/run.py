"""dp-predict: people's metric depth on images, folders, globs, videos, cameras and streams.

Per frame: YOLO pose (tracking on sequences) -> zoom into small people -> depth head, batched over all people
of the frame -> per-track smoothing (sequences) -> 3D position and ground point -> outputs.

3D position and ground point (camera frame, x right, y down, z forward, metres):
* ``hip_xyz_m``: the mid-hip pixel (mean of the seen hips; the box centre when no hip is seen) back-projected
  at the predicted depth z (:func:`depth_pose.geometry.backproject`). ``dist_m`` = its Euclidean norm, with
  ``sigma_dist_m = sigma * dist / z`` (the error lies along the ray).
* ``ground_xyz_m``: with a seen ankle, the mid-ankle pixel back-projected at the same depth z (an upright
  person's feet and hips lie at about the same depth), moved ``ANKLE_HEIGHT_M`` down; without one, the hip
  point moved ``HIP_HEIGHT_M`` down. "Down" is the camera's +y axis: the camera is assumed level (no pitch,
  no roll); a tilted camera shifts the no-ankle fallback by ~HIP_HEIGHT_M * sin(tilt). ``ground_from`` says
  which rule was used; ``ground_dist_m`` is the norm of ``ground_xyz_m`` (KITTI's "bottom centre" distance).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from depth_pose import geometry
from depth_pose.detect import Detections
from depth_pose.errors import InputError
from depth_pose.fileio import check_outputs, refuse_non_directory
from depth_pose.keypoints import L_ANKLE, L_HIP, R_ANKLE, R_HIP
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
from depth_pose.predict.sources import Item, SourceError, VideoSource, read_image, resolve_source

HIP_HEIGHT_M = 0.93  # mid-hip height above the floor of a standing adult (Anny adults: ~0.85-1.0 m)
ANKLE_HEIGHT_M = 0.08  # ankle keypoint height above the floor
STAGES = ("detection", "zoom", "depth", "smoothing", "output")
SUMMARY = "summary.json"


class PredictError(InputError):
    """The run produced nothing usable (a single bad source, or every file of a folder failed)."""


def _mid_seen(kp: np.ndarray, a: int, b: int, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Per person: mean pixel of the seen keypoints among (a, b) and whether any was seen."""
    seen = kp[:, [a, b], 2] >= thr
    w = seen.astype(np.float64)
    xy = (kp[:, [a, b], :2] * w[..., None]).sum(1) / np.maximum(w.sum(1), 1)[:, None]
    return xy, seen.any(1)


def positions(
    kp: np.ndarray, boxes: np.ndarray, z: np.ndarray, K: np.ndarray, thr: float
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mid-hip 3D points (N, 3), ground points (N, 3) and the ground rule used, per person (module
    docstring)."""
    hip_px, hip_seen = _mid_seen(kp, L_HIP, R_HIP, thr)
    box_c = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)
    hip_px = np.where(hip_seen[:, None], hip_px, box_c)
    ank_px, ank_seen = _mid_seen(kp, L_ANKLE, R_ANKLE, thr)
    Kt = torch.as_tensor(K, dtype=torch.float64)
    zt = torch.as_tensor(z, dtype=torch.float64)
    hip = geometry.backproject(torch.as_tensor(hip_px, dtype=torch.float64), zt, Kt).numpy()
    ank = geometry.backproject(torch.as_tensor(ank_px, dtype=torch.float64), zt, Kt).numpy()
    down = np.array([0.0, 1.0, 0.0])
    ground = np.where(ank_seen[:, None], ank + ANKLE_HEIGHT_M * down, hip + HIP_HEIGHT_M * down)
    rule = ["ankles" if s else "hip" for s in ank_seen]
    return hip, ground, rule


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
        self.smoother = instantiate(cfg.smoothing)
        self.kp_thr = float(cfg.keypoint_threshold)
        self.times = dict.fromkeys(STAGES, 0.0)
        self.zoom_uses = 0

    @property
    def zoom_detector(self):
        if self._zoom_detector is None:
            self._zoom_detector = instantiate(self.cfg.detector)
        return self._zoom_detector

    def _timed(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.times[stage] += t1 - t0
        return t1

    def frame(self, image: np.ndarray, K: np.ndarray, *, track: bool, t: float, base: dict) -> list[dict]:
        """Detect (or track), zoom, predict depth (one batch), smooth and build the records of one frame."""
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
        t0 = self._timed("zoom", t0)
        n = len(dets)
        if n == 0:
            return []
        pred = self.depth.predict(dets.keypoints.astype(np.float32), K.astype(np.float32))
        z_raw = np.asarray(pred.z_m, np.float64).reshape(n)
        s_raw = np.asarray(pred.sigma_m, np.float64).reshape(n)
        t0 = self._timed("depth", t0)
        ids = dets.track_ids if dets.track_ids is not None else np.full(n, -1, np.int64)
        if track:
            z, s = self.smoother(t, ids, z_raw, s_raw)
        else:
            z, s = z_raw, s_raw
        t0 = self._timed("smoothing", t0)
        return self._records(dets, zoomed, ids, z, s, z_raw, s_raw, K, base)

    def _records(self, dets: Detections, zoomed, ids, z, s, z_raw, s_raw, K, base) -> list[dict]:
        hip, ground, rule = positions(dets.keypoints, dets.boxes, z, K, self.kp_thr)
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
                    "dist_m": dist,
                    "sigma_dist_m": float(s[i] * dist / z[i]) if z[i] > 0 else float("nan"),
                    "hip_xyz_m": [round(float(v), 4) for v in hip[i]],
                    "ground_xyz_m": [round(float(v), 4) for v in ground[i]],
                    "ground_dist_m": float(np.linalg.norm(ground[i])),
                    "ground_from": rule[i],
                }
            )
        return recs


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
    for key, path in (("intrinsics.calib", calib), ("ckpt", cfg.get("ckpt"))):
        if path:
            path = Path(str(path)).expanduser()
            inputs.append((key, path))
            if path.suffix == ".safetensors":
                inputs.append((key, path.with_suffix(".json")))
    check_outputs([("out", out)] + [("out", out / name) for name in (SUMMARY, *RECORD_FILES)], inputs)


def predict(cfg: DictConfig, depth_model=None, detector=None) -> dict:
    """Run prediction over ``cfg.source`` and write outputs to ``cfg.out``; returns (and writes) the summary.

    Raises :class:`SourceError` for an unusable source, :class:`PredictError` when nothing could be processed
    (summary.json is written first, listing the errors).
    """
    out = Path(str(cfg.out)).expanduser()
    mf = cfg.get("max_frames")
    if mf is not None and (isinstance(mf, bool) or not isinstance(mf, int) or mf <= 0):
        raise PredictError(f"max_frames must be a positive integer or null (all frames), got {mf!r}")
    items, errors, skipped = resolve_source(cfg.source)  # SourceError for a missing/unsupported single source
    n_listed = len(items) + len(errors)
    check_paths(cfg, out, items, errors, skipped)
    out.mkdir(parents=True, exist_ok=True)
    t_load = time.perf_counter()
    P = Predictor(cfg, depth_model=depth_model, detector=detector)
    load_s = time.perf_counter() - t_load
    viewer = Viewer(bool(cfg.show))
    writer = RecordWriter(out)
    used_names: set[str] = set()
    n_frames = n_people = 0
    per_source: list[dict] = []
    track_ids: set[tuple[str, int]] = set()
    t_run = time.perf_counter()
    stop = interrupted = False
    multi = len(items) > 1 or bool(errors)
    bar = tqdm(items, desc="dp-predict", unit="file", disable=not (cfg.progress and multi), leave=False)
    try:
        for item in bar:
            if stop:
                break
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
    finally:
        writer.close()
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
            "tracks": len(track_ids),
            "zoom_uses": P.zoom_uses,
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
        "config": OmegaConf.to_container(cfg, resolve=False),
    }
    write_json_atomic(out / SUMMARY, summary)
    if not per_source:
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


def _run_sequence(P: Predictor, item: Item, cfg, out: Path, used, writer, viewer, info, track_ids) -> bool:
    src = VideoSource(item, max_frames=cfg.max_frames)
    W, H = src.size
    K, k_src = P.resolver(W, H, None)
    info.update(size=[W, H], K=K.tolist(), K_source=k_src, fps_in=src.fps)
    track = bool(cfg.tracking.enabled)
    _reset_tracker(P.detector)
    P.smoother.reset()
    video = (
        VideoOut(out / _unique_name(used, Path(item.name).stem + "_pred.mp4"), src.fps, (W, H))
        if cfg.save
        else None
    )
    stop = False
    try:
        for fr in tqdm(
            src, total=src.total, desc=item.name, unit="frame", disable=not cfg.progress, leave=False
        ):
            base = {"source": item.name, "frame": fr.index, "t_s": round(fr.t, 4), "K_source": k_src}
            recs = P.frame(fr.image, K, track=track, t=fr.t, base=base)
            t0 = time.perf_counter()
            for r in recs:
                writer.write(r)
                if r["track_id"] >= 0:
                    track_ids.add((item.name, r["track_id"]))
            info["frames"] += 1
            info["people"] += len(recs)
            if video is not None or viewer.enabled:
                vis = annotate(fr.image, recs)
                if video is not None:
                    video.write(vis)
                if not viewer.show(vis):
                    stop = True
            P._timed("output", t0)
            if stop:
                break
    finally:
        if video is not None:
            video.close()
    info["tracks"] = len({tid for name, tid in track_ids if name == item.name})
    return stop
