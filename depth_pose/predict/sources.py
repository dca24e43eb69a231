"""Input sources for dp-predict (ultralytics' ``source=`` word): image, folder, glob, video, camera, stream.

:func:`resolve_source` turns the ``source`` string into a list of :class:`Item` (one per image file, video
file, camera or stream). Opening/decoding happens lazily in :func:`read_image` / :func:`iter_video`, which
raise :class:`SourceError` naming the bad input, so one bad file of a folder can be reported and skipped.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from depth_pose.errors import InputError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm", ".heic"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".ts", ".gif", ".asf"}
# Metadata that commonly sits beside images (calibration, ground truth, notes): skipped in folders, not
# errors.
SIDECAR_EXTS = {".json", ".yaml", ".yml", ".xml", ".csv", ".txt", ".md"}
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "tcp://", "udp://")


class SourceError(InputError):
    """A source that cannot be read (names it and says why)."""


@dataclass
class Item:
    """One thing to process: kind is image | video | camera | stream; ``ref`` is the path, index or URL."""

    kind: str
    ref: str | int
    name: str

    @property
    def is_sequence(self) -> bool:
        return self.kind in ("video", "camera", "stream")


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8
    index: int  # frame number within its item
    t: float  # seconds since the start of the item (video: index / fps; camera/stream: wall clock)


def _item_for_file(path: Path) -> Item:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return Item("image", str(path), path.name)
    if ext in VIDEO_EXTS:
        return Item("video", str(path), path.name)
    raise SourceError(
        f"source '{path}': unsupported file extension '{ext or '(none)'}' "
        f"(images: {', '.join(sorted(IMAGE_EXTS))}; videos: {', '.join(sorted(VIDEO_EXTS))})"
    )


def resolve_source(source: str | int) -> tuple[list[Item], list[dict], list[str]]:
    """Items to process, per-file errors found while listing (unsupported files inside a folder/glob) and
    skipped sidecar files (``SIDECAR_EXTS``: calibration/ground-truth/notes beside the images).

    A single source that cannot be used at all (missing path, unsupported extension, empty folder) raises
    :class:`SourceError`.
    """
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return [Item("camera", int(source), f"camera{int(source)}")], [], []
    src = str(source).strip()
    if not src:
        raise SourceError("source is empty: give an image, folder, glob, video, camera index or stream URL")
    if src.lower().startswith(STREAM_PREFIXES):
        name = src.split("://", 1)[1].replace("/", "_")[:60] or "stream"
        return [Item("stream", src, name)], [], []
    path = Path(src).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        origin = f"folder '{path}'"
    elif any(ch in src for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        origin = f"glob '{src}'"
    elif path.exists():
        if not path.is_file():
            raise SourceError(f"source '{path}' is not a regular file")
        return [_item_for_file(path)], [], []
    else:
        raise SourceError(f"source '{path}' does not exist")
    items, errors, skipped = [], [], []
    for f in files:
        if f.suffix.lower() in SIDECAR_EXTS:
            skipped.append(str(f))
            continue
        try:
            items.append(_item_for_file(f))
        except SourceError as e:
            errors.append({"source": str(f), "error": str(e)})
    if not items:
        raise SourceError(
            f"{origin}: no image or video files found "
            f"({len(errors)} unsupported, {len(skipped)} sidecar files)"
        )
    return items, errors, skipped


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 image (EXIF orientation applied, as cv2 does) or :class:`SourceError`."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"image '{path}' does not exist")
    if path.stat().st_size == 0:
        raise SourceError(f"image '{path}' is empty (0 bytes)")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise SourceError(f"image '{path}' cannot be decoded (corrupt or not an image)")
    return img


class VideoSource:
    """Frames of a video file, camera or stream, opened eagerly so a bad source fails before any output."""

    def __init__(self, item: Item, max_frames: int | None = None) -> None:
        self.item, self.max_frames = item, max_frames
        if item.kind == "video":
            p = Path(str(item.ref))
            if not p.is_file():
                raise SourceError(f"video '{p}' does not exist")
            if p.stat().st_size == 0:
                raise SourceError(f"video '{p}' is empty (0 bytes)")
        self.cap = cv2.VideoCapture(item.ref if item.kind == "camera" else str(item.ref))
        if not self.cap.isOpened():
            raise SourceError(
                f"{item.kind} '{item.ref}' cannot be opened (missing device, bad URL or unreadable file)"
            )
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            raise SourceError(f"{item.kind} '{item.ref}' has no readable frame (corrupt or empty)")
        self._first = first
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 30.0
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = n if item.kind == "video" and n > 0 else None
        if self.total and max_frames:
            self.total = min(self.total, max_frames)
        elif max_frames and item.kind != "video":
            self.total = max_frames
        self.size = (first.shape[1], first.shape[0])

    def __iter__(self) -> Iterator[Frame]:
        t0 = time.perf_counter()
        i, img = 0, self._first
        try:
            while img is not None:
                t = i / self.fps if self.item.kind == "video" else time.perf_counter() - t0
                yield Frame(img, i, t)
                i += 1
                if self.max_frames and i >= self.max_frames:
                    break
                ok, img = self.cap.read()
                if not ok:
                    break
        finally:
            self.cap.release()
