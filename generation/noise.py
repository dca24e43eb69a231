"""Detector-noise model: turns exact projections into what a 2D pose detector would report.

Per joint: Gaussian pixel jitter with ``sigma = max(floor_px, rel_sigma * joint_scale[j] * size * m)`` where
``size`` is the person's keypoint-box extent in pixels and ``m`` a per-detection log-normal quality factor, plus
heavy-tailed outliers; missed joints (outside the image or self-occluded -> unseen; random drops; an occluder
hiding the bottom or one side of the person; more drops as the person gets small, face joints first);
occasional left/right swaps of one pair or the whole body. Unseen joints follow one of two patterns, both
present in the training data (share ``forced_complete_share``):

* YOLO-like: confidence in ``[0, unseen_conf_max)``; coordinates NaN (share ``nan_share``) or the noisy
  position clipped to the image.
* OpenPifPaf forced-complete-like (the real KITTI set): confidence ~0.01 and a guessed position (the true one
  plus a large error, clipped to the image).

The model only sees ``confidence >= visibility_threshold``; visible joints get plausible confidences above it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from depth_pose.keypoints import FLIP_INDEX, NUM_KEYPOINTS
from generation.project import exact_detections
from generation.types import Cameras, Observations

# Relative jitter per joint (COCO order): face precise, hips/ankles loose (detectors disagree most there).
DEFAULT_JOINT_SCALE = (0.6, 0.5, 0.5, 0.7, 0.7, 1.0, 1.0, 1.1, 1.1, 1.2, 1.2, 1.6, 1.6, 1.2, 1.2, 1.4, 1.4)
# How much more likely each joint is dropped when the person is small (face and wrists first).
DEFAULT_SMALL_DROP_WEIGHT = (1.5, 1.6, 1.6, 1.2, 1.2, 0.2, 0.2, 0.8, 0.8, 1.2, 1.2, 0.2, 0.2, 0.6, 0.6, 0.9, 0.9)
_PAIRS = torch.tensor([(i, FLIP_INDEX[i]) for i in range(NUM_KEYPOINTS) if FLIP_INDEX[i] > i])  # (8, 2)


class DetectorNoise:
    """Callable ``(obs, generator) -> det_xyc (B, 17, 3)``; ``enabled=False`` returns the exact projection."""

    def __init__(
        self,
        name: str = "yolo_like",
        enabled: bool = True,
        visibility_threshold: float = 0.1,
        rel_sigma: float = 0.012,
        floor_px: float = 0.8,
        joint_scale: Sequence[float] = DEFAULT_JOINT_SCALE,
        quality_log_std: float = 0.4,
        outlier_prob: float = 0.02,
        outlier_scale: float = 6.0,
        drop_prob: float = 0.01,
        occluder_prob: float = 0.05,
        small_px: float = 80.0,
        small_drop_max: float = 0.45,
        small_drop_weight: Sequence[float] = DEFAULT_SMALL_DROP_WEIGHT,
        swap_prob: float = 0.02,
        flip_prob: float = 0.01,
        forced_complete_share: float = 0.4,
        nan_share: float = 0.3,
        guess_rel_sigma: float = 0.12,
        visible_conf_min: float = 0.25,
        visible_conf_max: float = 0.99,
        unseen_conf_max: float = 0.05,
        forced_conf: float = 0.01,
    ) -> None:
        self.name, self.enabled = name, bool(enabled)
        self.threshold = float(visibility_threshold)
        self.rel_sigma, self.floor_px = float(rel_sigma), float(floor_px)
        self.joint_scale = torch.tensor(list(joint_scale), dtype=torch.float32)
        self.quality_log_std = float(quality_log_std)
        self.outlier_prob, self.outlier_scale = float(outlier_prob), float(outlier_scale)
        self.drop_prob, self.occluder_prob = float(drop_prob), float(occluder_prob)
        self.small_px, self.small_drop_max = float(small_px), float(small_drop_max)
        self.small_drop_weight = torch.tensor(list(small_drop_weight), dtype=torch.float32)
        self.swap_prob, self.flip_prob = float(swap_prob), float(flip_prob)
        self.forced_share, self.nan_share = float(forced_complete_share), float(nan_share)
        self.guess_rel_sigma = float(guess_rel_sigma)
        self.vis_conf = (float(visible_conf_min), float(visible_conf_max))
        self.unseen_conf_max, self.forced_conf = float(unseen_conf_max), float(forced_conf)
        self._validate()

    def _validate(self) -> None:
        for key in ("joint_scale", "small_drop_weight"):
            v = getattr(self, key)
            if v.shape != (NUM_KEYPOINTS,) or (v < 0).any():
                raise ValueError(f"noise.{key} must be {NUM_KEYPOINTS} non-negative values, got {v.tolist()}")
        probs = ("outlier_prob", "drop_prob", "occluder_prob", "swap_prob", "flip_prob", "forced_share",
                 "nan_share", "small_drop_max")
        for key in probs:
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"noise.{key} must be a probability in [0, 1], got {getattr(self, key)}")
        if min(self.rel_sigma, self.floor_px, self.guess_rel_sigma, self.quality_log_std) < 0:
            raise ValueError("noise: sigmas must be >= 0")
        t = self.threshold
        if not (t < self.vis_conf[0] <= self.vis_conf[1] <= 1.0):
            raise ValueError(f"noise: need visibility_threshold ({t}) < visible_conf_min <= visible_conf_max <= 1")
        if not (0.0 <= self.forced_conf < t and 0.0 < self.unseen_conf_max <= t):
            raise ValueError(f"noise: unseen confidences (forced_conf, unseen_conf_max) must be below the threshold {t}")

    def __call__(self, obs: Observations, generator: torch.Generator, cameras: Cameras | None = None) -> Tensor:
        """Detector-like ``(B, 17, 3)`` keypoints for ``obs``; ``cameras`` (row-aligned) bounds guessed positions
        to the image.

        Works on component planes ((2, B, 17) pixels: contiguous per-coordinate ops, ~2x faster than the
        interleaved layout on CPU); the result is a (B, 17, 3) view of (3, B, 17) storage.
        """
        px, vis = obs.gt_px, obs.gt_visible
        if not self.enabled:
            return exact_detections(px, vis)
        g, dev, dt = generator, px.device, px.dtype
        B, J = vis.shape
        rand = lambda *s: torch.rand(*s, generator=g, device=dev, dtype=dt)  # noqa: E731
        pxp = px.permute(2, 0, 1).contiguous()  # (2, B, J); free when px is already planar (world_to_pixels)
        # Person size in pixels: keypoint box extent (NaN-safe: points behind the camera count as 0).
        pxf = torch.nan_to_num(pxp, nan=0.0)
        (u_lo, u_hi), (v_lo, v_hi) = torch.aminmax(pxf[0], dim=1), torch.aminmax(pxf[1], dim=1)
        lo_uv, hi_uv = torch.stack((u_lo, v_lo)), torch.stack((u_hi, v_hi))  # (2, B)
        ext = hi_uv - lo_uv
        size = torch.maximum(ext[0], ext[1]).clamp_(1.0, 1e5)
        # Random numbers: 2 normals + 2 uniforms per joint, each used by mutually exclusive branches.
        nrm = torch.randn(2, B, J, generator=g, device=dev, dtype=dt)
        u = rand(2, B, J)
        u0, u1 = u[0], u[1]  # u0: outlier (u0 < p) | drop (u0 >= 1 - p); u1: confidence | NaN choice
        s = rand(B, 6)  # per detection: quality, occluder x3, forced pattern, (swaps drawn below)
        # Pixel jitter: per-detection log-normal quality, per-joint scale, heavy-tailed outliers.
        quality = torch.exp(self.quality_log_std * math.sqrt(2.0) * torch.erfinv(2 * s[:, :1] - 1).clamp(-6, 6))
        sigma = ((self.rel_sigma * size[:, None]) * quality) * self.joint_scale.to(dev, dt)
        sigma = sigma.clamp_min_(self.floor_px)
        sigma = torch.where(u0 < self.outlier_prob, sigma * self.outlier_scale, sigma)
        # Missed joints: random drops, more when small (face first).
        smallness = ((self.small_px - size) / self.small_px).clamp_(0.0, 1.0)
        p_keep = (1.0 - self.drop_prob) - self.small_drop_max * smallness[:, None] * self.small_drop_weight.to(dev, dt)
        seen = vis & (u0 < p_keep)
        # Occluder (car, bike, another person, frame edge): hides the bottom part or one side of the person.
        rows = (s[:, 1] < self.occluder_prob).nonzero().squeeze(1)
        if rows.numel():
            so = s[rows]
            lo_r, ext_r = lo_uv[:, rows], ext[:, rows]
            bottom = so[:, 2] < 0.6
            cut_v = lo_r[1] + (0.35 + 0.5 * so[:, 3]) * ext_r[1]
            cut_u = lo_r[0] + (0.3 + 0.4 * so[:, 3]) * ext_r[0]
            left = so[:, 3] < 0.5
            hide = torch.where(
                bottom[:, None],
                pxf[1, rows] > cut_v[:, None],
                (pxf[0, rows] < cut_u[:, None]) == left[:, None],
            )
            seen[rows] &= ~hide
        unseen = ~seen
        out = torch.empty(3, B, J, device=dev, dtype=dt)
        # Visible confidences: higher for bigger, better detections (the model only uses conf >= threshold).
        q = (size / self.small_px).clamp(0.4, 1.0)[:, None] / quality.clamp_min(0.7)
        lo, hi = self.vis_conf
        conf = torch.sqrt(u1).mul_(q).mul_(hi - lo).add_(lo).clamp_(lo, hi)
        # Unseen joints, YOLO-like or forced-complete-like per detection, as dense selects over all joints
        # (cheaper than gathering the ~25% scattered unseen ones). Forced-complete guesses are the true position
        # plus a large error (the same normals, a larger sigma), clipped to the image.
        forced = (s[:, 5] < self.forced_share)[:, None]  # (B, 1)
        if cameras is not None:
            img = torch.stack((cameras.img_w, cameras.img_h)).to(dev, dt) - 1.0  # (2, B)
        else:  # no image size known: keep within the keypoint box grown by 50%
            img = hi_uv + 0.5 * ext
        sigma = torch.where(unseen & forced, (self.guess_rel_sigma * size)[:, None], sigma)
        xy = torch.addcmul(pxp, sigma, nrm)  # (2, B, J)
        xy_u = torch.minimum(torch.nan_to_num(xy, nan=0.0).clamp_min_(0.0), img[..., None])
        torch.where(unseen, xy_u, xy, out=out[:2])
        out[:2].masked_fill_(unseen & ~forced & (u1 < self.nan_share), torch.nan)
        conf_u = torch.where(forced, self.forced_conf * (0.5 + u1), self.unseen_conf_max * u1)
        torch.where(unseen, conf_u, conf, out=out[2])
        return _swap(out.permute(1, 2, 0), rand(B, 2), self.swap_prob, self.flip_prob, g)


def _swap(det: Tensor, s: Tensor, swap_prob: float, flip_prob: float, g: torch.Generator) -> Tensor:
    """Left/right confusions: one random pair (prob ``swap_prob``) or the whole body (prob ``flip_prob``).

    Works in place on the affected rows only.
    """
    J = det.shape[1]
    full = s[:, 1] < flip_prob
    one = (s[:, 0] < swap_prob) & ~full
    rows = (one | full).nonzero().squeeze(1)
    if rows.numel() == 0:
        return det
    dev = det.device
    idx = torch.arange(J, device=dev).expand(rows.numel(), J).clone()
    idx[full[rows]] = torch.tensor(FLIP_INDEX, device=dev)
    k = one[rows].nonzero().squeeze(1)
    if k.numel():
        pairs = _PAIRS.to(dev)[torch.randint(len(_PAIRS), (k.numel(),), generator=g, device=dev)]
        idx[k, pairs[:, 0]] = pairs[:, 1]
        idx[k, pairs[:, 1]] = pairs[:, 0]
    det[rows] = torch.gather(det[rows], 1, idx[..., None].expand(-1, J, 3))
    return det
