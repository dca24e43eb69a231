"""Tilt suite: how much depth error does a camera looking down cost, and does telling the model its up
direction win it back?

The invariance suite's people (:func:`depth_pose.suites.invariance.suite_people`: held-out bodies, jittered
named poses, person yaws, YOLO-like noise; ``conf/eval.yaml``'s ``tilt:`` block interpolates them from
``invariance:`` so both suites see the same people) seen from cameras tilted by each of ``tilts_deg`` (0 =
level, negative = looking down), roll 0, with the mid-hip ON the optical axis at camera depth ``depths_m``
(camera height = hip height + depth x sin|tilt|: up to ~20 m).

A model that takes gravity (``predictor.uses_gravity``) is scored twice: without the up direction
(``no_up``) and with each camera's true ``up_cam`` (``up``); any other model only ``no_up``. Per tilt bin
and variant: n, median and IQR of |z/true - 1|, median bias of z/true - 1, 1 sigma coverage; per tilt x
depth medians; the worst tilt bin's median over the level bin's (``worst_over_level``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from depth_pose import geometry
from depth_pose.eval import plots
from depth_pose.eval.io import atomic_write_json, atomic_write_jsonl
from depth_pose.eval.metrics import median_iqr, relative_abs_error
from depth_pose.suites.invariance import (
    add_detector_noise,
    noise_label,
    quartiles,
    repeat_people,
    suite_cameras,
    suite_people,
)
from generation.types import Cameras, PosedBodies

NO_UP, UP = "no_up", "up"


def aimed_cameras(
    posed: PosedBodies,
    depth_m: torch.Tensor,
    yaw_deg: torch.Tensor,
    tilt_deg: torch.Tensor,
    hfov_deg: float,
    img_w: int,
    img_h: int,
) -> Cameras:
    """Cameras tilted by ``tilt_deg`` (negative = looking down), roll 0, looking along world +Y, each with
    its person's mid-hip on the optical axis (the principal point) at camera z = ``depth_m``; the person is
    yawed by ``yaw_deg`` about world Z (0 = facing the camera). Camera height = hip height - depth x
    sin(tilt), i.e. hip height + depth x sin|tilt| looking down."""
    n, dev = posed.keypoints.shape[0], posed.keypoints.device
    tilt = torch.deg2rad(tilt_deg.to(dev).float())
    Rc = geometry.camera_rotation(tilt, torch.zeros_like(tilt))
    R = Rc @ geometry.rot_z(torch.deg2rad(yaw_deg.to(dev).float()))
    hip = geometry.mid_hip(posed.keypoints.float())  # (n, 3) world, before the yaw (which keeps Z)
    # p_cam = R p + t: the mid-hip lands on (0, 0, depth).
    on_axis = torch.zeros(n, 3, device=dev)
    on_axis[:, 2] = depth_m.to(dev).float()
    t = on_axis - torch.einsum("nij,nj->ni", R, hip)
    height = hip[:, 2] - depth_m.to(dev).float() * torch.sin(tilt)
    return suite_cameras(R, t, yaw_deg, tilt_deg, height, hfov_deg, img_w, img_h)


def build_tilt_suite(cfg, progress: bool = True) -> dict:
    """The suite's samples (rows: pose row p, tilt, depth, yaw; p major): labels, ground truth, noisy
    keypoints, K, the true up direction (``up_cam``) and the camera's pitch/roll from it."""
    from generation.project import observe

    g = torch.Generator().manual_seed(int(cfg.seed))
    bodies, posed, labels = suite_people(cfg, g)
    P = posed.keypoints.shape[0]
    tilts = torch.tensor(list(cfg.tilts_deg), dtype=torch.float32)
    depths = torch.tensor(list(cfg.depths_m), dtype=torch.float32)
    yaws = torch.tensor(list(cfg.yaws_deg), dtype=torch.float32)
    T, D, Y = len(tilts), len(depths), len(yaws)
    rep = T * D * Y
    posed_all = repeat_people(posed, rep)
    tilt = tilts.repeat_interleave(D * Y).repeat(P)
    depth = depths.repeat_interleave(Y).repeat(P * T)
    yaw = yaws.repeat(P * T * D)
    cams = aimed_cameras(posed_all, depth, yaw, tilt, float(cfg.hfov_deg), int(cfg.img_w), int(cfg.img_h))
    obs = observe(posed_all, cams)
    det = add_detector_noise(obs, cams, g, cfg.noise)
    up = cams.R[:, :, 2]  # world Z (up) in camera coordinates: column 2 of world->camera
    pitch, roll = geometry.pitch_roll_from_up(up)
    bi = posed_all.body_index.cpu()
    return {
        "pose": np.repeat(np.array(labels), rep),
        "tilt_deg": tilt.numpy(),
        "depth_m": depth.numpy(),
        "yaw_deg": yaw.numpy(),
        "body_index": bi.numpy(),
        "stature_m": bodies.shapes.stature_m[bi].cpu().numpy(),
        "cam_height_m": cams.height_m.cpu().numpy(),
        "pitch_deg": pitch.cpu().numpy(),
        "roll_deg": roll.cpu().numpy(),
        "up_cam": up.cpu().numpy().astype(np.float64),
        "z_true": obs.z_m.cpu().numpy().astype(np.float64),
        "hip_cam": obs.hip_cam.cpu().numpy().astype(np.float64),
        "px_height": obs.person_px_height.cpu().numpy(),
        "keypoints": det.cpu().numpy().astype(np.float64),
        "K": cams.K.cpu().numpy().astype(np.float64),
    }


def prediction_columns(preds: dict[str, tuple[np.ndarray, np.ndarray]], i: int, plain: str) -> dict:
    """Sample row ``i``'s ``z_pred[_NAME]_m`` / ``z_sigma[_NAME]_m`` columns of each prediction variant
    (``preds``: name -> (z, sigma)); the variant named ``plain`` gets no suffix."""
    row = {}
    for name, (zp, sig) in preds.items():
        suffix = "" if name == plain else f"_{name}"
        row[f"z_pred{suffix}_m"] = round(float(zp[i]), 4)
        row[f"z_sigma{suffix}_m"] = round(float(sig[i]), 4)
    return row


def bin_stats(z_pred: np.ndarray, sigma: np.ndarray, z_true: np.ndarray) -> dict:
    """n, median / IQR / quartiles of |pred/true - 1|, median bias of pred/true - 1, 1 sigma coverage."""
    rel = np.asarray(z_pred, np.float64) / np.asarray(z_true, np.float64) - 1.0
    err = relative_abs_error(z_pred, z_true)
    med, iqr = median_iqr(err)
    return {
        "n": int(rel.size),
        "median": med,
        "iqr": iqr,
        "q25_q75": quartiles(err),
        "bias_median": float(np.median(rel)) if rel.size else math.nan,
        "coverage_1sigma": float((np.abs(z_pred - z_true) <= sigma).mean()) if rel.size else math.nan,
    }


def tilt_key(tilt_deg: float) -> str:
    """The key of a tilt (or depth) bin in the metrics: ``-15``, ``0``, ``2.5``."""
    return f"{float(tilt_deg):g}"


def summarise_tilt(s: dict, preds: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Per variant (``preds``: name -> (z, sigma)): stats per tilt bin, medians per tilt x depth, overall
    stats and the worst tilt bin's median over the level bin's; per tilt bin the cameras' pitch, roll and
    heights."""
    z = s["z_true"]
    tilts = sorted(np.unique(s["tilt_deg"]), key=lambda t: -t)  # level first, then steeper
    depths = sorted(np.unique(s["depth_m"]))
    level = min(tilts, key=abs)
    in_bin = {t: s["tilt_deg"] == t for t in tilts}
    cameras = {
        tilt_key(t): {
            "pitch_deg_median": float(np.median(s["pitch_deg"][sel])),
            "roll_deg_max_abs": float(np.abs(s["roll_deg"][sel]).max()),
            "cam_height_m_min": float(s["cam_height_m"][sel].min()),
            "cam_height_m_max": float(s["cam_height_m"][sel].max()),
        }
        for t, sel in in_bin.items()
    }
    per_tilt, per_tilt_depth, overall, ratios = {}, {}, {}, {}
    for name, (zp, sig) in preds.items():
        per_tilt[name] = {tilt_key(t): bin_stats(zp[sel], sig[sel], z[sel]) for t, sel in in_bin.items()}
        err = relative_abs_error(zp, z)
        per_tilt_depth[name] = {
            tilt_key(t): {tilt_key(d): median_iqr(err[sel & (s["depth_m"] == d)])[0] for d in depths}
            for t, sel in in_bin.items()
        }
        overall[name] = bin_stats(zp, sig, z)
        meds = {t: per_tilt[name][tilt_key(t)]["median"] for t in tilts}
        worst = max(tilts, key=lambda t: meds[t])
        ratios[name] = {
            "level_tilt_deg": float(level),
            "level_median": meds[level],
            "worst_tilt_deg": float(worst),
            "worst_median": meds[worst],
            "ratio": meds[worst] / meds[level] if meds[level] > 0 else math.inf,
        }
    return {
        "variants": list(preds),
        "cameras": cameras,
        "per_tilt": per_tilt,
        "per_tilt_depth": per_tilt_depth,
        "overall": overall,
        "worst_over_level": ratios,
    }


def run_tilt(predictor, cfg, out_jsonl: Path, plots_enabled: bool = True, progress: bool = True) -> dict:
    """Build the suite, predict (without and, for a gravity model, with the up direction), summarise; write
    per-sample JSONL, metrics.json and the error-vs-tilt plot beside it."""
    gravity = bool(getattr(predictor, "uses_gravity", False))
    with tqdm(total=2 + gravity, desc="tilt suite", disable=not progress) as bar:
        s = build_tilt_suite(cfg, progress)
        bar.update()
        kp, K = s["keypoints"].astype(np.float32), s["K"].astype(np.float32)
        frame = {"image_wh": (int(cfg.img_w), int(cfg.img_h))} if getattr(predictor, "uses_border", 0) else {}
        preds = {}
        for name in (NO_UP, UP) if gravity else (NO_UP,):
            up = s["up_cam"].astype(np.float32) if name == UP else None
            pred = predictor.predict(kp, K, up=up, **frame)
            preds[name] = (np.asarray(pred.z_m, np.float64), np.asarray(pred.sigma_m, np.float64))
            bar.update()
    res = {
        "suite": "tilt",
        "model": str((getattr(predictor, "metadata", {}) or {}).get("source", "default")),
        "uses_gravity": gravity,
        "seed": int(cfg.seed),
        "n_bodies": int(cfg.n_bodies),
        "n_per_pose": int(cfg.n_per_pose),
        "jitter_deg": float(cfg.jitter_deg),
        "poses": list(cfg.poses),
        "tilts_deg": list(cfg.tilts_deg),
        "depths_m": list(cfg.depths_m),
        "yaws_deg": list(cfg.yaws_deg),
        "hfov_deg": float(cfg.hfov_deg),
        "image_wh": [int(cfg.img_w), int(cfg.img_h)],
        "noise": noise_label(cfg.noise),
        "n_samples": int(len(s["z_true"])),
    } | summarise_tilt(s, preds)
    rows = []
    for i in range(len(s["z_true"])):
        row = {
            "pose": str(s["pose"][i]),
            "tilt_deg": float(s["tilt_deg"][i]),
            "depth_m": float(s["depth_m"][i]),
            "yaw_deg": float(s["yaw_deg"][i]),
            "body_index": int(s["body_index"][i]),
            "stature_m": round(float(s["stature_m"][i]), 4),
            "cam_height_m": round(float(s["cam_height_m"][i]), 4),
            "pitch_deg": round(float(s["pitch_deg"][i]), 3),
            "roll_deg": round(float(s["roll_deg"][i]), 3),
            "z_true_m": round(float(s["z_true"][i]), 4),
            "px_height": round(float(s["px_height"][i]), 1),
        }
        rows.append(row | prediction_columns(preds, i, NO_UP))
    atomic_write_jsonl(out_jsonl, rows)
    images = []
    if plots_enabled:
        images.append(
            plots.error_vs_tilt(
                res["per_tilt"], out_jsonl.parent / "error_vs_tilt.png", title="Depth error vs camera tilt"
            )
        )
    res["plots"] = [str(p) for p in images]
    res["out"] = str(out_jsonl)
    atomic_write_json(out_jsonl.parent / "metrics.json", res)
    return res
