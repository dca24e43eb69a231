"""A detector-noise model learned from render pairs (issue 20): ``noise=rendered``.

Fitted by ``experiments/fit_detector_model.py`` on (exact keypoints, YOLO11n-pose keypoints) pairs of Blender
renders (``generation/render/testset.py`` lines); stored in ``generation/data/detector_rendered/``
(``detector_rendered.safetensors`` + ``manifest.json`` with its sha256 and provenance; no pickle).

The model, per person, from the exact keypoints only (:func:`person_frame`):

* size: keypoint-box extent; the detector saw it at ``size x detector_scale`` px (the image shrunk to 640 px);
  five size bands (:data:`BAND_EDGES`);
* pose class: upright (torso within 45 deg of the image vertical) or not;
* view: facing the camera / profile / away, from the shoulder vector across the torso direction;
* truncated or not (a joint outside the image).

Positions and confidences: a bootstrap bank of whole detections. Each training detection is stored as its 17
normalised residuals (``(yolo - exact) / size`` on each joint's radial / tangential axes about the person's
centre, :func:`joint_axes`, so they transplant between poses and in-plane orientations: YOLO's shorter
skeletons stay shorter on any pose; and the detection's global scale and shift, :func:`similarity`) plus its
17 confidences, after undoing left/right confusions. A generated person draws one whole row of its (band,
pose, view, truncated) cell (coarser cells when one holds < :data:`MIN_CELL` rows), so within-detection
correlations (a bad detection is bad everywhere and less confident), YOLO's systematic offsets (shorter
skeletons, hips high) and the heavy tails are kept; a small Gaussian kernel (a fraction of the cell's robust
spread per joint) smooths it. A joint whose drawn
confidence is below the visibility threshold is missed (so the miss rate in frame, face joints seen from
behind included, comes with the row: the generator's self-occlusion flags are not used). Source joints
outside the image are filled at fit time from a random donor row of the same cell.

Outside joints (people cut by the frame): a confidence from a quantile table per (size band, distance outside
in person sizes); above the threshold the joint is reported near the border (YOLO's clamp: inset from the
crossed border by a drawn fraction of the size, the other coordinate with the usual error).
Left/right confusions: the empirical distribution of swapped-pair patterns per (size band, view) (a flip = all
8 pairs; correlated swaps such as a whole leg keep their joint rate), applied last.
Whole-person misses are measured (``person_miss`` per band in the manifest) but not applied: the generator
keeps every row.

Unseen joints follow :class:`generation.noise.DetectorNoise`'s two patterns (re-implemented here so that this
module sits beside ``noise`` in the layers): per detection, YOLO-like (confidence in ``[0,
unseen_conf_max)``, coordinates NaN with share ``nan_share`` else the noisy position clipped to the image) or
OpenPifPaf forced-complete-like (share ``forced_complete_share``; confidence ~``forced_conf``, the exact
position plus a ``guess_rel_sigma x size`` error, clipped to the image; never border-clamped).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from depth_pose import geometry
from depth_pose.errors import InputError
from depth_pose.keypoints import FLIP_INDEX, L_HIP, L_SHOULDER, NUM_KEYPOINTS, R_HIP, R_SHOULDER
from generation.project import exact_detections, inside_planar
from generation.types import Cameras, Observations

TENSOR_FILE = "detector_rendered.safetensors"
MANIFEST = "manifest.json"
DETECTOR_PX = 640.0  # YOLO's input: an image is seen shrunk to this size (never enlarged)
BAND_EDGES = (60.0, 100.0, 160.0, 260.0)  # detector-pixel size bands: <60, 60-100, 100-160, 160-260, >=260
N_BANDS = len(BAND_EDGES) + 1
N_POSE, N_VIEW, N_TRUNC = 2, 3, 2  # upright / not; facing / profile / away; truncated or not
N_CELLS = N_BANDS * N_POSE * N_VIEW * N_TRUNC
MIN_CELL = 40  # a cell with fewer rows draws from a coarser one
UPRIGHT_COS = math.cos(math.radians(45.0))
VIEW_RATIO = 0.3  # |shoulder width across the torso / torso length| below this: profile
DIST_EDGES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0)  # outside distance bins (person sizes)
N_DIST = len(DIST_EDGES) + 1
N_QUANT = 33  # quantiles per confidence / inset table
PAIRS = tuple((i, FLIP_INDEX[i]) for i in range(NUM_KEYPOINTS) if FLIP_INDEX[i] > i)  # 8 left/right pairs
AXIS_MIN = 0.05  # a joint nearer the person's centre than this x size takes the torso axes (joint_axes)
SCALE_RANGE = (0.3, 1.7)  # a detection's global scale (similarity), clamped to this


# ------------------------------------------------------------------------------------------ person frame
def person_frame(gt: Tensor, img: Tensor | None) -> dict[str, Tensor]:
    """Conditions of each person from its exact pixels ``gt`` (B, 17, 2), image size ``img`` (B, 2) or None.

    Returns ``size`` (B,) keypoint-box extent (camera px, NaN-safe), ``up`` / ``right`` (B, 2) unit torso
    axes in the image (mid-hip -> mid-shoulder; the image's up when degenerate), ``pose`` (0 upright, 1 not),
    ``view`` (0 facing, 1 profile, 2 away), ``trunc`` (0/1: a joint outside the image).
    """
    fr = frame_planar(geometry.planar(gt), None if img is None else img.T.contiguous())
    return {**fr, "up": fr["up"].T, "right": fr["right"].T}


def frame_planar(pp: Tensor, img: Tensor | None) -> dict[str, Tensor]:
    """:func:`person_frame` on planar pixels ``pp`` (2, 17, B) and image sizes ``img`` (2, B); ``up`` and
    ``right`` come back planar (2, B)."""
    finite = torch.isfinite(pp).all(0)  # (J, B)
    lo = torch.where(finite, pp, torch.inf).amin(1)
    hi = torch.where(finite, pp, -torch.inf).amax(1)
    ext = torch.nan_to_num(hi - lo, nan=0.0, posinf=0.0, neginf=0.0)
    size = ext.amax(0).clamp(1.0, 1e5)
    torso = 0.5 * (pp[:, L_SHOULDER] + pp[:, R_SHOULDER] - pp[:, L_HIP] - pp[:, R_HIP])  # (2, B)
    length = torch.sqrt(torso[0] * torso[0] + torso[1] * torso[1])
    ok = torch.isfinite(length) & (length > 0.05 * size)
    image_up = torch.tensor([0.0, -1.0], dtype=pp.dtype, device=pp.device)[:, None]
    up = torch.where(ok, torso / length.clamp_min(1e-6), image_up)
    right = torch.stack((-up[1], up[0]))
    pose = (-up[1] < UPRIGHT_COS).long()
    shoulder = torch.nan_to_num(pp[:, L_SHOULDER] - pp[:, R_SHOULDER])  # person's left minus right
    ratio = (shoulder * right).sum(0) / torch.where(ok, length, 0.05 * size)
    view = torch.where(ratio > VIEW_RATIO, 0, torch.where(ratio < -VIEW_RATIO, 2, 1))
    if img is None:
        trunc = torch.zeros_like(view)
    else:
        trunc = (inside_planar(pp, img[0], img[1]) < 0.5).any(0).long()
    return {"size": size, "up": up, "right": right, "pose": pose, "view": view, "trunc": trunc}


def joint_axes(pp: Tensor, up: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-joint residual axes (planar (2, 17, B) each): ``radial``, the unit vector from the person's centre
    (the mean of its 17 exact joints) to the joint, and ``tangential``, it turned by 90 degrees; a joint
    within :data:`AXIS_MIN` sizes of the centre uses the torso's ``up`` (2, B) instead; and the centre (2, B).
    Residuals stored on these axes transplant between poses: a detector that draws the skeleton shorter moves
    every joint toward the centre, whatever the pose (on the torso frame that shrinking became noise on
    another pose)."""
    finite = torch.isfinite(pp).all(0)  # (J, B)
    n = finite.sum(0).clamp_min(1)
    c = torch.where(finite, pp, 0.0).sum(1) / n  # (2, B)
    d = torch.nan_to_num(pp - c[:, None])
    length = torch.sqrt(d[0] * d[0] + d[1] * d[1])
    ok = length > AXIS_MIN * size
    radial = torch.where(ok, d / length.clamp_min(1e-9), up[:, None])
    return radial, torch.stack((-radial[1], radial[0])), c


def similarity(a: Tensor, b: Tensor, use: Tensor) -> tuple[Tensor, Tensor]:
    """``b ~ shift + scale * a`` per row over the joints ``use`` (B, 17) of ``a``, ``b`` (B, 17, 2): the
    detection's global scale (YOLO draws skeletons shorter or longer as a whole: the median ratio of the
    joints' distances from the centroids, over joints beyond a quarter of the farthest) and the centroid
    shift; rows with fewer than 3 such joints: scale 1. Scale clamped to :data:`SCALE_RANGE`."""
    w = use.to(a.dtype)[..., None]
    n = w.sum(1).clamp_min(1.0)  # (B, 1)
    am, bm = (a * w).sum(1) / n, (b * w).sum(1) / n  # (B, 2)
    ra = torch.nan_to_num(a - am[:, None]).norm(dim=-1)  # (B, J) distances from the centroids
    rb = torch.nan_to_num(b - bm[:, None]).norm(dim=-1)
    far = use & (ra > 0.25 * ra.amax(1, keepdim=True))  # joints far enough out to tell a scale
    ratio = torch.where(far, rb / ra.clamp_min(1e-9), torch.nan)
    scale = torch.nan_to_num(
        ratio.nanmedian(1).values, nan=1.0
    )  # robust: a few misplaced joints are not a scale
    scale = torch.where(far.sum(1) >= 3, scale.clamp(*SCALE_RANGE), torch.ones_like(scale))
    return scale, torch.nan_to_num(bm - scale[:, None] * am)


def inside(xy: Tensor, img: Tensor) -> Tensor:
    """(B, 17) bool: pixels ``xy`` (B, 17, 2) inside ``[0, w) x [0, h)`` of ``img`` (B, 2); NaN is outside."""
    w, h = img[:, None, 0], img[:, None, 1]
    x, y = xy[..., 0], xy[..., 1]
    return (x >= 0) & (x < w) & (y >= 0) & (y < h)


def size_band(det_px: Tensor) -> Tensor:
    """Size band index (0..4) of detector-pixel sizes."""
    return torch.bucketize(det_px, torch.tensor(BAND_EDGES, dtype=det_px.dtype, device=det_px.device))


def image_detector_scale(img: Tensor) -> Tensor:
    """How much images of size ``img`` (B, 2) are shrunk for the detector: ``min(1, 640 / max(w, h))``."""
    return (DETECTOR_PX / img.amax(-1).clamp_min(1.0)).clamp(max=1.0)


def cell_index(band: Tensor, pose: Tensor, view: Tensor, trunc: Tensor) -> Tensor:
    """Flat index of the (band, pose, view, trunc) cell."""
    return ((band * N_POSE + pose) * N_VIEW + view) * N_TRUNC + trunc


def swap_index(flip: Tensor, swapped: Tensor) -> Tensor:
    """(B, 17) joint index reading ``det`` after a body ``flip`` (B,) or pair swaps ``swapped`` (B, 8)."""
    B = flip.shape[0]
    idx = torch.arange(NUM_KEYPOINTS, device=flip.device).expand(B, -1).clone()
    for k, (a, b) in enumerate(PAIRS):
        m = swapped[:, k] | flip
        idx[:, a] = torch.where(m, b, a)
        idx[:, b] = torch.where(m, a, b)
    return idx


# ------------------------------------------------------------------------------------------ asset storage
def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_asset(path: Path | str, sha256: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, manifest)`` of an asset dir; the tensor file must match the manifest's sha256 (and
    ``sha256`` when given). A missing file or a mismatch raises :class:`InputError` naming the file."""
    from safetensors.numpy import load_file

    path = Path(path)
    man_path, ten_path = path / MANIFEST, path / TENSOR_FILE
    for p in (man_path, ten_path):
        if not p.is_file():
            raise InputError(f"detector model: missing file {p}")
    try:
        manifest = json.loads(man_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"detector model: unreadable manifest {man_path}: {e}") from e
    digest = sha256_file(ten_path)
    for want, where in ((manifest.get("sha256"), man_path), (sha256, "the noise config")):
        if want is not None and digest != want:
            raise InputError(
                f"detector model: {ten_path} has sha256 {digest[:12]}..., {where} says {str(want)[:12]}..."
            )
    return load_file(str(ten_path)), manifest


def resolve_asset(asset: str | Path) -> Path:
    """An asset dir: absolute, or relative to the ``generation`` package (``data/detector_rendered``), or to
    the working directory."""
    p = Path(asset)
    if p.is_absolute():
        return p
    pkg = Path(__file__).resolve().parent
    for base in (pkg, pkg / "data"):
        if (base / p).is_dir():
            return base / p
    return p.resolve()


# ----------------------------------------------------------------------------------------------- the noise
class RenderedNoise:
    """Callable ``(obs, generator, cameras=None) -> det_xyc (B, 17, 3)``: the fitted detector model."""

    def __init__(
        self,
        asset: str = "data/detector_rendered",
        sha256: str | None = None,
        name: str = "rendered",
        enabled: bool = True,
        visibility_threshold: float = 0.1,
        forced_complete_share: float = 0.4,
        nan_share: float = 0.3,
        guess_rel_sigma: float = 0.12,
        unseen_conf_max: float = 0.05,
        forced_conf: float = 0.01,
        conf_jitter: float = 0.015,
        border_clamp_prob: float | None = None,
        occluder_prob: float = 0.0,
    ) -> None:
        """``border_clamp_prob``: None or > 0: the learned border behaviour; 0: off (outside joints unseen),
        as DetectorNoise's key (the truncation suite's no-border variant). ``occluder_prob``: only 0 (the
        renders have no occluders; accepted so that configs written for DetectorNoise compose)."""
        self.name, self.enabled = name, bool(enabled)
        self.threshold = float(visibility_threshold)
        self.forced_share, self.nan_share = float(forced_complete_share), float(nan_share)
        self.guess_rel_sigma = float(guess_rel_sigma)
        self.unseen_conf_max, self.forced_conf = float(unseen_conf_max), float(forced_conf)
        self.conf_jitter = float(conf_jitter)
        self.border = border_clamp_prob is None or float(border_clamp_prob) > 0
        if float(occluder_prob) != 0.0:
            raise ValueError(
                "noise=rendered models no occluders (the renders have none): occluder_prob must be 0, "
                f"got {occluder_prob}"
            )
        self.asset_dir = resolve_asset(asset)
        arrays, self.manifest = load_asset(self.asset_dir, sha256)
        self.arrays = {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
        self._on: dict[tuple[str, torch.dtype], dict[str, Tensor]] = {}
        for key in ("forced_share", "nan_share"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"noise.{key} must be a probability in [0, 1], got {getattr(self, key)}")
        if not (0.0 <= self.forced_conf < self.threshold and 0.0 < self.unseen_conf_max <= self.threshold):
            raise ValueError(
                f"noise: unseen confidences (forced_conf, unseen_conf_max) must be below the threshold "
                f"{self.threshold}"
            )

    def tables(self, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        """The model's arrays on ``device`` (floats as ``dtype``), cached."""
        key = (str(device), dtype)
        if key not in self._on:
            on = {
                k: v.to(device, dtype if v.is_floating_point() else torch.long)
                for k, v in self.arrays.items()
            }
            on["bank_planar"] = on["bank"].permute(2, 1, 0).reshape(-1, on["bank"].shape[0]).contiguous()
            on["smooth_t"] = on["smooth"].T.contiguous()  # (17, bands)
            self._on[key] = on
        return self._on[key]

    def __call__(
        self,
        obs: Observations,
        generator: torch.Generator,
        cameras: Cameras | None = None,
        detector_scale: Tensor | None = None,
    ) -> Tensor:
        """Detector-like ``(B, 17, 3)`` keypoints for ``obs`` (exact pixels ``gt_px``); ``cameras`` gives the
        image size (border, detector scale; none: no border, scale 1). ``detector_scale`` (B,) overrides the
        scale (the render pairs' own, for benchmarks)."""
        px = obs.gt_px
        if not self.enabled:
            return exact_detections(px, obs.gt_visible)
        img = None
        if cameras is not None:
            img = torch.stack((cameras.img_w, cameras.img_h), -1).to(px.device, px.dtype)
        if detector_scale is None:
            detector_scale = image_detector_scale(img) if img is not None else torch.ones_like(px[:, 0, 0])
        return sample(self, px, img, detector_scale.to(px.device, px.dtype), generator)


def sample(nz: RenderedNoise, px: Tensor, img: Tensor | None, scale: Tensor, g: torch.Generator) -> Tensor:
    """The math of :meth:`RenderedNoise.__call__`: exact pixels ``px`` (B, 17, 2), image ``img`` (B, 2) or
    None, detector ``scale`` (B,). Runs on planar (component, joint, sample) storage (long vector loops over
    samples, like :mod:`generation.noise`); returns a (B, 17, 3) view of (3, 17, B) storage."""
    B, J = px.shape[:2]
    dev, dt = px.device, px.dtype
    t = nz.tables(dev, dt)
    pp = geometry.planar(px)  # (2, J, B); free when px is a view of planar storage (the generator's)
    img2 = None if img is None else img.T.contiguous()  # (2, B)
    fr = frame_planar(pp, img2)
    size = fr["size"]
    band = size_band(size * scale)
    cell = cell_index(band, fr["pose"], fr["view"], fr["trunc"])
    # Random numbers: 3 per detection (bank row, forced pattern, left/right pattern), 5 per joint (2 normals:
    # kernel or guess, exclusive; 1 normal: confidence kernel; 2 uniforms: outside confidence, inset or
    # unseen choice, exclusive).
    s = torch.rand(3, B, generator=g, device=dev, dtype=dt)
    nrm = torch.randn(3, J, B, generator=g, device=dev, dtype=dt)
    u = torch.rand(2, J, B, generator=g, device=dev, dtype=dt)
    count = t["cell_count"][cell]
    pick = t["pool_index"][t["cell_start"][cell] + (s[0] * count).long().clamp_max(count - 1)]
    row = t["bank_planar"].index_select(1, pick).view(3, J, B)
    h = t["smooth_t"].index_select(1, band)  # (J, B)
    radial, tangential, centre = joint_axes(pp, fr["up"], size)
    r0 = (row[0] + h * nrm[0]) * size  # along each joint's tangential, radial axis (joint_axes), in pixels
    r1 = (row[1] + h * nrm[1]) * size
    gl = t["bank_global"].index_select(0, pick).T  # (3, B): scale, shift along the torso's right / up
    shift = (gl[1] * fr["right"] + gl[2] * fr["up"]) * size  # (2, B)
    base = centre[:, None] + shift[:, None] + gl[0] * (pp - centre[:, None])  # the scaled, shifted skeleton
    x = base[0] + r0 * tangential[0] + r1 * radial[0]
    y = base[1] + r0 * tangential[1] + r1 * radial[1]
    conf = (row[2] + nz.conf_jitter * nrm[2]).clamp(0.0, 1.0)
    forced = s[1] < nz.forced_share  # (B,)
    finite = torch.isfinite(pp).all(0)
    if img2 is None:
        seen = finite & (conf >= nz.threshold)
        bound = _box_bound(pp, size)  # (2, B)
    elif not nz.border:
        seen = (inside_planar(pp, img2[0], img2[1]) > 0.5) & (conf >= nz.threshold)
        bound = img2
    else:
        bound = img2
        in_frame = inside_planar(pp, img2[0], img2[1]) > 0.5
        # Outside joints (sparse): a confidence from the (band, distance) table; reported ones clamped.
        o = (~in_frame & finite).flatten().nonzero().squeeze(1)
        jo, bo = o // B, o % B
        d = torch.maximum(-pp[:, jo, bo], pp[:, jo, bo] - img2[:, bo]).amax(0) / size[bo]
        k = band[bo] * N_DIST + torch.bucketize(d, _edges(dev, dt))
        conf_o = _table_draw(t["outside_conf"].reshape(-1, N_QUANT), k, u[0, jo, bo])
        conf.view(-1)[o] = conf_o
        rep = (conf_o >= nz.threshold) & ~forced[bo]
        c, jc, bc = o[rep], jo[rep], bo[rep]
        inset = _table_draw(t["inset"][None], torch.zeros_like(c), u[1, jc, bc]) * size[bc]
        x.view(-1)[c] = _onto_border(pp[0, jc, bc], x.view(-1)[c], img2[0, bc], inset)
        y.view(-1)[c] = _onto_border(pp[1, jc, bc], y.view(-1)[c], img2[1, bc], inset)
        seen = in_frame & (conf >= nz.threshold)
        seen.view(-1)[c] = True
    # Unseen joints (sparse): DetectorNoise's two patterns.
    n = (~seen).flatten().nonzero().squeeze(1)
    jn, bn = n // B, n % B
    fn, un = forced[bn], u[1, jn, bn]
    for coord, v in ((0, x), (1, y)):
        guess = pp[coord, jn, bn] + nz.guess_rel_sigma * size[bn] * nrm[coord, jn, bn]
        cand = torch.where(fn, guess, v.view(-1)[n])
        cand = torch.minimum(torch.nan_to_num(cand, nan=0.0).clamp_min(0.0), bound[coord, bn])
        v.view(-1)[n] = torch.where(~fn & (un < nz.nan_share), torch.nan, cand)
    conf.view(-1)[n] = _unseen_conf(nz, fn, un)
    det = torch.stack((x, y, conf))  # (3, J, B)
    # Left/right confusions: a drawn pattern of swapped pairs (a flip: all of them), on the rows with one.
    lr = band * N_VIEW + fr["view"]
    rows = (s[2] >= t["swap_cdf"][:, 0][lr]).nonzero().squeeze(1)
    if rows.numel():
        cdf = t["swap_cdf"][lr[rows]]  # (R, 256)
        code = torch.searchsorted(cdf, s[2, rows, None]).clamp_max(cdf.shape[1] - 1)
        swapped = (code >> torch.arange(len(PAIRS), device=dev)) & 1 > 0  # (R, 8)
        idx = swap_index(torch.zeros_like(swapped[:, 0]), swapped).T  # (J, R)
        det[:, :, rows] = det[:, :, rows].gather(1, idx[None].expand(3, -1, -1))
    return det.permute(2, 1, 0)  # (B, J, 3) view of planar storage


def _edges(dev: torch.device, dt: torch.dtype) -> Tensor:
    return torch.tensor(DIST_EDGES, device=dev, dtype=dt)


def _box_bound(pp: Tensor, size: Tensor) -> Tensor:
    """(2, B) upper bounds for guessed positions without an image: the keypoint box grown by 50%."""
    hi = torch.nan_to_num(torch.where(torch.isfinite(pp), pp, -torch.inf).amax(1), nan=0.0, neginf=0.0)
    return hi + 0.5 * size


def _table_draw(table: Tensor, k: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF draw from row ``k`` (...) of quantile tables ``table`` (rows, N_QUANT) at uniforms ``u``
    (...), linear between quantiles."""
    n = table.shape[-1]
    pos = u * (n - 1)
    i = pos.long().clamp_max(n - 2)
    flat = table.reshape(-1)
    lo = flat[k * n + i]
    hi = flat[k * n + i + 1]
    return lo + (pos - i) * (hi - lo)


def _onto_border(p: Tensor, v: Tensor, w: Tensor, inset: Tensor) -> Tensor:
    """YOLO's clamp on one coordinate: exact ``p`` past a border -> ``inset`` px inside it; otherwise the
    noisy ``v`` clipped to ``[0, w]`` (all 1-D: the clamped joints)."""
    along = torch.minimum(torch.nan_to_num(v, nan=0.0).clamp_min(0.0), w)
    return torch.where(p < 0, inset, torch.where(p >= w, w - inset, along))


def _unseen_conf(nz, forced: Tensor, u: Tensor) -> Tensor:
    """Unseen confidences: ``forced_conf x [0.5, 1.5)`` (forced-complete) or ``[0, unseen_conf_max)``."""
    return torch.where(forced, nz.forced_conf * (0.5 + u), nz.unseen_conf_max * u)
