"""Outputs of dp-predict: annotated frames, JSONL/CSV records, video writer, live window; all written
atomically."""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

from depth_pose.fileio import atomic_write, atomic_write_text, refuse_non_regular
from depth_pose.jsonvalues import json_safe
from depth_pose.keypoints import SKELETON

RECORD_FILES = ("predictions.jsonl", "predictions.csv")  # written into ``out`` by RecordWriter
CSV_FIELDS = (
    "source", "frame", "t_s", "person", "track_id", "box_x1", "box_y1", "box_x2", "box_y2", "box_score",
    "z_m", "sigma_m", "z_raw_m", "sigma_raw_m", "z_single_m", "sigma_single_m", "depth_source", "status",
    "dist_m", "sigma_dist_m",
    "ground_x_m", "ground_y_m", "ground_z_m", "ground_dist_m", "ground_from",
    "hip_x_m", "hip_y_m", "hip_z_m", "mean_kp_conf", "zoomed", "K_source", "pitch_deg", "roll_deg",
)  # fmt: skip


def distance_colour(d: float, near: float = 2.0, far: float = 20.0) -> tuple[int, int, int]:
    """BGR colour by distance: red (near) -> yellow -> green -> cyan -> blue (far), log-spaced."""
    if not np.isfinite(d):
        return (128, 128, 128)
    x = float(np.clip((np.log(max(d, 1e-3)) - np.log(near)) / (np.log(far) - np.log(near)), 0, 1))
    hue = int(120 * x)  # OpenCV hue 0..180: 0 red, 30 yellow, 60 green, 90 cyan, 120 blue
    bgr = cv2.cvtColor(np.uint8([[[hue, 255, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def annotate(image: np.ndarray, records: list[dict], kp_thr: float = 0.3) -> np.ndarray:
    """Draw box, skeleton and a "z ± sigma m" label per person, coloured by distance (the status after it
    when not ``ok``)."""
    out = image.copy()
    H = out.shape[0]
    thick = max(1, round(H / 500))
    font = max(0.4, H / 1400)
    for r in records:
        col = distance_colour(r["dist_m"])
        x1, y1, x2, y2 = (int(round(v)) for v in r["box_xyxy"])
        cv2.rectangle(out, (x1, y1), (x2, y2), col, thick)
        kp = np.asarray(r["keypoints_xyc"], np.float32)
        for a, b in SKELETON:
            if kp[a, 2] >= kp_thr and kp[b, 2] >= kp_thr:
                cv2.line(
                    out,
                    tuple(int(v) for v in kp[a, :2]),
                    tuple(int(v) for v in kp[b, :2]),
                    col,
                    thick,
                    cv2.LINE_AA,
                )
        for x, y, c in kp:
            if c >= kp_thr:
                cv2.circle(out, (int(x), int(y)), thick + 1, (255, 255, 255), -1, cv2.LINE_AA)
        label = f"{r['z_m']:.1f} \u00b1 {r['sigma_m']:.1f} m"
        if r.get("track_id", -1) >= 0:
            label = f"#{r['track_id']} " + label
        if r.get("zoomed"):
            label += " z"
        if r.get("status", "ok") != "ok":
            label += f" [{r['status']}]"
        # OpenCV's Hershey fonts have no "±": draw "+-" and keep the Unicode label in the records.
        text = label.replace("\u00b1", "+-")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = max(th + base, y1 - 3)
        lx = max(0, min(x1, out.shape[1] - tw - 2))
        cv2.rectangle(out, (lx, ty - th - base), (lx + tw + 2, ty + 1), col, -1)
        cv2.putText(
            out, text, (lx + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA
        )
    return out


def write_image_atomic(path: Path, image: np.ndarray) -> None:
    def _write(tmp: str) -> None:
        if not cv2.imwrite(tmp, image):
            raise OSError(f"cannot write image '{path}'")

    atomic_write(path, _write, suffix=path.suffix)


def write_json_atomic(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n")


class RecordWriter:
    """predictions.jsonl (one line per person per frame) and predictions.csv, renamed into place on
    :meth:`close` (or dropped by :meth:`discard`)."""

    def __init__(self, out_dir: Path) -> None:
        self.paths = tuple(out_dir / name for name in RECORD_FILES)
        for p in self.paths:
            refuse_non_regular(p, "out")  # renamed over on close: never onto a FIFO/device
        self.tmps = tuple(p.with_name(f".{p.name}.tmp") for p in self.paths)
        self.jsonl = open(self.tmps[0], "w")  # noqa: SIM115 - closed in close()
        self.csv_file = open(self.tmps[1], "w", newline="")  # noqa: SIM115
        self.csv = csv.DictWriter(self.csv_file, fieldnames=CSV_FIELDS, extrasaction="ignore")
        self.csv.writeheader()
        self.count = 0

    def write(self, rec: dict) -> None:
        self.jsonl.write(json.dumps(json_safe(rec), allow_nan=False) + "\n")
        flat = dict(rec)
        flat["box_x1"], flat["box_y1"], flat["box_x2"], flat["box_y2"] = rec["box_xyxy"]
        flat["ground_x_m"], flat["ground_y_m"], flat["ground_z_m"] = rec["ground_xyz_m"]
        flat["hip_x_m"], flat["hip_y_m"], flat["hip_z_m"] = rec["hip_xyz_m"]
        self.csv.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in flat.items()})
        self.count += 1

    def close(self) -> None:
        for f in (self.jsonl, self.csv_file):
            f.close()
        for tmp, path in zip(self.tmps, self.paths):
            os.replace(tmp, path)

    def discard(self) -> None:
        """A failed run: drop what was written, leave the files of an earlier run as they were."""
        for f in (self.jsonl, self.csv_file):
            f.close()
        for tmp in self.tmps:
            tmp.unlink(missing_ok=True)


class VideoOut:
    """Annotated video (mp4v) written to a temporary name and renamed on close (when it holds a frame: a run
    stopped before its first leaves an earlier run's video as it was)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        refuse_non_regular(path, "out")  # renamed over on close: never onto a FIFO/device
        self.tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            raise OSError(f"cannot open video writer for '{path}'")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()
        if self.frames:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def display_available() -> bool:
    """True when a window can plausibly be opened (X11/Wayland on Linux; always on macOS/Windows)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Viewer:
    """``show=true`` live window; disables itself with one warning when there is no display or no GUI
    backend."""

    def __init__(self, enabled: bool, title: str = "dp-predict") -> None:
        self.title = title
        self.enabled = enabled and display_available()
        if enabled and not self.enabled:
            warnings.warn(
                "show=true but no display is available (DISPLAY unset): not showing frames", stacklevel=2
            )

    def show(self, frame: np.ndarray) -> bool:
        """Show a frame; False when the user pressed q/Esc (stop)."""
        if not self.enabled:
            return True
        try:
            cv2.imshow(self.title, frame)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as e:
            warnings.warn(
                f"show=true but OpenCV cannot open a window ({str(e).splitlines()[0]}): not showing",
                stacklevel=2,
            )
            self.enabled = False
            return True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self.enabled:
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass
