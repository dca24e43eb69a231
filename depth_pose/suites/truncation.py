"""Truncation suite (issue 19): how much depth error does a person cut by the frame cost?

The invariance suite's held-out people (:func:`depth_pose.suites.invariance.suite_people`: bodies of seed
``seed``, jittered named poses, here ``standing``) plus walking people (``walking``: the walk cycle of
:func:`depth_pose.suites.scenes.walk_sampler` on the same bodies), at the invariance suite's depths and yaws
in front of its level camera (:func:`depth_pose.suites.invariance.fixed_cameras`). For every person the frame
is cut (:data:`CUTS`): the bottom edge at the ankles, knees, hips, waist or chest, or the left / right edge
at the shoulder nearest to it, plus ``full`` (no cut). A cut is the same camera with a smaller sensor window
(:func:`generation.framing_cut.crop_cameras`): the image the detector sees is the cropped canvas, whose size
goes to the model (``image_wh``). Keypoints come from the detector-noise model with YOLO's border behaviour
(``border``: out-of-frame joints clamped onto the border with moderate confidence, ``conf/noise/yolo_border``)
and, when ``no_border_variant``, without it (``no_border``: the same jitter draws, out-of-frame joints
unseen).

Per variant and cut: n, median |z/true - 1|, median bias of z/true - 1, the median over the full-body median,
1 sigma coverage, and the share of rows with an out-of-frame joint reported visible; the targets of issue 19:
'cut at the hips' median <= ``targets.hips_over_full`` x the full-body median, and no cut with |bias| >
``targets.bias_abs``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from depth_pose.eval import plots
from depth_pose.eval.io import atomic_write_json, atomic_write_jsonl
from depth_pose.eval.metrics import median_iqr, relative_abs_error
from depth_pose.keypoints import INDEX
from depth_pose.suites.invariance import fixed_cameras, noise_label, repeat_people, suite_people
from depth_pose.suites.scenes import walk_sampler
from depth_pose.suites.tilt import bin_stats, prediction_columns
from generation.types import PosedBodies

FULL = "full"
BOTTOM_CUTS = ("ankles", "knees", "hips", "waist", "chest")
SIDE_CUTS = ("side_left", "side_right")
CUTS = (FULL, *BOTTOM_CUTS, *SIDE_CUTS)
WALKING = "walking"
BORDER, NO_BORDER = "border", "no_border"
# Waist and chest: this fraction of the way from the mid-hip up to the mid-shoulder level in the image.
TORSO_LEVEL = {"waist": 0.3, "chest": 0.65}
_PAIRS = {n: (INDEX[f"left_{j}"], INDEX[f"right_{j}"]) for n, j in (("ankles", "ankle"), ("knees", "knee"))}
_HIPS = (INDEX["left_hip"], INDEX["right_hip"])
_SHOULDERS = (INDEX["left_shoulder"], INDEX["right_shoulder"])


def truncation_people(cfg, g: torch.Generator) -> tuple[object, PosedBodies, list[str]]:
    """``(bodies, posed, labels)``: ``cfg.n_per_pose`` people of each named pose of ``cfg.poses``
    (:func:`suite_people`) and, when ``walking`` is listed, as many walking people on the same bodies."""
    names = [p for p in cfg.poses if p != WALKING]
    if not names:
        raise ValueError("truncation.poses needs at least one named pose besides 'walking' (e.g. standing)")
    bodies, posed, labels = suite_people(cfg, g, names)
    if WALKING in cfg.poses:
        n = int(cfg.n_per_pose)
        bi = torch.randint(0, len(bodies.shapes), (n,), generator=g)
        walk = bodies.pose(bi, walk_sampler().sample(n, g))
        extra = None
        if posed.extra_points is not None and walk.extra_points is not None:
            extra = torch.cat((posed.extra_points, walk.extra_points.to(posed.extra_points.device)))
        posed = PosedBodies(
            keypoints=torch.cat((posed.keypoints, walk.keypoints.to(posed.keypoints.device))),
            body_index=torch.cat((posed.body_index, walk.body_index.to(posed.body_index.device))),
            extra_points=extra,
        )
        labels = [*labels, *([WALKING] * n)]
    return bodies, posed, labels


def cut_windows(px: torch.Tensor, img_w: int, img_h: int, cut: list[str]) -> tuple[torch.Tensor, ...]:
    """``(x0, y0, w, h)`` (long, (B,)) of each row's cut ``cut[i]`` (:data:`CUTS`) from the exact pixels
    ``px`` (B, 17, 2) of the uncut image: the bottom edge just above the higher joint of a pair (ankles,
    knees, hips: both fall outside) or at a torso level (:data:`TORSO_LEVEL`), the left / right edge just
    inside the shoulder nearest to it (that shoulder falls outside)."""
    B = px.shape[0]
    u, v = px[..., 0].double(), px[..., 1].double()
    mid = lambda a, b: 0.5 * (v[:, a] + v[:, b])  # noqa: E731
    hip_v, sho_v = mid(*_HIPS), mid(*_SHOULDERS)
    level = {n: torch.minimum(v[:, a], v[:, b]) for n, (a, b) in _PAIRS.items()}
    level["hips"] = torch.minimum(v[:, _HIPS[0]], v[:, _HIPS[1]])
    level |= {n: hip_v + f * (sho_v - hip_v) for n, f in TORSO_LEVEL.items()}
    sho_u = u[:, list(_SHOULDERS)]
    x0 = torch.zeros(B, dtype=torch.long)
    y0 = torch.zeros(B, dtype=torch.long)
    w = torch.full((B,), img_w, dtype=torch.long)
    h = torch.full((B,), img_h, dtype=torch.long)
    for name in set(cut) - {FULL}:
        sel = torch.tensor([c == name for c in cut])
        if name in level:
            h[sel] = level[name][sel].floor().clamp(1, img_h).long()
        elif name == "side_left":
            x0[sel] = (sho_u[sel].amin(1).floor() + 1).clamp(0, img_w - 1).long()
            w[sel] = img_w - x0[sel]
        elif name == "side_right":
            w[sel] = sho_u[sel].amax(1).floor().clamp(1, img_w).long()
        else:
            raise ValueError(f"truncation.cuts: unknown cut {name!r} (known: {', '.join(CUTS)})")
    return x0, y0, w, h


def build_truncation_suite(cfg, progress: bool = True) -> dict:
    """The suite's samples (rows: person p, depth, yaw, cut; p major): labels, ground truth, the cropped
    cameras' K and image size, and per noise variant the keypoints."""
    from hydra.utils import instantiate

    from generation.framing_cut import crop_cameras
    from generation.project import observe

    g = torch.Generator().manual_seed(int(cfg.seed))
    bodies, posed, labels = truncation_people(cfg, g)
    cuts = list(cfg.cuts)
    P = posed.keypoints.shape[0]
    depths = torch.tensor(list(cfg.depths_m), dtype=torch.float32)
    yaws = torch.tensor(list(cfg.yaws_deg), dtype=torch.float32)
    D, Y, C = len(depths), len(yaws), len(cuts)
    rep = D * Y * C
    posed_all = repeat_people(posed, rep)
    depth = depths.repeat_interleave(Y * C).repeat(P)
    yaw = yaws.repeat_interleave(C).repeat(P * D)
    cut = [cuts[i % C] for i in range(P * rep)]
    W, H = int(cfg.img_w), int(cfg.img_h)
    cams0 = fixed_cameras(posed_all, depth, yaw, float(cfg.hfov_deg), W, H, float(cfg.cam_height_m))
    full = observe(posed_all, cams0)
    cams = crop_cameras(cams0, *cut_windows(full.gt_px.float().cpu(), W, H, cut))
    obs = observe(posed_all, cams)
    variants = {BORDER: {}}
    if bool(cfg.get("no_border_variant", True)):
        variants[NO_BORDER] = {"border_clamp_prob": 0.0}
    keypoints = {}
    for name, over in variants.items():
        noise = instantiate(cfg.noise, **over)
        # the same seed for every variant: the same jitter draws (the border draws come after them)
        gv = torch.Generator().manual_seed(int(cfg.seed) + 1)
        keypoints[name] = noise(obs, gv, cams).cpu().numpy().astype(np.float64)
    bi = posed_all.body_index.cpu()
    wh = torch.stack((cams.img_w, cams.img_h), 1).cpu().numpy()
    px = obs.gt_px.cpu().numpy()
    finite = np.isfinite(px).all(-1)
    outside = finite & ~(
        (px[..., 0] >= 0) & (px[..., 0] < wh[:, :1]) & (px[..., 1] >= 0) & (px[..., 1] < wh[:, 1:])
    )
    return {
        "pose": np.repeat(np.array(labels), rep),
        "cut": np.array(cut),
        "depth_m": depth.numpy(),
        "yaw_deg": yaw.numpy(),
        "body_index": bi.numpy(),
        "stature_m": bodies.shapes.stature_m[bi].cpu().numpy(),
        "z_true": obs.z_m.cpu().numpy().astype(np.float64),
        "px_height": full.person_px_height.cpu().numpy(),
        "image_wh": wh.astype(np.float64),
        "K": cams.K.cpu().numpy().astype(np.float64),
        "outside": outside,  # (N, 17): joint outside the cropped image
        "keypoints": keypoints,
    }


def summarise_truncation(
    s: dict, preds: dict[str, tuple[np.ndarray, np.ndarray]], vis_threshold: float, targets
) -> dict:
    """Per variant and cut: :func:`depth_pose.suites.tilt.bin_stats`, the median over the full-body median,
    the share of rows with out-of-frame joints and of rows with one reported visible; per cut x depth
    medians; the issue's targets with pass/fail."""
    z, cuts = s["z_true"], list(dict.fromkeys(s["cut"]))
    depths = sorted(np.unique(s["depth_m"]))
    per_cut, per_cut_depth, verdicts = {}, {}, {}
    any_out = s["outside"].any(1)
    for name, (zp, sig) in preds.items():
        seen_out = (s["outside"] & (s["keypoints"][name][..., 2] >= vis_threshold)).any(1)
        err = relative_abs_error(zp, z)
        stats = {}
        for c in cuts:
            sel = s["cut"] == c
            stats[c] = bin_stats(zp[sel], sig[sel], z[sel]) | {
                "rows_out_of_frame": float(any_out[sel].mean()),
                "out_of_frame_seen": float(seen_out[sel].mean()),
                "joints_out_of_frame_mean": float(s["outside"][sel].sum(1).mean()),
            }
        ref = stats[FULL]["median"] if FULL in stats else math.nan
        for c in cuts:
            stats[c]["over_full"] = stats[c]["median"] / ref if ref > 0 else math.nan
        per_cut[name] = stats
        per_cut_depth[name] = {
            c: {f"{d:g}": median_iqr(err[(s["cut"] == c) & (s["depth_m"] == d)])[0] for d in depths}
            for c in cuts
        }
        hips = stats.get("hips", {}).get("over_full", math.nan)
        worst = max(cuts, key=lambda c: abs(stats[c]["bias_median"]))
        verdicts[name] = {
            "hips_over_full": {
                "value": hips,
                "limit": float(targets.hips_over_full),
                "pass": bool(hips <= float(targets.hips_over_full)),
            },
            "max_abs_bias": {
                "cut": worst,
                "value": stats[worst]["bias_median"],
                "limit": float(targets.bias_abs),
                "pass": bool(abs(stats[worst]["bias_median"]) <= float(targets.bias_abs)),
            },
            "full_median": ref,
        }
    return {
        "variants": list(preds),
        "cuts": cuts,
        "per_cut": per_cut,
        "per_cut_depth": per_cut_depth,
        "targets": verdicts,
    }


def run_truncation(
    predictor, cfg, out_jsonl: Path, plots_enabled: bool = True, progress: bool = True
) -> dict:
    """Build the suite, predict each noise variant on its cropped canvases (``image_wh``), summarise; write
    per-sample JSONL, metrics.json and the error-per-cut figure beside it."""
    with tqdm(total=3, desc="truncation suite", disable=not progress) as bar:
        s = build_truncation_suite(cfg, progress)
        bar.update()
        K, wh = s["K"].astype(np.float32), s["image_wh"].astype(np.float32)
        preds = {}
        for name, kp in s["keypoints"].items():
            pred = predictor.predict(kp.astype(np.float32), K, image_wh=wh)
            preds[name] = (np.asarray(pred.z_m, np.float64), np.asarray(pred.sigma_m, np.float64))
        bar.update()
    vis = float(cfg.vis_threshold)
    res = {
        "suite": "truncation",
        "model": str((getattr(predictor, "metadata", {}) or {}).get("source", "default")),
        "uses_border": bool(getattr(predictor, "uses_border", False)),
        "seed": int(cfg.seed),
        "n_bodies": int(cfg.n_bodies),
        "n_per_pose": int(cfg.n_per_pose),
        "poses": list(cfg.poses),
        "depths_m": list(cfg.depths_m),
        "yaws_deg": list(cfg.yaws_deg),
        "hfov_deg": float(cfg.hfov_deg),
        "image_wh": [int(cfg.img_w), int(cfg.img_h)],
        "cam_height_m": float(cfg.cam_height_m),
        "vis_threshold": vis,
        "noise": noise_label(cfg.noise)
        + f", border_clamp_prob={cfg.noise.get('border_clamp_prob')}, border_clamp_decay="
        + f"{cfg.noise.get('border_clamp_decay')}, border_conf=[{cfg.noise.get('border_conf_min')}, "
        + f"{cfg.noise.get('border_conf_max')}]",
        "n_samples": int(len(s["z_true"])),
    } | summarise_truncation(s, preds, vis, cfg.targets)
    rows = []
    for i in range(len(s["z_true"])):
        row = {
            "pose": str(s["pose"][i]),
            "cut": str(s["cut"][i]),
            "depth_m": float(s["depth_m"][i]),
            "yaw_deg": float(s["yaw_deg"][i]),
            "body_index": int(s["body_index"][i]),
            "stature_m": round(float(s["stature_m"][i]), 4),
            "image_wh": [int(v) for v in s["image_wh"][i]],
            "joints_out_of_frame": int(s["outside"][i].sum()),
            "z_true_m": round(float(s["z_true"][i]), 4),
            "px_height_full": round(float(s["px_height"][i]), 1),
        }
        rows.append(row | prediction_columns(preds, i, BORDER))
    atomic_write_jsonl(out_jsonl, rows)
    images = []
    if plots_enabled:
        values = {
            "median |z/true - 1| per cut": {
                c: {v: res["per_cut"][v][c]["median"] for v in res["variants"]} for c in res["cuts"]
            }
        }
        images.append(
            plots.method_bars(values, out_jsonl.parent / "error_per_cut.png", title="People cut by the frame")
        )
    res["plots"] = [str(p) for p in images]
    res["out"] = str(out_jsonl)
    atomic_write_json(out_jsonl.parent / "metrics.json", res)
    return res
