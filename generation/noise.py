"""Detector-noise model: turns exact projections into what a 2D pose detector would report.

Optionally first a systematic offset of the hips along the torso (``hip_shift``: a fraction of the mid-hip ->
mid-shoulder image vector; YOLO on renders puts them higher than Anny's regressor, real data did not confirm
it, so the default is 0: ``++noise.hip_shift=0.08`` tries it). Then per joint: Gaussian pixel jitter with
``sigma = max(floor_px, rel_sigma * joint_scale[j] * size * m)`` where ``size`` is the person's keypoint-box
extent in pixels and ``m`` a per-detection log-normal quality factor, plus heavy-tailed outliers; missed
joints (outside the image or self-occluded -> unseen; random drops; an occluder hiding the bottom or one side
of the person; more drops as the person gets small, face joints first); occasional left/right swaps of one
pair or the whole body. Unseen joints follow one of two patterns, both
present in the training data (share ``forced_complete_share``):

* YOLO-like: confidence in ``[0, unseen_conf_max)``; coordinates NaN (share ``nan_share``) or the noisy
  position clipped to the image.
* OpenPifPaf forced-complete-like (the real KITTI set): confidence ~0.01 and a guessed position (the true one
  plus a large error, clipped to the image).

Border behaviour (issue 19, opt-in: ``border_clamp_prob`` > 0, preset ``conf/noise/yolo_border.yaml``): YOLO
reports a joint outside the image (a person cut by the frame) clamped onto the image border, with a moderate
confidence that passes the visibility threshold. A joint ``d`` pixels outside the image is so reported with
probability ``border_clamp_prob`` x ``exp(-d / (border_clamp_decay x size))`` (decay 0: no decrease) or, with
``border_clamp_midpoint`` > 0, the logistic ``border_clamp_prob / (1 + exp((d / size - midpoint) /
border_clamp_width))`` (the shape measured on cropped renders: nearly every joint up to ~0.3 person sizes
outside, almost none beyond 0.45), at the noisy position clamped onto the border (the coordinate beyond the
border exactly on its last pixel row / column, the other one with the usual jitter along it), with a
confidence uniform in ``[border_conf_min, border_conf_max]``; otherwise one of the unseen patterns above. Only
for YOLO-like detections (not forced-complete ones) and when the image size is known.

The model only sees ``confidence >= visibility_threshold``; visible joints get plausible confidences above it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from depth_pose import geometry
from depth_pose.keypoints import FLIP_INDEX, INDEX, NUM_KEYPOINTS
from generation.kernels import kernel, nan_to
from generation.project import exact_detections
from generation.types import Cameras, Observations

# Relative jitter per joint (COCO order), x rel_sigma = sigma / person height measured for YOLO11n-pose on
# renders (docs/bench_render.md): face precise, hips/knees/elbows loose, ankles loosest.
DEFAULT_JOINT_SCALE = (0.6, 0.6, 0.6, 0.6, 0.6, 1.0, 1.0, 1.4, 1.4, 1.3, 1.3, 1.5, 1.5, 1.4, 1.4, 2.2, 2.2)
# How much more likely each joint is dropped when the person is small (face and wrists first).
DEFAULT_SMALL_DROP_WEIGHT = (
    1.5,
    1.6,
    1.6,
    1.2,
    1.2,
    0.2,
    0.2,
    0.8,
    0.8,
    1.2,
    1.2,
    0.2,
    0.2,
    0.6,
    0.6,
    0.9,
    0.9,
)
_HIPS = (INDEX["left_hip"], INDEX["right_hip"])
_SHOULDERS = (INDEX["left_shoulder"], INDEX["right_shoulder"])
assert _HIPS[1] == _HIPS[0] + 1, "the hip shift slices the two hips as one block"
_PAIRS = torch.tensor([(i, FLIP_INDEX[i]) for i in range(NUM_KEYPOINTS) if FLIP_INDEX[i] > i])  # (8, 2)


class DetectorNoise:
    """Callable ``(obs, generator) -> det_xyc (B, 17, 3)``; ``enabled=False`` returns the exact projection."""

    def __init__(
        self,
        name: str = "yolo_like",
        enabled: bool = True,
        visibility_threshold: float = 0.1,
        rel_sigma: float = 0.02,
        floor_px: float = 3.0,
        hip_shift: float = 0.0,
        joint_scale: Sequence[float] = DEFAULT_JOINT_SCALE,
        quality_log_std: float = 0.4,
        outlier_prob: float | Sequence[float] = 0.02,
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
        border_clamp_prob: float = 0.0,
        border_clamp_decay: float = 0.0,
        border_clamp_midpoint: float = 0.0,
        border_clamp_width: float = 0.06,
        border_conf_min: float = 0.2,
        border_conf_max: float = 0.5,
    ) -> None:
        self.name, self.enabled = name, bool(enabled)
        self.threshold = float(visibility_threshold)
        self.rel_sigma, self.floor_px = float(rel_sigma), float(floor_px)
        self.hip_shift = float(hip_shift)
        self.joint_scale = torch.tensor(list(joint_scale), dtype=torch.float32)
        self.quality_log_std = float(quality_log_std)
        # One probability for every joint, or 17 (gross errors are far more common on limbs than on the face).
        op = (
            [float(outlier_prob)] * NUM_KEYPOINTS
            if isinstance(outlier_prob, int | float)
            else list(outlier_prob)
        )
        self.outlier_prob, self.outlier_scale = torch.tensor(op, dtype=torch.float32), float(outlier_scale)
        self.drop_prob, self.occluder_prob = float(drop_prob), float(occluder_prob)
        self.small_px, self.small_drop_max = float(small_px), float(small_drop_max)
        self.small_drop_weight = torch.tensor(list(small_drop_weight), dtype=torch.float32)
        self.swap_prob, self.flip_prob = float(swap_prob), float(flip_prob)
        self.forced_share, self.nan_share = float(forced_complete_share), float(nan_share)
        self.guess_rel_sigma = float(guess_rel_sigma)
        self.vis_conf = (float(visible_conf_min), float(visible_conf_max))
        self.unseen_conf_max, self.forced_conf = float(unseen_conf_max), float(forced_conf)
        self.border_clamp_prob, self.border_clamp_decay = float(border_clamp_prob), float(border_clamp_decay)
        self.border_clamp_midpoint = float(border_clamp_midpoint)
        self.border_clamp_width = float(border_clamp_width)
        self.border_conf = (float(border_conf_min), float(border_conf_max))
        self._validate()

    def _validate(self) -> None:
        for key in ("joint_scale", "small_drop_weight"):
            v = getattr(self, key)
            if v.shape != (NUM_KEYPOINTS,) or (v < 0).any():
                raise ValueError(f"noise.{key} must be {NUM_KEYPOINTS} non-negative values, got {v.tolist()}")
        op = self.outlier_prob
        if op.shape != (NUM_KEYPOINTS,) or (op < 0).any() or (op > 1).any():
            raise ValueError(
                f"noise.outlier_prob must be one probability or {NUM_KEYPOINTS}, got {op.tolist()}"
            )
        probs = (
            "drop_prob",
            "occluder_prob",
            "swap_prob",
            "flip_prob",
            "forced_share",
            "nan_share",
            "small_drop_max",
            "border_clamp_prob",
        )
        for key in probs:
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"noise.{key} must be a probability in [0, 1], got {getattr(self, key)}")
        if min(self.rel_sigma, self.floor_px, self.guess_rel_sigma, self.quality_log_std) < 0:
            raise ValueError("noise: sigmas must be >= 0")
        if not -0.5 <= self.hip_shift <= 0.5:
            raise ValueError(
                f"noise.hip_shift must be a fraction of the hip-shoulder vector in [-0.5, 0.5], "
                f"got {self.hip_shift}"
            )
        if self.border_clamp_decay < 0:
            raise ValueError(f"noise.border_clamp_decay must be >= 0, got {self.border_clamp_decay}")
        if self.border_clamp_midpoint < 0 or self.border_clamp_width <= 0:
            raise ValueError(
                "noise: need border_clamp_midpoint >= 0 and border_clamp_width > 0, got "
                f"{self.border_clamp_midpoint}, {self.border_clamp_width}"
            )
        if self.border_clamp_midpoint > 0 and self.border_clamp_decay > 0:
            raise ValueError(
                "noise: give border_clamp_decay (exponential) or border_clamp_midpoint (logistic), not both"
            )
        if not 0.0 <= self.border_conf[0] <= self.border_conf[1] <= 1.0:
            raise ValueError(
                f"noise: need 0 <= border_conf_min <= border_conf_max <= 1, got {list(self.border_conf)}"
            )
        t = self.threshold
        if not (t < self.vis_conf[0] <= self.vis_conf[1] <= 1.0):
            raise ValueError(
                f"noise: need visibility_threshold ({t}) < visible_conf_min <= visible_conf_max <= 1"
            )
        if not (0.0 <= self.forced_conf < t and 0.0 < self.unseen_conf_max <= t):
            raise ValueError(
                f"noise: unseen confidences (forced_conf, unseen_conf_max) must be below the threshold {t}"
            )

    def __call__(
        self, obs: Observations, generator: torch.Generator, cameras: Cameras | None = None
    ) -> Tensor:
        """Detector-like ``(B, 17, 3)`` keypoints for ``obs``; ``cameras`` (row-aligned) bounds guessed
        positions to the image.

        Random numbers are drawn here, the math runs in :func:`_noise_planar` on planar (component, joint,
        sample) storage (a fused kernel when :mod:`generation.kernels` is on); the result is a (B, 17, 3) view
        of (3, 17, B) storage.
        """
        px, vis = obs.gt_px, obs.gt_visible
        if not self.enabled:
            return exact_detections(px, vis)
        g, dev, dt = generator, px.device, px.dtype
        pp = geometry.planar(px)  # (2, J, B); free when px is a view of planar storage (observe)
        J, B = pp.shape[1:]
        # Random numbers: 2 normals + 2 uniforms per joint (each used by mutually exclusive branches), 6 per
        # detection (quality, occluder x3, forced pattern, spare), 2 for left/right swaps.
        nrm = torch.randn(2, J, B, generator=g, device=dev, dtype=dt)
        u = torch.rand(2, J, B, generator=g, device=dev, dtype=dt)
        s = torch.rand(8, B, generator=g, device=dev, dtype=dt)
        # Border behaviour (when on, with an image): 2 uniforms per joint (clamped?, confidence), drawn only
        # then, so that the random stream of every other configuration is unchanged.
        border = None
        if self.border_clamp_prob > 0 and cameras is not None:
            border = torch.rand(2, J, B, generator=g, device=dev, dtype=dt)
        if cameras is not None:
            img = torch.stack((cameras.img_w, cameras.img_h)).to(dev, dt) - 1.0  # (2, B)
        else:
            img = torch.full((2, B), torch.inf, device=dev, dtype=dt)
        det = _noise_planar(self, pp, vis.T.to(dt), nrm, u, s, img, cameras is not None, border)
        return _swap(det.permute(2, 1, 0), s[6:].T, self.swap_prob, self.flip_prob, g)


@kernel
def _noise_planar(
    nz: DetectorNoise,
    pp: Tensor,
    vis: Tensor,
    nrm: Tensor,
    u: Tensor,
    s: Tensor,
    img: Tensor,
    has_image: bool,
    border: Tensor | None = None,
) -> Tensor:
    """The math of :meth:`DetectorNoise.__call__` on planar pixels ``pp`` (2, J, B), visibility ``vis`` (J, B,
    0/1 float), the drawn random numbers and the last pixel column / row ``img`` (2, B); ``border`` (2, J, B):
    the border behaviour's uniforms (None: off); returns detections (3, J, B). Pure (a
    :func:`generation.kernels.kernel`; masks that get stored are floats: Inductor stores bools slowly)."""
    dt = pp.dtype
    if nz.hip_shift:
        # A detector's systematic hip offset along the torso (toward the mid-shoulder point when > 0).
        (lh, rh), (ls, rs) = _HIPS, _SHOULDERS
        toward = 0.5 * (pp[:, ls] + pp[:, rs] - pp[:, lh] - pp[:, rh])  # (2, B) mid-hip -> mid-shoulder
        hips = pp[:, lh : rh + 1] + nz.hip_shift * toward[:, None]
        pp = torch.cat((pp[:, :lh], hips, pp[:, rh + 1 :]), 1)
    # Person size in pixels: keypoint box extent (NaN-safe: points behind the camera count as 0).
    pxf = nan_to(pp, 0.0)
    lo_uv, hi_uv = pxf.amin(1), pxf.amax(1)  # (2, B)
    ext = hi_uv - lo_uv
    size = torch.maximum(ext[0], ext[1]).clamp(1.0, 1e5)
    u0, u1 = u[0], u[1]  # u0: outlier (u0 < p) | drop (u0 >= 1 - p); u1: confidence | NaN choice
    # Pixel jitter: per-detection log-normal quality, per-joint scale, heavy-tailed outliers.
    quality = torch.exp(nz.quality_log_std * math.sqrt(2.0) * torch.erfinv(2 * s[0] - 1).clamp(-6, 6))  # (B,)
    joint_scale = nz.joint_scale.to(pp.device, dt)[:, None]
    sigma = ((nz.rel_sigma * size) * quality) * joint_scale  # (J, B)
    sigma = sigma.clamp_min(nz.floor_px)
    sigma = torch.where(u0 < nz.outlier_prob.to(pp.device, dt)[:, None], sigma * nz.outlier_scale, sigma)
    # Missed joints: random drops, more when small (face first).
    smallness = ((nz.small_px - size) / nz.small_px).clamp(0.0, 1.0)
    p_keep = (1.0 - nz.drop_prob) - nz.small_drop_max * smallness * nz.small_drop_weight.to(pp.device, dt)[
        :, None
    ]
    seen = vis * (u0 < p_keep).to(dt)  # 0/1
    # Occluder (car, bike, another person, frame edge): hides the bottom part or one side of the person.
    occluded = s[1] < nz.occluder_prob
    cut_v = lo_uv[1] + (0.35 + 0.5 * s[3]) * ext[1]
    cut_u = lo_uv[0] + (0.3 + 0.4 * s[3]) * ext[0]
    hide = torch.where(s[2] < 0.6, pxf[1] > cut_v, (pxf[0] < cut_u) == (s[3] < 0.5))
    unseen = (seen * (1.0 - (hide & occluded).to(dt))) < 0.5
    # Visible confidences: higher for bigger, better detections (the model only uses conf >= threshold).
    q = (size / nz.small_px).clamp(0.4, 1.0) / quality.clamp_min(0.7)
    lo, hi = nz.vis_conf
    conf = (torch.sqrt(u1) * q * (hi - lo) + lo).clamp(lo, hi)
    # Unseen joints, YOLO-like or forced-complete-like per detection, as dense selects over all joints.
    # Forced-complete guesses are the true position plus a large error (the same normals, a larger sigma),
    # clipped to the image (no image size known: to the keypoint box grown by 50%).
    forced = s[5] < nz.forced_share  # (B,)
    bound = img if has_image else hi_uv + 0.5 * ext
    sigma = torch.where(unseen & forced, nz.guess_rel_sigma * size, sigma)
    xy = pp + sigma * nrm  # (2, J, B)
    xy_u = torch.minimum(nan_to(xy, 0.0).clamp_min(0.0), bound[:, None])
    xy_noisy = xy
    xy = torch.where(unseen, xy_u, xy)
    xy = torch.where(unseen & ~forced & (u1 < nz.nan_share), torch.nan, xy)
    conf_u = torch.where(forced, nz.forced_conf * (0.5 + u1), nz.unseen_conf_max * u1)
    conf = torch.where(unseen, conf_u, conf)
    if border is not None:
        # YOLO's border behaviour: a joint outside the image (last pixel index img), clamped onto the border.
        below, above = pp < 0.0, pp >= img[:, None] + 1.0  # (2, J, B); NaN (behind the camera): neither
        d = torch.maximum(-pp, pp - img[:, None]).clamp_min(0.0)
        d = torch.where(below | above, d, 0.0).amax(0)  # (J, B) pixels outside
        p = nz.border_clamp_prob
        if nz.border_clamp_decay > 0:
            p = p * torch.exp(-d / (nz.border_clamp_decay * size))
        elif nz.border_clamp_midpoint > 0:
            p = p * torch.sigmoid((nz.border_clamp_midpoint - d / size) / nz.border_clamp_width)
        clamped = (below | above).any(0) & ~forced & (border[0] < p)
        along = torch.minimum(nan_to(xy_noisy, 0.0).clamp_min(0.0), img[:, None])
        on_border = torch.where(below, 0.0, torch.where(above, img[:, None].expand_as(pp), along))
        xy = torch.where(clamped, on_border, xy)
        lo_b, hi_b = nz.border_conf
        conf = torch.where(clamped, lo_b + (hi_b - lo_b) * border[1], conf)
    return torch.cat((xy, conf[None]))


def _swap(det: Tensor, s: Tensor, swap_prob: float, flip_prob: float, g: torch.Generator) -> Tensor:
    """Left/right confusions: one random pair (prob ``swap_prob``) or the whole body (prob ``flip_prob``).

    ``s`` (B, 2) uniforms. Works in place on the affected rows only.
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
