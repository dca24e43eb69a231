"""Pose-invariance suite: is the model's depth as good for a squatting, kneeling or lying person as for a
standing one, where a box-height rule fails?

Synthetic test set made on the fly from bodies NOT used in training (own seed): every named pose variant
(:func:`generation.pose.named_poses`: jittered variants, not the exact presets) on a body of the bank, shown
at fixed mid-hip depths (5, 15, 30 m) and several person yaws to a level camera (1.5 m high, hip at the image
centre), projected exactly (:func:`generation.project.observe`) and given YOLO-like keypoint noise at that
pixel size (:class:`generation.noise.DetectorNoise`). Per pose: median and IQR of |z_pred / z_true - 1| for
the model and for the box-height baseline (stature 1.71 m, keypoint extent); over all non-standing poses: both
medians and their ratio; 1 sigma / 2 sigma coverage of the model's uncertainty.

``floor_poses`` (issue 19: reclining, lying on the side / front, sitting on the floor with the knees up,
picking something up, climbing a step) are a second group made from their own generator (seed ``seed + 1``)
after the ``poses`` group: adding or changing them leaves every number of the ``poses`` group (the overall,
coverage and per-depth figures are over that group only) as it was; the floor group has its own summary
(``floor``).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from depth_pose import geometry
from depth_pose.eval import baselines as bl
from depth_pose.eval import plots
from depth_pose.eval.io import atomic_write_json, atomic_write_jsonl
from depth_pose.eval.metrics import calibration_curve, median_iqr, relative_abs_error
from generation.types import Cameras, PosedBodies

if TYPE_CHECKING:
    from generation.body import BodyModel

STANDING = "standing"
FLOOR_SEED_OFFSET = 1  # the floor group's generator: seed + 1 (the poses group's draws stay as they were)


def fixed_cameras(
    posed: PosedBodies,
    depth_m: torch.Tensor,
    yaw_deg: torch.Tensor,
    hfov_deg: float,
    img_w: int,
    img_h: int,
    cam_height_m: float,
) -> Cameras:
    """Level cameras (tilt 0, roll 0) ``cam_height_m`` above the floor looking along world +Y; each person is
    yawed by ``yaw_deg`` about its mid-hip (0 = facing the camera) and placed so its mid-hip has camera z =
    ``depth_m`` and sits on the vertical centre line of the image."""
    n = posed.keypoints.shape[0]
    dev = posed.keypoints.device
    zeros = torch.zeros(n, device=dev)
    Rc = geometry.camera_rotation(zeros, zeros)
    R = Rc @ geometry.rot_z(torch.deg2rad(yaw_deg.to(dev).float()))
    # Mid-hip at world X = Y = 0 before placement; the person moves to (0, depth) and the camera
    # is at height h.
    d = torch.stack((zeros, depth_m.to(dev).float(), torch.full_like(zeros, -cam_height_m)), dim=-1)
    t = torch.einsum("nij,nj->ni", Rc, d)
    return suite_cameras(R, t, yaw_deg, zeros, torch.full_like(zeros, cam_height_m), hfov_deg, img_w, img_h)


def suite_cameras(
    R: torch.Tensor,
    t: torch.Tensor,
    yaw_deg: torch.Tensor,
    tilt_deg: torch.Tensor,
    height_m: torch.Tensor,
    hfov_deg: float,
    img_w: int,
    img_h: int,
) -> Cameras:
    """:class:`Cameras` of the suites: world->camera ``R`` (person yaw included) and ``t`` (n rows), roll 0,
    one pinhole ``K`` for all (``hfov_deg``, principal point at the image centre)."""
    n, dev = R.shape[0], R.device
    K = geometry.intrinsics_from_hfov(hfov_deg, img_w, img_h).to(dev).expand(n, 3, 3).clone()
    zeros = torch.zeros(n, device=dev)
    return Cameras(
        K=K,
        R=R,
        t=t,
        img_w=torch.full((n,), img_w, dtype=torch.long, device=dev),
        img_h=torch.full((n,), img_h, dtype=torch.long, device=dev),
        height_m=height_m.to(dev).float(),
        tilt_deg=tilt_deg.to(dev).float().clone(),
        roll_deg=zeros,
        yaw_deg=yaw_deg.to(dev).float(),
        hfov_deg=torch.full_like(zeros, hfov_deg),
    )


def _call_with_supported(fn, **kwargs):
    """Call ``fn`` with the keyword arguments it accepts (the generation API is young; stay tolerant)."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return fn(**kwargs)
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def add_detector_noise(obs, cameras: Cameras, generator: torch.Generator, noise_cfg) -> torch.Tensor:
    """Detector-like keypoints (B, 17, 3) for ``obs`` at each person's pixel size: ``noise_cfg`` instantiates
    :class:`generation.noise.DetectorNoise` (the suite uses the shared ``conf/noise/yolo_like.yaml``)."""
    from hydra.utils import instantiate

    noise = instantiate(noise_cfg)
    return noise(obs, generator, cameras)


def suite_people(
    cfg, generator: torch.Generator, names: list[str] | None = None, bodies: BodyModel | None = None
) -> tuple[BodyModel, PosedBodies, list[str]]:
    """The suite's held-out people: ``(bodies, posed, labels)`` - a body bank of ``cfg.n_bodies`` (seed
    ``cfg.seed``; or ``bodies``), ``cfg.n_per_pose`` jittered variants of each named pose in ``names``
    (default ``cfg.poses``) posed on random bodies of the bank (draws from ``generator``), and each row's
    pose name."""
    from generation.body import BodyModel
    from generation.pose import named_poses

    names = list(cfg.poses) if names is None else list(names)
    n_per = int(cfg.n_per_pose)
    if bodies is None:
        bodies = BodyModel(n_bodies=int(cfg.n_bodies), seed=int(cfg.seed))
    poses = _call_with_supported(
        named_poses, names=names, n_per_name=n_per, generator=generator, jitter_deg=float(cfg.jitter_deg)
    )
    P = len(poses)
    labels = (
        list(poses.preset)
        if len(getattr(poses, "preset", [])) == P and set(poses.preset) <= set(names)
        else [n for n in names for _ in range(n_per)]
    )
    body_index = torch.randint(0, len(bodies.shapes), (P,), generator=generator)
    return bodies, bodies.pose(body_index, poses), labels


def repeat_people(posed: PosedBodies, rep: int) -> PosedBodies:
    """Each row of ``posed`` ``rep`` times in a row (row-major: person p's copies are rows p*rep ...)."""
    return PosedBodies(
        keypoints=posed.keypoints.repeat_interleave(rep, 0),
        body_index=posed.body_index.repeat_interleave(rep, 0),
        extra_points=None if posed.extra_points is None else posed.extra_points.repeat_interleave(rep, 0),
    )


def noise_label(noise_cfg) -> str:
    """One line naming the suite's detector noise (for reports)."""
    if not noise_cfg.get("enabled", True):
        return "none"
    return (
        f"{noise_cfg.get('name', 'detector')} "
        f"(forced_complete_share={noise_cfg.get('forced_complete_share')}, "
        f"occluder_prob={noise_cfg.get('occluder_prob')})"
    )


def floor_poses(cfg) -> list[str]:
    """The suite's floor group: ``cfg.floor_poses`` (none when unset) less the names in ``cfg.poses``."""
    old = set(cfg.poses)
    return [n for n in (cfg.get("floor_poses") or []) if n not in old]


def build_suite(cfg, progress: bool = True) -> dict:
    """Generate the suite's samples: dict of tensors/arrays and labels (pose, depth, yaw, body); the
    ``poses`` group first, then the floor group (:func:`floor_poses`, own generator)."""
    g = torch.Generator().manual_seed(int(cfg.seed))
    s, bodies = build_group(cfg, g, list(cfg.poses))
    floor = floor_poses(cfg)
    if floor:
        gf = torch.Generator().manual_seed(int(cfg.seed) + FLOOR_SEED_OFFSET)
        f, _ = build_group(cfg, gf, floor, bodies)
        s = {k: np.concatenate((s[k], f[k])) for k in s}
    return s


def build_group(
    cfg, g: torch.Generator, names: list[str], bodies: BodyModel | None = None
) -> tuple[dict, BodyModel]:
    """The samples of the named poses ``names`` (every draw from ``g``) and the body bank they use."""
    from generation.project import observe

    bodies, posed, labels = suite_people(cfg, g, names, bodies)
    P = posed.keypoints.shape[0]
    depths = torch.tensor(list(cfg.depths_m), dtype=torch.float32)
    yaws = torch.tensor(list(cfg.yaws_deg), dtype=torch.float32)
    D, Y = len(depths), len(yaws)
    # Row order: pose row p, depth d, yaw y (p major).
    rep = D * Y
    posed_all = repeat_people(posed, rep)
    bi = posed_all.body_index
    depth = depths.repeat_interleave(Y).repeat(P)
    yaw = yaws.repeat(P * D)
    cams = fixed_cameras(
        posed_all, depth, yaw, float(cfg.hfov_deg), int(cfg.img_w), int(cfg.img_h), float(cfg.cam_height_m)
    )
    obs = observe(posed_all, cams)
    det = add_detector_noise(obs, cams, g, cfg.noise)
    return {
        "pose": np.repeat(np.array(labels), rep),
        "depth_m": depth.numpy(),
        "yaw_deg": yaw.numpy(),
        "body_index": bi.cpu().numpy(),
        "stature_m": bodies.shapes.stature_m[bi.cpu()].cpu().numpy(),
        "z_true": obs.z_m.cpu().numpy().astype(np.float64),
        "px_height": obs.person_px_height.cpu().numpy(),
        "keypoints": det.cpu().numpy().astype(np.float64),
        "K": cams.K.cpu().numpy().astype(np.float64),
    }, bodies


def subset(s: dict, sel: np.ndarray) -> dict:
    """The rows ``sel`` of every column of the suite's samples ``s``."""
    return {k: v[sel] for k, v in s.items()}


def quartiles(x: np.ndarray) -> list[float]:
    """[q25, q75] of the finite values of ``x`` (NaN, NaN when none)."""
    x = x[np.isfinite(x)]
    return [float(v) for v in np.percentile(x, [25, 75])] if x.size else [math.nan, math.nan]


def summarise(s: dict, z_pred: np.ndarray, sigma: np.ndarray, z_box: np.ndarray, names: list[str]) -> dict:
    """Per-pose median/IQR of |pred/true - 1| for model and box baseline, the non-standing ratio, coverage."""
    z = s["z_true"]
    e_model, e_box = relative_abs_error(z_pred, z), relative_abs_error(z_box, z)
    abs_err = np.abs(z_pred - z)
    per_pose = {}
    for name in names:
        sel = s["pose"] == name
        mm, mi = median_iqr(e_model[sel])
        bm, bi_ = median_iqr(e_box[sel])
        per_pose[name] = {
            "n": int(sel.sum()),
            "model": {
                "median": mm,
                "iqr": mi,
                "q25_q75": quartiles(e_model[sel]),
                "bias_median": float(np.median(z_pred[sel] / z[sel] - 1)),
            },
            "box_height": {
                "median": bm,
                "iqr": bi_,
                "q25_q75": quartiles(e_box[sel]),
                "n_na": int((~np.isfinite(z_box[sel])).sum()),
            },
            "coverage_1sigma": float((abs_err[sel] <= sigma[sel]).mean()),
        }
    ns = s["pose"] != STANDING
    mm, _ = median_iqr(e_model[ns])
    bm, _ = median_iqr(e_box[ns])
    per_depth = {}
    for d in np.unique(s["depth_m"]):
        sel = s["depth_m"] == d
        per_depth[f"{d:g}"] = {
            "model_median": median_iqr(e_model[sel])[0],
            "box_height_median": median_iqr(e_box[sel])[0],
            "coverage_1sigma": float((abs_err[sel] <= sigma[sel]).mean()),
            "median_px_height": float(np.median(s["px_height"][sel])),
        }
    return {
        "per_pose": per_pose,
        "per_depth": per_depth,
        "overall_non_standing": {
            "model_median": mm,
            "box_height_median": bm,
            "ratio": bm / mm if mm > 0 else math.inf,
            "box_height_n_na": int((~np.isfinite(z_box[ns])).sum()),
            "n": int(ns.sum()),
        },
        "coverage_1sigma": float((abs_err <= sigma).mean()),
        "coverage_2sigma": float((abs_err <= 2 * sigma).mean()),
        "calibration_curve": calibration_curve(z_pred, z, sigma),
    }


def run_invariance(
    predictor, cfg, out_jsonl: Path, bcfg: dict, plots_enabled: bool = True, progress: bool = True
) -> dict:
    """Build the suite, predict, summarise; write per-sample JSONL, metrics.json and plots beside it."""
    with tqdm(total=2, desc="invariance suite", disable=not progress) as bar:
        s = build_suite(cfg, progress)
        bar.update()
        frame = {"image_wh": (int(cfg.img_w), int(cfg.img_h))} if getattr(predictor, "uses_border", 0) else {}
        pred = predictor.predict(s["keypoints"].astype(np.float32), s["K"].astype(np.float32), **frame)
        bar.update()
    z_pred, sigma = np.asarray(pred.z_m, np.float64), np.asarray(pred.sigma_m, np.float64)
    z_box = bl.box_height_depth(
        s["keypoints"],
        s["K"],
        bcfg["stature_m"],
        bcfg["kp_extent_over_stature"],
        bcfg["vis_threshold"],
        bcfg["box_require_full_body"],
    )
    names, floor = list(cfg.poses), floor_poses(cfg)
    old = np.isin(s["pose"], names)
    summary = summarise(subset(s, old), z_pred[old], sigma[old], z_box[old], names)
    if floor:
        f = summarise(subset(s, ~old), z_pred[~old], sigma[~old], z_box[~old], floor)
        summary["per_pose"].update(f["per_pose"])
        summary["floor"] = {"poses": floor, "seed": int(cfg.seed) + FLOOR_SEED_OFFSET} | {
            k: f[k] for k in ("overall_non_standing", "coverage_1sigma", "coverage_2sigma", "per_depth")
        }
    res = {
        "suite": "invariance",
        "model": str((getattr(predictor, "metadata", {}) or {}).get("source", "default")),
        "seed": int(cfg.seed),
        "n_bodies": int(cfg.n_bodies),
        "n_per_pose": int(cfg.n_per_pose),
        "jitter_deg": float(cfg.jitter_deg),
        "depths_m": list(cfg.depths_m),
        "yaws_deg": list(cfg.yaws_deg),
        "noise": noise_label(cfg.noise),
        "n_samples": int(len(z_pred)),
        "baselines": bcfg,
    } | summary
    rows = [
        {
            "pose": str(s["pose"][i]),
            "depth_m": float(s["depth_m"][i]),
            "yaw_deg": float(s["yaw_deg"][i]),
            "body_index": int(s["body_index"][i]),
            "stature_m": round(float(s["stature_m"][i]), 4),
            "z_true_m": round(float(s["z_true"][i]), 4),
            "z_pred_m": round(float(z_pred[i]), 4),
            "z_sigma_m": round(float(sigma[i]), 4),
            "z_box_height_m": round(float(z_box[i]), 4) if np.isfinite(z_box[i]) else None,
            "px_height": round(float(s["px_height"][i]), 1),
        }
        for i in range(len(z_pred))
    ]
    atomic_write_jsonl(out_jsonl, rows)
    images = []
    if plots_enabled:
        images.append(plots.pose_ratio_bars(res["per_pose"], out_jsonl.parent / "pose_ratio.png"))
        images.append(
            plots.calibration(
                res["calibration_curve"],
                out_jsonl.parent / "calibration.png",
                title="Uncertainty calibration (invariance suite)",
            )
        )
    res["plots"] = [str(p) for p in images]
    res["out"] = str(out_jsonl)
    atomic_write_json(out_jsonl.parent / "metrics.json", res)
    return res
