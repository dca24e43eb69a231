"""Fitting the learned detector model (issue 20) from render pairs, and its summaries: the other half of
:mod:`generation.detector_model` (which samples it), kept apart so the sampler stays small.

``fit(lines)`` turns (exact keypoints, YOLO keypoints) pair lines (``generation/render/testset.py`` /
``campaign.py`` parts) into the model's arrays: the bank of whole detections (global scale + shift, local
residuals on each joint's axes, confidences) per cell, the outside-frame confidence and inset tables, the
left/right confusion patterns, the kernel widths; ``save_asset`` writes them (safetensors + manifest with
sha256 and provenance). ``band_stats`` / ``observations`` summarise detections per size band (the held-out
statistics stored in the manifest, the tests and the benchmark). Run by ``experiments/fit_detector_model.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from depth_pose import geometry
from depth_pose.keypoints import NUM_KEYPOINTS
from generation.detector_model import (
    BAND_EDGES,
    DIST_EDGES,
    MANIFEST,
    MIN_CELL,
    N_BANDS,
    N_CELLS,
    N_DIST,
    N_POSE,
    N_QUANT,
    N_TRUNC,
    N_VIEW,
    PAIRS,
    TENSOR_FILE,
    cell_index,
    inside,
    joint_axes,
    person_frame,
    sha256_file,
    similarity,
    size_band,
    swap_index,
)
from generation.types import Cameras, Observations

SWAP_MARGIN = 0.6  # swapped when the crossed assignment costs < this x the straight one
SWAP_MIN_SEP = 0.08  # ... and the pair is apart by > this x size (else left/right is not identifiable)
FLIP_SHARE = 0.75  # a whole-body flip: this share of the identifiable pairs swapped (at least 3)
REPORTED = 0.1  # confidence of a reported joint in the source (YOLO's / the project's threshold)


def outside_distance(pp: Tensor, img: Tensor) -> Tensor:
    """(17, B) pixels beyond the image border of planar pixels ``pp`` (2, 17, B), image ``img`` (2, B); 0
    inside, NaN stays NaN."""
    return torch.maximum(-pp, pp - img[:, None]).clamp_min(0.0).amax(0)


# ----------------------------------------------------------------------------------------------- source lines
def parse_lines(lines: Iterable[dict]) -> dict[str, np.ndarray]:
    """Arrays of render-pair lines: ``gt`` (N, 17, 2), ``det`` (N, 17, 3; NaN when missed), ``img`` (N, 2),
    ``scale`` (N,) detector scale, ``missed`` (N,) bool."""
    gt, det, img, scale, missed = [], [], [], [], []
    for line in lines:
        gt.append(np.asarray(line["gt_xy"], np.float64))
        kp = line.get("keypoints_xyc")
        kp = np.array([[np.nan if v is None else v for v in r] for r in kp], np.float64) if kp else None
        miss = bool(line.get("missed")) or kp is None or not np.isfinite(kp).any()
        det.append(np.full((NUM_KEYPOINTS, 3), np.nan) if miss else kp)
        img.append(np.asarray(line["image_wh"], np.float64))
        scale.append(float(line.get("detector_scale", 1.0)))
        missed.append(miss)
    return {
        "gt": np.stack(gt),
        "det": np.stack(det),
        "img": np.stack(img),
        "scale": np.asarray(scale),
        "missed": np.asarray(missed),
    }


def find_swaps(gt: Tensor, det: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Left/right confusions in detections: ``(flip (B,), swapped (B, 8), identifiable (B, 8))``.

    A pair is swapped when the crossed assignment fits better (cost < :data:`SWAP_MARGIN` x straight) and the
    pair is identifiable (apart by > :data:`SWAP_MIN_SEP` x size); a flip: most identifiable pairs swapped.
    """
    a = torch.tensor([p[0] for p in PAIRS])
    b = torch.tensor([p[1] for p in PAIRS])
    ga, gb, da, db = gt[:, a], gt[:, b], det[:, a, :2], det[:, b, :2]
    straight = (da - ga).norm(dim=-1) + (db - gb).norm(dim=-1)
    crossed = (da - gb).norm(dim=-1) + (db - ga).norm(dim=-1)
    ident = ((ga - gb).norm(dim=-1) > SWAP_MIN_SEP * size[:, None]) & torch.isfinite(straight + crossed)
    swapped = ident & (crossed < SWAP_MARGIN * straight)
    n_ident = ident.sum(1)
    flip = (n_ident >= 3) & (swapped.sum(1) >= FLIP_SHARE * n_ident)
    return flip, swapped & ~flip[:, None], ident


def unswap(det: Tensor, flip: Tensor, swapped: Tensor) -> Tensor:
    """``det`` (B, 17, C) with the found flips / pair swaps undone (a swap is its own inverse)."""
    return det.gather(1, swap_index(flip, swapped)[..., None].expand_as(det))


# ------------------------------------------------------------------------------------------------------ fit
def _conditions(src: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """Per-person conditions of parsed lines (torch, float64)."""
    gt = torch.from_numpy(src["gt"])
    img = torch.from_numpy(src["img"])
    fr = person_frame(gt, img)
    fr["band"] = size_band(fr["size"] * torch.from_numpy(src["scale"]))
    fr["cell"] = cell_index(fr["band"], fr["pose"], fr["view"], fr["trunc"])
    fr["inside"] = inside(gt, img)
    return fr


def _pools(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows each cell draws from: its own, else the first coarser cell (any view, then any pose, then any
    truncation, then the whole bank) holding >= :data:`MIN_CELL`. Returns (index, start, count)."""
    band, rest = np.divmod(cell, N_POSE * N_VIEW * N_TRUNC)
    pose, rest = np.divmod(rest, N_VIEW * N_TRUNC)
    view, trunc = np.divmod(rest, N_TRUNC)
    index, start, count = [], [], []
    for c in range(N_CELLS):
        cb, cr = divmod(c, N_POSE * N_VIEW * N_TRUNC)
        cp, cr = divmod(cr, N_VIEW * N_TRUNC)
        cv, ct = divmod(cr, N_TRUNC)
        levels = (
            (band == cb) & (pose == cp) & (view == cv) & (trunc == ct),
            (band == cb) & (pose == cp) & (trunc == ct),
            (band == cb) & (trunc == ct),
            band == cb,
            np.ones_like(band, bool),
        )
        rows = next(np.nonzero(m)[0] for m in levels if m.sum() >= MIN_CELL or m is levels[-1])
        start.append(len(index))
        count.append(len(rows))
        index.extend(rows.tolist())
    return np.asarray(index, np.int32), np.asarray(start, np.int32), np.asarray(count, np.int32)


def _impute(bank: np.ndarray, valid: np.ndarray, cell: np.ndarray, pools: tuple, rng) -> np.ndarray:
    """Fill each row's invalid joints (outside the image in the source) from a random donor row of the same
    cell pool that has that joint (the whole bank when none has)."""
    index, start, count = pools
    out = bank.copy()
    for c in range(N_CELLS):
        rows = np.nonzero(cell == c)[0]
        if not len(rows):
            continue
        pool = index[start[c] : start[c] + count[c]]
        for j in range(NUM_KEYPOINTS):
            need = rows[~valid[rows, j]]
            if not len(need):
                continue
            donors = pool[valid[pool, j]]
            if not len(donors):
                donors = np.nonzero(valid[:, j])[0]
            out[need, j] = bank[rng.choice(donors, len(need)), j]
    return out


def _quantiles(values: np.ndarray) -> np.ndarray:
    """:data:`N_QUANT` evenly spaced quantiles (0..1) of ``values``."""
    return np.quantile(values, np.linspace(0.0, 1.0, N_QUANT))


def _outside_tables(src, fr, det_u: Tensor) -> dict[str, np.ndarray]:
    """Confidence quantiles per (band, distance bin) of outside joints, and the inset of reported ones."""
    img = torch.from_numpy(src["img"])
    gt = torch.from_numpy(src["gt"])
    d = (outside_distance(geometry.planar(gt), img.T) / fr["size"]).T.numpy()
    out = (~fr["inside"]).numpy() & np.isfinite(d) & ~src["missed"][:, None]
    conf = det_u[..., 2].numpy()
    dbin = np.digitize(d, DIST_EDGES)
    band = np.broadcast_to(fr["band"].numpy()[:, None], d.shape)
    table = np.zeros((N_BANDS, N_DIST, N_QUANT))
    for b in range(N_BANDS):
        for k in range(N_DIST):
            m = out & (dbin == k) & (band == b)
            if m.sum() < MIN_CELL:
                m = out & (dbin == k)
            if m.sum() < MIN_CELL:  # far bins: pool the neighbours beyond
                m = out & (dbin >= k - 1)
            table[b, k] = _quantiles(conf[m]) if m.any() else 0.0
    xy = det_u[..., :2].numpy()
    g, w = src["gt"], src["img"][:, None, :]
    inset = np.where(g < 0, xy, np.where(g >= w, w - xy, np.nan))  # per coordinate past a border
    rep = out & (conf >= REPORTED)
    ins = np.where(rep[..., None] & np.isfinite(inset), inset, -np.inf).max(-1) / fr["size"].numpy()[:, None]
    ins = np.clip(ins[np.isfinite(ins)], 0.0, None)
    return {"outside_conf": table, "inset": _quantiles(ins) if len(ins) else np.zeros(N_QUANT)}


def _swap_rates(fr, flip: Tensor, swapped: Tensor, seen: np.ndarray) -> dict[str, np.ndarray]:
    """Left/right confusion patterns per (size band, view): ``swap_cdf`` (bands x views, 256) the cumulative
    distribution of the 8-bit mask of swapped pairs over detected people (a flip = all 8), so that correlated
    swaps (a whole leg) keep their joint rate; a cell with < 4 x :data:`MIN_CELL` people uses its view's.
    ``p_flip`` (views,): the flip rate (reported)."""
    view, band = fr["view"].numpy(), fr["band"].numpy()
    bits = (swapped.long() << torch.arange(len(PAIRS))).sum(1)
    code = torch.where(flip, 2 ** len(PAIRS) - 1, bits).numpy()
    n_codes = 2 ** len(PAIRS)
    cdf = np.zeros((N_BANDS * N_VIEW, n_codes))
    for b in range(N_BANDS):
        for v in range(N_VIEW):
            m = seen & (view == v) & (band == b)
            if m.sum() < 4 * MIN_CELL:
                m = seen & (view == v)
            hist = np.bincount(code[m], minlength=n_codes) if m.any() else np.eye(1, n_codes)[0]
            cdf[b * N_VIEW + v] = np.cumsum(hist) / hist.sum()
    p_flip = np.array([flip.numpy()[seen & (view == v)].mean() for v in range(N_VIEW)])
    return {"swap_cdf": cdf, "p_flip": np.nan_to_num(p_flip)}


def fit(lines: Iterable[dict], seed: int = 0) -> dict[str, np.ndarray]:
    """Fit the model on render-pair lines (dicts as in ``people.jsonl``); returns its arrays (module doc)."""
    src = parse_lines(lines)
    fr = _conditions(src)
    seen = ~src["missed"]
    gt = torch.from_numpy(src["gt"])
    det = torch.from_numpy(np.nan_to_num(src["det"], nan=0.0))
    flip, swapped, _ = find_swaps(gt, det, fr["size"])
    flip, swapped = flip & torch.from_numpy(seen), swapped & torch.from_numpy(seen)[:, None]
    det_u = unswap(det, flip, swapped)
    radial, tangential, centre = joint_axes(geometry.planar(gt), fr["up"].T, fr["size"])
    use = fr["inside"] & (det_u[..., 2] >= REPORTED)
    scale, shift = similarity(gt - centre.T[:, None], det_u[..., :2] - centre.T[:, None], use)
    fitted = centre.T[:, None] + shift[:, None] + scale[:, None, None] * (gt - centre.T[:, None])
    res = geometry.planar((det_u[..., :2] - fitted) / fr["size"][:, None, None])  # (2, J, B)
    along_t = (res * tangential).sum(0).T  # (B, J)
    along_r = (res * radial).sum(0).T
    rows = torch.stack((along_t, along_r, det_u[..., 2]), -1).numpy()[seen]  # (N, 17, 3)
    shift_n = shift / fr["size"][:, None]  # in sizes, on the torso's right / up axes
    glob = torch.stack((scale, (shift_n * fr["right"]).sum(-1), (shift_n * fr["up"]).sum(-1)), -1).numpy()[
        seen
    ]
    valid = fr["inside"].numpy()[seen] & np.isfinite(rows).all(-1)
    cell = fr["cell"].numpy()[seen]
    pools = _pools(cell)
    bank = _impute(np.nan_to_num(rows), valid, cell, pools, np.random.default_rng(seed))
    model = {
        "bank": bank.astype(np.float16),
        "bank_global": glob.astype(np.float32),
        "pool_index": pools[0],
        "cell_start": pools[1],
        "cell_count": pools[2],
        "smooth": _smoothing(rows, valid, fr["band"].numpy()[seen]),
        "person_miss": _person_miss(fr["band"].numpy(), src["missed"]),
        **_outside_tables(src, fr, det_u),
        **_swap_rates(fr, flip, swapped, seen),
    }
    return {k: np.asarray(v) for k, v in model.items()}


def _smoothing(rows: np.ndarray, valid: np.ndarray, band: np.ndarray, factor: float = 0.2) -> np.ndarray:
    """Kernel sigma per (band, joint): ``factor`` x the robust spread (1.4826 MAD) of reported residuals."""
    out = np.zeros((N_BANDS, NUM_KEYPOINTS))
    for b in range(N_BANDS):
        for j in range(NUM_KEYPOINTS):
            m = valid[:, j] & (band == b) & (rows[:, j, 2] >= REPORTED)
            r = rows[m, j, :2].ravel()
            if len(r) >= 10:
                out[b, j] = factor * 1.4826 * np.median(np.abs(r - np.median(r)))
    return out


def _person_miss(band: np.ndarray, missed: np.ndarray) -> np.ndarray:
    """Share of people YOLO missed per size band (reported, not applied)."""
    return np.array([missed[band == b].mean() if (band == b).any() else 0.0 for b in range(N_BANDS)])


def save_asset(model: dict[str, np.ndarray], dest: Path | str, provenance: dict[str, Any]) -> str:
    """Write ``dest/detector_rendered.safetensors`` (float16 bank, float32 tables, int32 indices) and
    ``dest/manifest.json`` (its sha256 + ``provenance``); returns the sha256."""
    from safetensors.numpy import save_file

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for k, v in model.items():
        v = np.asarray(v)
        if v.dtype.kind == "f" and v.dtype != np.float16:
            v = v.astype(np.float32)
        elif v.dtype.kind in "iub":
            v = v.astype(np.int32)
        arrays[k] = np.ascontiguousarray(v)
    path = dest / TENSOR_FILE
    tmp = path.with_suffix(".tmp")
    save_file(arrays, str(tmp), metadata={"format": "depth_pose.detector_rendered.v1"})
    tmp.replace(path)
    path.chmod(0o644)
    digest = sha256_file(path)
    manifest = {"tensor_file": TENSOR_FILE, "sha256": digest, **provenance}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return digest


# ------------------------------------------------------------------------------------------ summaries
def band_stats(
    gt: Tensor, det: Tensor, img: Tensor, scale: Tensor, threshold: float = REPORTED
) -> list[dict[str, float]]:
    """Per size band: people, median radial normalised error and median confidence of reported in-frame
    joints, in-frame miss rate, clamp rate of outside joints. Detections ``det`` (B, 17, 3); people missed
    as a whole (no finite confidence) are left out (the generator keeps every row)."""
    found = torch.isfinite(det[..., 2]).any(1)
    gt, det, img, scale = gt[found], det[found], img[found], scale[found]
    fr = person_frame(gt, img)
    band = size_band(fr["size"] * scale)
    inn = inside(gt, img) & torch.isfinite(gt).all(-1)
    out = ~inside(gt, img) & torch.isfinite(gt).all(-1)
    conf = torch.nan_to_num(det[..., 2], nan=0.0)
    rep = conf >= threshold
    err = (det[..., :2] - gt).norm(dim=-1) / fr["size"][:, None]
    stats = []
    for b in range(N_BANDS):
        m = (band == b)[:, None]
        r = inn & rep & m & torch.isfinite(err)
        stats.append(
            {
                "band": b,
                "people": int(m.sum()),
                "median_err": float(err[r].median()) if r.any() else float("nan"),
                "median_conf": float(conf[r].median()) if r.any() else float("nan"),
                "miss_rate": float((~rep & inn & m).sum() / (inn & m).sum().clamp_min(1)),
                "clamp_rate": float((rep & out & m).sum() / (out & m).sum().clamp_min(1)),
            }
        )
    return stats


def band_names() -> list[str]:
    """Labels of the size bands (detector px)."""
    e = [int(v) for v in BAND_EDGES]
    return [f"<{e[0]}"] + [f"{a}-{b}" for a, b in zip(e[:-1], e[1:], strict=True)] + [f">={e[-1]}"]


def observations(gt: Tensor, img: Tensor, K: Tensor | None = None) -> tuple[Observations, Cameras]:
    """Observations + Cameras for exact pixels ``gt`` (B, 17, 2) in images ``img`` (B, 2): what the noise
    models read (visible = inside the image; the 3D fields are zeros)."""
    B = gt.shape[0]
    z = torch.zeros(B, dtype=gt.dtype)
    K = torch.eye(3, dtype=gt.dtype).expand(B, 3, 3).clone() if K is None else K.to(gt.dtype)
    cams = Cameras(
        K=K,
        R=torch.eye(3, dtype=gt.dtype).expand(B, 3, 3).clone(),
        t=torch.zeros(B, 3, dtype=gt.dtype),
        img_w=img[:, 0].long(),
        img_h=img[:, 1].long(),
        height_m=z,
        tilt_deg=z,
        roll_deg=z,
        yaw_deg=z,
        hfov_deg=z,
    )
    vis = inside(gt, img) & torch.isfinite(gt).all(-1)
    obs = Observations(
        keypoints_cam=torch.zeros(B, NUM_KEYPOINTS, 3, dtype=gt.dtype),
        gt_px=gt,
        gt_visible=vis,
        det_xyc=torch.cat((gt, vis[..., None].to(gt.dtype)), -1),
        z_m=z,
        hip_cam=torch.zeros(B, 3, dtype=gt.dtype),
        ground_cam=torch.zeros(B, 3, dtype=gt.dtype),
        person_px_height=z,
    )
    return obs, cams


def joint_sha256(paths: Sequence[Path]) -> str:
    """One sha256 over the files' bytes, in the given order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()
