"""The downscale trick: one render -> several samples of smaller people, with exact labels.

A render of ``R x R`` pixels with intrinsics ``K`` is resized by ``s`` (``cv2.INTER_AREA``) and pasted at an
integer pixel ``offset`` of a canvas. The pasted image is exactly the image of a camera with the SAME centre
and rotation and intrinsics ``K' = geometry.transform_intrinsics(K, s, offset)`` (focal ``s f``): the person
looks smaller because the focal length shrank, not because they moved. The stored sample is therefore exact:
the keypoints are the exact projection under ``K'`` (``geometry.transform_pixels``), and the target depth is
the unchanged camera z. (Moving the person to depth ``z / s`` would only approximately give this image:
perspective differs.) ``s`` is rounded so that ``s R`` is an integer number of pixels; the rounded ``s`` is
the one stored.

Tiles go onto canvases by :func:`pack`: ``single`` = one tile per canvas of the render size (what a camera of
that size would see, the rest filled grey), ``mosaic`` = shelf-packed onto square canvases of the detector's
input size, so one YOLO pass labels many small people at their native pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from depth_pose import geometry

FILL = 114  # grey, the letterbox colour of ultralytics


def exact_scale(s: float, size: int) -> tuple[float, int]:
    """The scale actually applied to a ``size``-pixel square image, and the resized side in pixels."""
    n = max(1, int(round(s * size)))
    return n / size, n


def resize(img: np.ndarray, s: float) -> tuple[np.ndarray, float]:
    """Square image resized by (the pixel-exact version of) ``s`` with INTER_AREA; returns (image,
    s_exact)."""
    if img.shape[0] != img.shape[1]:
        raise ValueError(f"downscale expects square renders, got {img.shape[:2]}")
    se, n = exact_scale(s, img.shape[0])
    if n == img.shape[0]:
        return img, 1.0
    interp = cv2.INTER_AREA if se < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (n, n), interpolation=interp), se


def scaled_intrinsics(K: np.ndarray, s: float, offset: tuple[int, int]) -> np.ndarray:
    """``geometry.transform_intrinsics`` for numpy (3, 3)."""
    return geometry.transform_intrinsics(torch.as_tensor(K, dtype=torch.float64), s, offset).numpy()


def scaled_pixels(px: np.ndarray, s: float, offset: tuple[int, int]) -> np.ndarray:
    """``geometry.transform_pixels`` for numpy (N, 2)."""
    return geometry.transform_pixels(torch.as_tensor(px, dtype=torch.float64), s, offset).numpy()


@dataclass
class Tile:
    """One downscaled render: image, intrinsics of the tile's own pixel grid, the sample key, the exact
    scale."""

    image: np.ndarray
    K: np.ndarray
    key: int
    scale: float


@dataclass
class Canvas:
    """An image for the detector and, per sample key, where its tile sits (offset) and its intrinsics
    there."""

    image: np.ndarray
    keys: list[int] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    K: list[np.ndarray] = field(default_factory=list)


def pack(
    tiles: list[Tile], mode: str, canvas_size: int, rng: np.random.Generator | None = None
) -> list[Canvas]:
    """Place tiles on canvases (see module docstring). ``single``: one tile per ``canvas_size`` canvas at a
    random integer offset (centred without ``rng``); ``mosaic``: shelf packing, largest tiles first."""
    if mode not in ("single", "mosaic"):
        raise ValueError(f"render.packing must be single|mosaic, got {mode!r}")
    out: list[Canvas] = []

    def new_canvas() -> Canvas:
        c = Canvas(np.full((canvas_size, canvas_size, 3), FILL, np.uint8))
        out.append(c)
        return c

    def put(c: Canvas, t: Tile, x: int, y: int) -> None:
        n = t.image.shape[0]
        c.image[y : y + n, x : x + n] = t.image
        c.keys.append(t.key)
        c.offsets.append((x, y))
        c.sizes.append(n)
        c.K.append(scaled_intrinsics(t.K, 1.0, (x, y)))

    for t in tiles:
        if t.image.shape[0] > canvas_size:
            raise ValueError(f"tile of {t.image.shape[0]} px does not fit a {canvas_size} px canvas")
    if mode == "single":
        for t in tiles:
            room = canvas_size - t.image.shape[0]
            x, y = (
                (int(rng.integers(0, room + 1)), int(rng.integers(0, room + 1)))
                if rng is not None
                else (room // 2,) * 2
            )
            put(new_canvas(), t, x, y)
        return out
    c, x, y, shelf = None, 0, 0, 0
    for t in sorted(tiles, key=lambda t: -t.image.shape[0]):
        n = t.image.shape[0]
        if c is None or x + n > canvas_size:
            x, y, shelf = 0, y + shelf, 0
        if c is None or y + n > canvas_size:
            c, x, y, shelf = new_canvas(), 0, 0, 0
        put(c, t, x, y)
        x, shelf = x + n, max(shelf, n)
    return out


def make_tiles(render: np.ndarray, K: np.ndarray, scales: list[float], keys: list[int]) -> list[Tile]:
    """The downscaled copies of one render (one per scale), with their intrinsics."""
    tiles = []
    for s, key in zip(scales, keys):
        img, se = resize(render, s)
        tiles.append(Tile(img, scaled_intrinsics(K, se, (0, 0)), key, se))
    return tiles
