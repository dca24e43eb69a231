"""THE one keypoint normalisation, shared by training (per batch, on the device) and inference.

Pipeline: detector keypoints ``(B, 17, 3)`` (pixels + confidence) and intrinsics ``K`` ->
:func:`observe` (visibility mask, coordinates through ``K^-1``) -> optional augmentation on the device
(:func:`augment`: extra joint masking, leg truncation, horizontal flip) -> :meth:`Normaliser.encode`
(model inputs + a per-sample reference ``log_ref`` so the network predicts ``log z - log_ref``).

Two variants (``features.name``):

* ``normalised`` (ours): keypoints as camera rays ``K^-1 [u, v, 1]`` (one model serves any camera), centred
  on the centroid ``c`` of the visible joints and divided by their RMS spread ``s``; inputs
  ``[(u - c) / s masked to 0 (34), mask (17), c (2), log s (1)]``; target relative to the pinhole prior
  ``log z ~ -log s`` (depth = size^-1), so the net only learns the pose-dependent correction.
* ``raw_pixels`` (the seed's): 51 floats ``[x / W, y / H, mask]`` in pixels of one fixed camera, unseen joints
  at 0; target plain ``log z``. Only valid for the camera it was trained on (ablation).

The model never sees raw confidences: a joint is visible iff ``conf >= threshold`` and its coordinates are
finite (detectors disagree on confidences; OpenPifPaf-style forced-complete poses put guesses at conf 0.01).

Optional gravity input (``gravity: true``, normalised variant only): the camera's up direction ``up_cam``
(unit vector in camera coordinates, conventions in :mod:`depth_pose.geometry`) per sample, NaN = not known.
Five more inputs ``[up_cam * given (3), sin(elevation of the person's ray) * given, given]``; an unknown up
encodes as five zeros, and training hides it on a share of samples (``augment.p_hide_up``), so one model
serves both and "masked" is exactly "not given".

Optional border input (``border: true``, normalised variant only): where the image frame is. Detectors put
joints cut off by the frame *on* the image border with middling confidences, so they pass the visibility test
as if seen; the model is told, per joint, how close to the border it lies (:func:`border_proximity`, computed
in pixels from the joint and the image size ``image_wh``) and may neither trust nor drop such joints blindly.
18 more inputs ``[proximity * visible (17), known]``; an unknown image size (NaN) encodes as 18 zeros, and
training hides it on a share of samples (``augment.p_hide_frame``) and on legs cut by ``augment.p_truncate``
(no image edge lies there), so one model serves inputs with and without a known frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from depth_pose.corrupt import KINDS, corrupt
from depth_pose.geometry import normalise_pixels
from depth_pose.keypoints import (
    FLIP_INDEX,
    INDEX,
    NUM_KEYPOINTS,
)

FEATURES_VERSION = 1
VARIANTS = ("normalised", "raw_pixels")
LEG_JOINTS = (INDEX["left_knee"], INDEX["right_knee"], INDEX["left_ankle"], INDEX["right_ankle"])
ANKLES = (INDEX["left_ankle"], INDEX["right_ankle"])
S_MIN = 1e-3  # floor of the normalised RMS radius (a 1.7 m person ~400 m away): bounds log_ref
MIN_VISIBLE_FOR_SCALE = 3  # fewer visible joints: centre/scale from every finite joint (guessed positions)
GRAVITY_DIM = 5  # up_cam (3), sin(elevation of the centroid ray), given flag
BORDER_DIM = NUM_KEYPOINTS + 1  # per-joint border proximity, frame known flag
# Border proximity reaches 0 at BORDER_TAU person RMS radii (pixels) from the nearest image edge. A whole
# standing person's RMS joint radius is ~0.34 of its keypoint height (a cut one's, of what is seen: less),
# so the ramp spans ~0.17 of the height: YOLO puts joints beyond the frame on the edge or 0.02-0.10 of the
# height inside it (docs/bench_border.md, inset p50/p90), read as 1 to ~0.4; joints further inside read 0.
# A graded ramp, not a cut: the net sees the distance and learns how far to trust a joint there.
BORDER_TAU = 0.5
BORDER_MIN_PX = 2.0  # floor of the ramp width in pixels (tiny people: detector jitter is ~1-2 px)


def as_K(K: Tensor, n: int) -> Tensor:
    """Intrinsics as ``(n, 3, 3)`` float32 from ``(3, 3)`` or ``(n, 3, 3)``."""
    K = torch.as_tensor(K, dtype=torch.float32)
    if K.shape == (3, 3):
        K = K.expand(n, 3, 3)
    if K.shape != (n, 3, 3):
        raise ValueError(f"K must have shape (3, 3) or ({n}, 3, 3), got {tuple(K.shape)}")
    return K


def K_from_columns(fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor, skew: Tensor | None = None) -> Tensor:
    """``(N, 3, 3)`` intrinsics from the shard columns ``fx, fy, cx, cy, skew``."""
    K = torch.zeros(fx.shape[0], 3, 3, dtype=fx.dtype, device=fx.device)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = fx, fy, cx, cy, 1.0
    if skew is not None:
        K[:, 0, 1] = torch.nan_to_num(skew, nan=0.0)
    return K


def visibility(kp_xyc: Tensor, threshold: float) -> Tensor:
    """``(B, 17)`` bool: confidence >= threshold and finite coordinates."""
    finite = torch.isfinite(kp_xyc[..., 0]) & torch.isfinite(kp_xyc[..., 1])
    conf = torch.nan_to_num(kp_xyc[..., 2], nan=0.0)
    return finite & (conf >= threshold)


@dataclass
class Observed:
    """Keypoints after :func:`observe`: coordinates (normalised rays or pixels) + visibility mask."""

    xy: Tensor  # (B, 17, 2), NaN-free (unseen joints keep their coordinate if finite, else 0)
    mask: Tensor  # (B, 17) bool: visible
    finite: Tensor | None = None  # (B, 17) bool: finite coordinates (a guess when not visible)
    up: Tensor | None = None  # (B, 3) camera up direction (unit), NaN rows = not known; None = none known
    # (B, 17) border proximity in [0, 1] (:func:`border_proximity`, of every finite joint, visible or not),
    # NaN rows = image size not known; None = the model takes no border input.
    border: Tensor | None = None


@dataclass
class Normaliser:
    """Configuration + implementation of the keypoint normalisation (stored in every checkpoint)."""

    name: str = "normalised"
    threshold: float = 0.1
    # Fewer confident joints than this: every finite joint counts as visible (a forced-complete detector's
    # guesses beat no skeleton; the synthetic noise model makes such guesses too, so training sees the same).
    min_visible: int = 5
    # raw_pixels only: the fixed camera's image size (pixels are divided by it).
    image_size: tuple[float, float] = (1242.0, 375.0)
    # Optional gravity input (see module docstring); models saved without the key have none.
    gravity: bool = False
    # Optional border input (see module docstring); models saved without the key have none.
    border: bool = False
    version: int = FEATURES_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in VARIANTS:
            raise ValueError(f"unknown features name {self.name!r}; choose one of {VARIANTS}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"features threshold must be in [0, 1], got {self.threshold}")
        self.threshold = float(self.threshold)
        self.gravity = bool(self.gravity)
        if self.gravity and self.name != "normalised":
            raise ValueError("features gravity: true needs the normalised variant (camera rays)")
        self.border = bool(self.border)
        if self.border and self.name != "normalised":
            raise ValueError("features border: true needs the normalised variant (camera rays)")
        self.image_size = tuple(float(v) for v in self.image_size)

    # --- identity -------------------------------------------------------------------------------------
    @property
    def in_dim(self) -> int:
        if self.name != "normalised":
            return 3 * NUM_KEYPOINTS
        extra = (GRAVITY_DIM if self.gravity else 0) + (BORDER_DIM if self.border else 0)
        return 2 * NUM_KEYPOINTS + NUM_KEYPOINTS + 3 + extra

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["in_dim"] = self.in_dim
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        d = dict(d)
        d.pop("in_dim", None)
        return cls(**d)

    def check_compatible(self, stored: dict[str, Any], source: str = "checkpoint") -> None:
        """Raise if a checkpoint's stored normalisation is not what this code computes."""
        if stored.get("version") != FEATURES_VERSION or stored.get("name") not in VARIANTS:
            raise ValueError(
                f"{source} was trained with feature normalisation {stored.get('name')!r} version "
                f"{stored.get('version')!r}, but depth_pose.features implements version "
                f"{FEATURES_VERSION} of "
                f"{VARIANTS}; retrain the model (make model) or use a matching depth_pose version"
            )
        if int(stored.get("in_dim", -1)) != Normaliser.from_dict(stored).in_dim:
            raise ValueError(
                f"{source}: stored feature in_dim {stored.get('in_dim')} does not match the code"
            )

    # --- pipeline -------------------------------------------------------------------------------------
    def observe(
        self, kp_xyc: Tensor, K: Tensor, up: Tensor | None = None, image_wh: Tensor | None = None
    ) -> Observed:
        """Visibility mask and coordinates (normalised rays for ``normalised``, pixels for ``raw_pixels``).

        Visible = confidence >= threshold and finite; if fewer than ``min_visible`` joints are, every finite
        joint is used (the detector's guesses). ``up``: (B, 3) camera up directions (NaN rows = unknown),
        normalised to unit length here; kept only when the model takes gravity. ``image_wh``: (B, 2) image
        [width, height] in pixels (NaN or non-positive rows, or None = unknown); used only when the model
        takes the border input."""
        if kp_xyc.ndim != 3 or kp_xyc.shape[1:] != (NUM_KEYPOINTS, 3):
            raise ValueError(f"keypoints must have shape (N, {NUM_KEYPOINTS}, 3), got {tuple(kp_xyc.shape)}")
        mask = visibility(kp_xyc, self.threshold)
        finite = torch.isfinite(kp_xyc[..., 0]) & torch.isfinite(kp_xyc[..., 1])
        few = (mask.sum(1) < self.min_visible) & (finite.sum(1) > mask.sum(1))
        mask = torch.where(few[:, None], finite, mask)
        px = torch.nan_to_num(kp_xyc[..., :2], nan=0.0, posinf=0.0, neginf=0.0)
        if self.name == "normalised":
            xy = normalise_pixels(px, K.to(px))
        else:
            xy = px
        border = None
        if self.border:
            border = border_proximity(px, mask, finite, _as_image_wh(image_wh, kp_xyc))
        return Observed(xy=xy, mask=mask, finite=finite, up=self._unit_up(up, kp_xyc), border=border)

    def _unit_up(self, up: Tensor | None, like: Tensor) -> Tensor | None:
        if not self.gravity or up is None:
            return None
        up = torch.as_tensor(up, dtype=like.dtype, device=like.device)
        if up.shape != (like.shape[0], 3):
            raise ValueError(f"up must have shape ({like.shape[0]}, 3), got {tuple(up.shape)}")
        n = up.norm(dim=1, keepdim=True)
        ok = torch.isfinite(n) & (n > 1e-6)
        return torch.where(ok, up / n.clamp_min(1e-6), torch.full_like(up, float("nan")))

    def encode(self, obs: Observed) -> tuple[Tensor, Tensor]:
        """Model inputs ``(B, in_dim)`` and the reference ``log_ref`` (B,) such that
        ``log z = out + log_ref``.

        Samples with fewer than 3 visible joints take centre and scale from every finite joint (guessed
        positions; all joints if none is finite); the mask input stays the true one so the model can tell (the
        predictor also widens their sigma). The scale is floored at ``S_MIN`` so ``log_ref`` stays bounded.
        """
        xy, mask = obs.xy, obs.mask
        if self.name == "raw_pixels":
            size = torch.tensor(self.image_size, dtype=xy.dtype, device=xy.device)
            x = torch.where(mask[..., None], xy / size, torch.zeros_like(xy))
            feats = torch.cat((x.flatten(1), mask.to(xy.dtype)), dim=1)
            return feats, torch.zeros(xy.shape[0], dtype=xy.dtype, device=xy.device)
        m = mask.to(xy.dtype)
        finite = obs.finite if obs.finite is not None else torch.ones_like(mask)
        c, d, s = centre_and_radius(xy, mask, finite)
        s = s.clamp_min(S_MIN)
        u = torch.where(mask[..., None], d / s[:, None, None], torch.zeros_like(d))
        log_s = s.log()
        parts = [u.flatten(1), m, c, log_s[:, None]]
        if self.gravity:
            parts.append(gravity_inputs(obs.up, c))
        if self.border:
            parts.append(border_inputs(obs.border, mask))
        return torch.cat(parts, dim=1), -log_s

    def __call__(
        self, kp_xyc: Tensor, K: Tensor, up: Tensor | None = None, image_wh: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``observe`` + ``encode`` without augmentation: (features, log_ref, mask)."""
        obs = self.observe(kp_xyc, K, up, image_wh)
        feats, log_ref = self.encode(obs)
        return feats, log_ref, obs.mask


def gravity_inputs(up: Tensor | None, c: Tensor) -> Tensor:
    """The five gravity inputs (B, 5) for up directions ``up`` (B, 3, unit, NaN rows = unknown; None = all
    unknown) and centroid rays ``c`` (B, 2, normalised image coordinates): ``[up * g, sin(elev) * g, g]``
    with ``g`` = 1 where known; elev = elevation of the ray ``(c, 1)`` above the horizon. Unknown: zeros."""
    B = c.shape[0]
    if up is None:
        return torch.zeros(B, GRAVITY_DIM, dtype=c.dtype, device=c.device)
    given = torch.isfinite(up).all(1)
    upz = torch.where(given[:, None], up, torch.zeros_like(up))
    ray = torch.cat((c, torch.ones_like(c[:, :1])), dim=1)
    sin_elev = (ray * upz).sum(1) / ray.norm(dim=1)
    g = given.to(c.dtype)
    return torch.cat((upz, sin_elev[:, None], g[:, None]), dim=1)


def _as_image_wh(image_wh: Tensor | None, like: Tensor) -> Tensor:
    """Image sizes as (B, 2) of ``like``'s dtype/device; None, non-finite or non-positive rows -> NaN rows."""
    B = like.shape[0]
    if image_wh is None:
        return torch.full((B, 2), float("nan"), dtype=like.dtype, device=like.device)
    wh = torch.as_tensor(image_wh, dtype=like.dtype, device=like.device)
    if wh.shape == (2,):
        wh = wh.expand(B, 2)
    if wh.shape != (B, 2):
        raise ValueError(f"image_wh must have shape (2,) or ({B}, 2), got {tuple(wh.shape)}")
    ok = (torch.isfinite(wh) & (wh > 0)).all(1, keepdim=True)
    return torch.where(ok, wh, torch.full_like(wh, float("nan")))


def centre_and_radius(pts: Tensor, mask: Tensor, finite: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A person's centre (B, 2), the offsets of its joints from it (B, 17, 2) and its RMS radius (B,) over the
    visible joints of ``pts`` (B, 17, 2) (rays or pixels); with fewer than :data:`MIN_VISIBLE_FOR_SCALE`
    visible, over every finite joint (all joints if fewer than 2 are finite). The one definition of where a
    person is and how big it looks, for the feature scale and the border ramp."""
    fb = torch.where((finite.sum(1) >= 2)[:, None], finite, torch.ones_like(finite))
    w = torch.where((mask.sum(1) < MIN_VISIBLE_FOR_SCALE)[:, None], fb, mask).to(pts.dtype)
    n = w.sum(1, keepdim=True)
    c = (pts * w[..., None]).sum(1) / n
    d = pts - c[:, None, :]
    return c, d, ((d.square().sum(-1) * w).sum(1) / n.squeeze(1)).sqrt()


def border_proximity(px: Tensor, mask: Tensor, finite: Tensor, image_wh: Tensor) -> Tensor:
    """Per-joint proximity to the image border (B, 17) in [0, 1]: ``1 - clamp(d / r, 0, 1)`` with ``d`` the
    joint's pixel distance to the nearest image edge (0 outside the image: outside counts as on the border)
    and ``r = max(BORDER_TAU * RMS radius of the person in pixels, BORDER_MIN_PX)``. The RMS radius is taken
    over the visible joints (every finite joint when fewer than 3 are visible), like the feature scale.
    ``px`` (B, 17, 2) pixels (NaN-free), ``image_wh`` (B, 2), NaN rows = unknown -> NaN rows."""
    r = (BORDER_TAU * centre_and_radius(px, mask, finite)[2]).clamp_min(BORDER_MIN_PX)
    x, y = px[..., 0], px[..., 1]
    W, H = image_wh[:, :1], image_wh[:, 1:]
    d = torch.minimum(torch.minimum(x, W - x), torch.minimum(y, H - y)).clamp_min(0.0)
    return 1.0 - (d / r[:, None]).clamp(0.0, 1.0)  # NaN rows stay NaN (unknown W, H)


def border_inputs(border: Tensor | None, mask: Tensor) -> Tensor:
    """The border inputs (B, 18): ``[proximity * visible (17), known]``; rows with an unknown image size
    (NaN, or ``border`` None) are all zeros. Computed from the mask at encoding time, so joints hidden by
    augmentation carry no proximity."""
    B = mask.shape[0]
    dt = border.dtype if border is not None else torch.float32
    if border is None:
        return torch.zeros(B, BORDER_DIM, dtype=dt, device=mask.device)
    known = torch.isfinite(border).all(1)
    prox = torch.where(known[:, None] & mask, border, torch.zeros_like(border))
    return torch.cat((prox, known.to(dt)[:, None]), dim=1)


def flip(obs: Observed, which: Tensor | None = None) -> Observed:
    """Horizontal flip in normalised coordinates (x -> -x about the principal point, FLIP_INDEX swap; the up
    direction's x too; the border proximity swaps with its joints) of the samples where ``which`` (B,) is True
    (all when None). Depth is unchanged."""
    idx = torch.tensor(FLIP_INDEX, device=obs.xy.device)
    xy_f = obs.xy[:, idx].clone()
    xy_f[..., 0] = -xy_f[..., 0]
    mask_f = obs.mask[:, idx]
    fin_f = obs.finite[:, idx] if obs.finite is not None else None
    up_f = None
    if obs.up is not None:
        up_f = obs.up.clone()
        up_f[:, 0] = -up_f[:, 0]
    border_f = obs.border[:, idx] if obs.border is not None else None
    if which is None:
        return Observed(xy=xy_f, mask=mask_f, finite=fin_f, up=up_f, border=border_f)
    w = which[:, None]
    return Observed(
        xy=torch.where(w[..., None], xy_f, obs.xy),
        mask=torch.where(w, mask_f, obs.mask),
        finite=torch.where(w, fin_f, obs.finite) if fin_f is not None else None,
        up=torch.where(w, up_f, obs.up) if up_f is not None else None,
        border=torch.where(w, border_f, obs.border) if border_f is not None else None,
    )


@dataclass
class Augment:
    """Training-time augmentation on the device (config group ``features``, key ``augment``).

    * ``p_drop``: probability that a sample loses ``1..max_drop`` random visible joints (occlusion);
    * ``p_truncate``: probability that the legs (knees + ankles, or ankles only) are cut off (image border);
      a truncated sample's frame becomes unknown for the border input (no image edge lies where it was cut);
    * ``p_flip``: horizontal flip in normalised coordinates (x -> -x about the principal point, left/right
      joints swapped with FLIP_INDEX); depth is unchanged. Not applied to ``raw_pixels``.
    * ``p_hide_up``: probability that a sample's known up direction is hidden (gravity models: one model for
      cameras with and without a known mount).
    * ``p_hide_frame``: probability that a sample's known image size is hidden (border models: one model for
      inputs with and without a known frame, as the KITTI JSONL without ``image_wh``).
    * ``p_corrupt``: probability that a sample's skeleton is made one no body produces (both ankles on one
      leg, impossible limb ratios, legs folded over the torso, scrambled joints: :mod:`depth_pose.corrupt`),
      depth unchanged, so the model learns how little such keypoints say (a wider sigma); its frame becomes
      unknown for the border input (the moved joints' proximity is not known).
    A sample keeps its original mask if augmentation would leave fewer than ``min_visible`` joints.
    Dropped joints lose their border proximity with their mask (:func:`border_inputs` masks it).
    """

    p_drop: float = 0.0
    max_drop: int = 4
    p_truncate: float = 0.0
    p_flip: float = 0.0
    min_visible: int = 4
    p_hide_up: float = 0.5
    p_hide_frame: float = 0.25
    p_corrupt: float = 0.0

    def __call__(
        self, obs: Observed, flip_ok: bool = True, generator: torch.Generator | None = None
    ) -> Observed:
        xy, mask = obs.xy, obs.mask
        B, J = mask.shape
        dev = mask.device

        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, device=dev, generator=generator)

        new = mask.clone()
        cut = torch.zeros(B, 1, dtype=torch.bool, device=dev)
        moved = torch.zeros(B, 1, dtype=torch.bool, device=dev)
        if self.p_corrupt > 0:  # drawn only when on: every other configuration keeps its random stream
            bad = rand(B) < self.p_corrupt
            kind = torch.randint(0, len(KINDS), (B,), device=dev, generator=generator)
            xy = corrupt(xy, mask, bad, kind, generator)
            moved = bad[:, None]
        if self.p_drop > 0:
            k = torch.randint(1, max(1, self.max_drop) + 1, (B, 1), device=dev, generator=generator)
            scores = torch.where(mask, rand(B, J), torch.full((B, J), 2.0, device=dev))
            rank = scores.argsort(1).argsort(1)  # rank 0 = most likely dropped among visible
            drop = (rank < k) & mask & (rand(B, 1) < self.p_drop)
            new &= ~drop
        if self.p_truncate > 0:
            legs = torch.zeros(B, J, dtype=torch.bool, device=dev)
            whole = rand(B) < 0.5
            legs[:, list(ANKLES)] = True
            legs[:, list(LEG_JOINTS)] |= whole[:, None]
            cut = rand(B, 1) < self.p_truncate
            new &= ~(legs & cut)
        keep_old = new.sum(1) < min(self.min_visible, J)
        new = torch.where(keep_old[:, None], mask, new)
        border = obs.border
        if border is not None:
            unknown = (cut & ~keep_old[:, None]) | moved
            if self.p_hide_frame > 0:
                unknown = unknown | (rand(B, 1) < self.p_hide_frame)
            border = torch.where(unknown, torch.full_like(border, float("nan")), border)
        up = obs.up
        if up is not None and self.p_hide_up > 0:
            hide = rand(B) < self.p_hide_up
            up = torch.where(hide[:, None], torch.full_like(up, float("nan")), up)
        out = Observed(xy=xy, mask=new, finite=obs.finite, up=up, border=border)
        if flip_ok and self.p_flip > 0:
            out = flip(out, rand(B) < self.p_flip)
        return out


def from_config(cfg: Any) -> tuple[Normaliser, Augment]:
    """Build (Normaliser, Augment) from the ``features`` config group (a dict-like)."""
    cfg = dict(cfg) if cfg is not None else {}
    aug = dict(cfg.pop("augment", None) or {})
    cfg.pop("_target_", None)
    norm = Normaliser(
        name=cfg.get("name", "normalised"),
        threshold=cfg.get("threshold", 0.1),
        min_visible=int(cfg.get("min_visible", 5)),
        image_size=tuple(cfg.get("image_size", (1242.0, 375.0))),
        gravity=bool(cfg.get("gravity", False)),
        border=bool(cfg.get("border", False)),
    )
    return norm, Augment(**aug)
