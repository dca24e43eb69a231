"""Frame truncation (issue 19): people cut by the frame, as on phone frames with the legs cut off.

After the camera has placed the person, a share of rows gets a smaller image: the same camera with a smaller
sensor window (:func:`crop_cameras`: new ``img_w`` / ``img_h``, ``cx`` / ``cy`` shifted by the window's
origin), so the projection of every joint stays exact and joints outside the window become unseen
(``gt_visible`` from :func:`generation.project.observe`). One edge of the window goes through the person:
bottom most often, then the sides, the top rarest (``edge_weights``); the cut level is drawn across the
person's keypoint extent in the image (``bottom``: the fraction of the extent kept, measured from the far
side, e.g. 0.2 = cut at the chest, 1.0 = at the feet, > 1 below them). A cut that would leave fewer than
``min_visible_keypoints`` joints in the window, or a window smaller than ``min_size_px``, is not made (the
row keeps its full image), so the camera sampler's minimum-visible-joints rule keeps its meaning.

How a detector reports the cut-off joints (clamped onto the border) is the noise model's business
(:class:`generation.noise.DetectorNoise`, ``border_clamp_prob``). ``generation/render/framing.py`` is a
different thing: how the render path frames a person in its render.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
from torch import Tensor

from depth_pose import geometry
from generation.project import inside_planar
from generation.types import Cameras, PosedBodies

EDGES = ("bottom", "left", "right", "top")
BOTTOM, LEFT, RIGHT, TOP = range(4)


def crop_cameras(cams: Cameras, x0: Tensor, y0: Tensor, w: Tensor, h: Tensor) -> Cameras:
    """``cams`` with the sensor window ``[x0, x0 + w) x [y0, y0 + h)`` of each row's image (integer pixels):
    the principal point moves by ``-(x0, y0)``, the image size becomes ``(w, h)``, the horizontal field of
    view follows the new width. Every camera ray keeps its direction; a pixel ``(u, v)`` becomes
    ``(u - x0, v - y0)``."""
    K = geometry.transform_intrinsics(cams.K, 1.0, -torch.stack((x0, y0), 1).to(cams.K.dtype))
    w, h = w.to(cams.img_w.dtype), h.to(cams.img_h.dtype)
    return replace(cams, K=K, img_w=w, img_h=h, hfov_deg=geometry.hfov_from_intrinsics(K, w.to(K.dtype)))


def shift_pixels(px: Tensor, x0: Tensor, y0: Tensor) -> Tensor:
    """Pixels ``px`` (B, N, 2) in the window starting at ``(x0, y0)`` (B,): a (B, N, 2) view of planar
    storage, as the projections of :mod:`generation.project`."""
    pp = geometry.planar(px)
    return (pp - torch.stack((x0, y0)).to(pp.dtype)[:, None]).permute(2, 1, 0)


class FramingCut:
    """Cuts the frame through the person for a ``share`` of rows (module docstring); ``share=0``: off (no
    random numbers drawn, the data unchanged). Ranges are fractions of the person's keypoint extent kept."""

    def __init__(
        self,
        share: float = 0.0,
        edge_weights: Mapping[str, float] | None = None,
        bottom: Sequence[float] = (0.2, 1.05),
        side: Sequence[float] = (0.3, 1.05),
        top: Sequence[float] = (0.5, 1.05),
        min_visible_keypoints: int = 6,
        min_size_px: int = 32,
    ) -> None:
        self.share = float(share)
        weights = dict(edge_weights or {"bottom": 0.6, "left": 0.15, "right": 0.15, "top": 0.1})
        unknown = set(weights) - set(EDGES)
        if unknown:
            raise ValueError(f"framing_cut.edge_weights: unknown edges {sorted(unknown)} (known: {EDGES})")
        self.edge_weights = torch.tensor([float(weights.get(e, 0.0)) for e in EDGES])
        self.ranges = {
            "bottom": _pair(bottom, "bottom"),
            "side": _pair(side, "side"),
            "top": _pair(top, "top"),
        }
        self.min_visible = int(min_visible_keypoints)
        self.min_size = int(min_size_px)
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"framing_cut.share must be in [0, 1], got {self.share}")
        if (self.edge_weights < 0).any() or (self.share > 0 and self.edge_weights.sum() <= 0):
            raise ValueError("framing_cut.edge_weights must be >= 0 and not all zero")
        if not 0 <= self.min_visible <= 17:
            raise ValueError(f"framing_cut.min_visible_keypoints must be in [0, 17], got {self.min_visible}")
        if self.min_size < 1:
            raise ValueError(f"framing_cut.min_size_px must be >= 1, got {self.min_size}")

    @property
    def enabled(self) -> bool:
        return self.share > 0

    def __call__(
        self,
        posed: PosedBodies,
        cams: Cameras,
        projection: tuple[Tensor, Tensor] | None,
        generator: torch.Generator,
    ) -> tuple[Cameras, tuple[Tensor, Tensor]]:
        """Cropped cameras and the projection ``(keypoints_cam, pixels)`` (B, 17, 3) / (B, 17, 2) in them
        (computed here when ``projection`` is None)."""
        if projection is None:
            kc, pp = geometry.world_to_pixels_planar(
                geometry.planar(posed.keypoints.to(cams.R.dtype)), cams.R, cams.t, cams.K
            )
            projection = (kc.permute(2, 1, 0), pp.permute(2, 1, 0))
        pp = geometry.planar(projection[1])  # (2, 17, B)
        B, dev = pp.shape[2], pp.device
        s = torch.rand(3, B, generator=generator, device=dev, dtype=pp.dtype)
        probs = self.edge_weights.to(dev, pp.dtype)
        edge = torch.searchsorted(probs.cumsum(0) / probs.sum(), s[1].contiguous(), right=True).clamp_max(3)
        lo = torch.tensor([self.ranges[k][0] for k in ("bottom", "side", "side", "top")], device=dev)
        hi = torch.tensor([self.ranges[k][1] for k in ("bottom", "side", "side", "top")], device=dev)
        keep = lo[edge] + (hi[edge] - lo[edge]) * s[2]
        x0, y0, w, h = cut_window(pp, cams.img_w, cams.img_h, edge, keep)
        inside = inside_planar(pp - torch.stack((x0, y0)).to(pp.dtype)[:, None], w, h).sum(0)
        ok = (s[0] < self.share) & (inside >= self.min_visible) & (w >= self.min_size) & (h >= self.min_size)
        x0, y0 = torch.where(ok, x0, 0), torch.where(ok, y0, 0)
        w, h = torch.where(ok, w, cams.img_w), torch.where(ok, h, cams.img_h)
        return crop_cameras(cams, x0, y0, w, h), (projection[0], shift_pixels(projection[1], x0, y0))


def cut_window(
    pp: Tensor, img_w: Tensor, img_h: Tensor, edge: Tensor, keep: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x0, y0, w, h)`` (long, (B,)): the window of each image whose edge ``edge`` (:data:`EDGES` index)
    keeps the fraction ``keep`` of the person's keypoint extent (planar pixels ``pp`` (2, 17, B), NaN =
    behind the camera), measured from the opposite side; joints beyond the edge fall outside the window.
    The window never grows past the image."""
    lo = torch.nan_to_num(pp, nan=math.inf).amin(1)  # (2, B)
    hi = torch.nan_to_num(pp, nan=-math.inf).amax(1)
    lo, hi = torch.where(hi >= lo, lo, 0.0), torch.where(hi >= lo, hi, 0.0)
    ext = hi - lo
    W, H = img_w.to(pp.dtype), img_h.to(pp.dtype)
    zero = torch.zeros_like(W)
    bottom = torch.minimum((lo[1] + keep * ext[1]).floor().clamp_min(0), H)  # new height
    right = torch.minimum((lo[0] + keep * ext[0]).floor().clamp_min(0), W)  # new width
    left = torch.minimum((hi[0] - keep * ext[0]).floor().add(1).clamp_min(0), W)  # new x0
    top = torch.minimum((hi[1] - keep * ext[1]).floor().add(1).clamp_min(0), H)  # new y0
    x0 = torch.where(edge == LEFT, left, zero)
    y0 = torch.where(edge == TOP, top, zero)
    w = torch.where(edge == RIGHT, right, W) - x0
    h = torch.where(edge == BOTTOM, bottom, H) - y0
    return x0.long(), y0.long(), w.long(), h.long()


def _pair(v: Sequence[float], name: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in v)
    if not 0.0 <= lo <= hi:
        raise ValueError(f"framing_cut.{name} must be [min, max] with 0 <= min <= max, got {[lo, hi]}")
    return lo, hi
