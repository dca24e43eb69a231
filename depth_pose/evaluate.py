"""``dp-eval`` as a plain function: score a keypoint set, an image set, a generated synthetic set or a
synthetic suite (pose invariance, camera tilt); write predictions,
``metrics.json``, ``report.md`` and PNG plots beside ``out``.

Exit-code contract (applied by :mod:`depth_pose.cli.eval`): 0 every input entry scored, 3 some left out
(listed with their line numbers / image names), 2 unusable arguments or files (:class:`EvalInputError`).

The camera's up direction (:mod:`depth_pose.gravity`): a keypoint file's own per-line ``up_cam`` /
``pitch_deg`` / ``roll_deg``; lines without them (and every person of ``images=``) take the run-wide
``scene.*`` block, when given. Per-line fields win. Each output line records the ``pitch_deg`` / ``roll_deg``
given (null when unknown); ``metrics.json["gravity"]`` whether the model uses it and how many people had one.

Each output line carries the model's ``status`` (:mod:`depth_pose.ranges`: ``ok``, ``out_of_range``,
``degenerate``, ``too_few_joints``, ``no_joints``). The headline metrics (``methods.model``) are over everyone
with a finite joint (``no_joints`` people have no depth: counted in ``n_total``, not in ``n``);
``model_ok_only`` is the model on its ``ok`` people, ``status_counts`` the people per status.

Scene self-calibration (``keypoints=`` only; :mod:`depth_pose.scene_commands`): with ``scene.group=FIELD``
(or ``scene.calibrate=true``: ``camera_id``) the people sharing a camera are calibrated together (up
direction, camera height, is the floor level; tracks from ``scene.track_fields``) and their depths fused with
ground contact and per-track scales. Output lines keep the single-frame ``z_pred_m`` beside ``z_scene_m`` /
``z_scene_sigma_m``, ``depth_source`` and ``scene_status``; ``metrics.json["scene"]`` holds both methods'
errors and each camera's estimate, against the input's reported camera values (``scene.truth_fields``; never
used as input). A camera that cannot be calibrated keeps single-frame depths (not an error).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from depth_pose.errors import EXIT_OK, EXIT_PARTIAL, InputError, chain
from depth_pose.eval import baselines as bl
from depth_pose.eval import plots
from depth_pose.eval.io import (
    EvalInputError,
    PeopleSet,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    check_keypoints_file,
    read_keypoints_jsonl,
    read_synthetic_set,
)
from depth_pose.eval.metrics import PERSON_PX_BANDS, calibration_curve, depth_metrics, per_band, per_group
from depth_pose.eval.report import (
    invariance_report,
    people_report,
    scenes_report,
    tilt_report,
    truncation_report,
)
from depth_pose.fileio import Named, check_outputs
from depth_pose.gravity import pitch_roll_rows, scene_up
from depth_pose.jsonvalues import option_number
from depth_pose.keypoints import pixel_height
from depth_pose.ranges import NO_JOINTS, OK, STATUSES, status_counts
from depth_pose.scene_commands import (
    CALIBRATED,
    EvalSceneOptions,
    calibrate_groups,
    eval_scene_options,
    image_size,
    reasons,
    scene_markdown,
    scene_metrics,
    track_codes,
    usable_id,
)
from depth_pose.tracking import close_loggers, fill_identity

log = logging.getLogger(__name__)

MODES = ("keypoints", "images", "dataset", "suite")
SUITES = ("invariance", "tilt", "scenes", "truncation", "rendered")
# Upright poses first in per-pose tables (then the rest by count).
POSE_ORDER = ["standing", "walk", "both_walk", "uniform", "normal"]
# Written beside ``out`` by evaluate_people / run_invariance / run_tilt: ``out`` may not be one of them.
SIDE_OUTPUTS = (
    "metrics.json",
    "report.md",
    "error_vs_distance.png",
    "pred_vs_true.png",
    "calibration.png",
    "pose_ratio.png",
    "error_vs_tilt.png",
    "scenes_methods.png",
    "scenes_error_vs_seen.png",
)


def abs_path(p: str | Path) -> Path:
    """A path relative to the directory the command was launched from (Hydra's runtime.cwd when running)."""
    from hydra.utils import to_absolute_path

    return Path(to_absolute_path(str(p)))


def default_out(name: str) -> Path:
    """``<hydra run dir>/<name>`` inside a Hydra app, else ``./eval_outputs/<name>``."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir) / name
    return Path.cwd() / "eval_outputs" / name


def check_out(out: Path, inputs: Named = ()) -> Path:
    """``out`` must be a file path whose folder can be created/written, that is not (nor is inside) any of
    ``inputs``, is not a FIFO/device, and is not one of the :data:`SIDE_OUTPUTS` written beside it (else
    exit 2 before any work)."""
    check_outputs([("out", out)] + [(name, out.parent / name) for name in SIDE_OUTPUTS], inputs)
    if out.is_dir():
        raise EvalInputError(f"out='{out}' is a directory; give a file name such as PRED.jsonl")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EvalInputError(f"cannot create the output folder '{out.parent}': {e}") from e
    if not os.access(out.parent, os.W_OK):
        raise EvalInputError(f"output folder '{out.parent}' is not writable")
    return out


def out_path(cfg, default_name: str) -> Path:
    """``out=`` as an absolute file path (``default_name`` in the run folder when not given); a value
    ending in a slash names a folder, not the predictions file: exit 2."""
    out = cfg.get("out")
    if not out:
        return default_out(default_name)
    if str(out).endswith(("/", os.sep)):
        raise EvalInputError(
            f"out='{out}' ends with a slash (a folder): out names the predictions file, e.g. "
            f"out={str(out).rstrip('/' + os.sep)}/{default_name}"
        )
    return abs_path(out)


def model_inputs(ckpt: str | None) -> list[tuple[str, Path]]:
    """The model files ``ckpt=`` reads (a .safetensors file has its .json beside it; no ``ckpt``: the
    shipped model's), as inputs for :func:`check_out`."""
    from depth_pose.predictor import DEFAULT_MODEL

    path = DEFAULT_MODEL if ckpt in (None, "", "default") else abs_path(ckpt)
    return [("ckpt", path)] + ([("ckpt", path.with_suffix(".json"))] if path.suffix == ".safetensors" else [])


def load_predictor(ckpt: str | None, device: str = "cpu"):
    """:meth:`DepthPredictor.load` with every failure turned into :class:`EvalInputError` (exit 2)."""
    from depth_pose.predictor import DepthPredictor

    path = None if ckpt in (None, "", "default") else abs_path(ckpt)
    try:
        return DepthPredictor.load(path, device=device)
    except Exception as e:  # unreadable / wrong file: a usage error, not a crash
        raise EvalInputError(f"cannot load model '{path or 'default'}': {type(e).__name__}: {e}") from e


def model_name(predictor) -> str:
    meta = getattr(predictor, "metadata", {}) or {}
    return str(meta.get("source", "default"))


def score_people(people: PeopleSet, predictor, bcfg: DictConfig | dict) -> dict[str, np.ndarray]:
    """Model depth + sigma + status and the baselines' depths for every person of ``people`` (arrays (N,))."""
    n = len(people)
    if n == 0:
        empty = np.zeros(0)
        return {
            "model": empty,
            "sigma": empty,
            "status": np.zeros(0, dtype="<U14"),
            "box_height": empty,
            "shoulder_hip": empty,
            "floor": empty,
        }
    up = None if people.up is None else people.up.astype(np.float32)
    pred = predictor.predict(
        people.keypoints.astype(np.float32), people.K.astype(np.float32), up=up, **frame_of(people, predictor)
    )
    z, s = np.asarray(pred.z_m, np.float64), np.asarray(pred.sigma_m, np.float64)
    status = np.asarray(pred.status).astype(str)
    has = status != STATUSES[NO_JOINTS]
    if not (np.isfinite(z[has]).all() and np.isfinite(s[has]).all()):
        bad = [people.ids[i] for i in np.flatnonzero(has & ~(np.isfinite(z) & np.isfinite(s)))[:5]]
        raise RuntimeError(f"the model returned non-finite depth for {bad} (predictor contract broken)")
    return {
        "model": z,
        "sigma": s,
        "status": status,
        "box_height": bl.box_height_depth(
            people.keypoints,
            people.K,
            bcfg["stature_m"],
            bcfg["kp_extent_over_stature"],
            bcfg["vis_threshold"],
            bcfg["box_require_full_body"],
        ),
        "shoulder_hip": bl.shoulder_hip_depth(
            people.keypoints, people.K, bcfg["shoulder_hip_m"], bcfg["shoulder_hip_min_conf"]
        ),
        "floor": bl.floor_depth(people.gt_z, bcfg["floor_rel"]),
    }


def frame_of(people: PeopleSet, predictor, idx: np.ndarray | None = None) -> dict:
    """``predict`` keyword for a model with the border input: the people's image sizes (N, 2) float32 (NaN
    rows = unknown); nothing for other models or when no size is known."""
    if people.image_wh is None or not getattr(predictor, "uses_border", False):
        return {}
    wh = people.image_wh if idx is None else people.image_wh[idx]
    return {"image_wh": wh.astype(np.float32)}


def _r(x: float, nd: int = 4) -> float | None:
    return round(float(x), nd) if math.isfinite(float(x)) else None


def output_rows(people: PeopleSet, scores: dict[str, np.ndarray]) -> list[dict]:
    """One output dict per person: id, z_pred_m, z_sigma_m, status, [gt_z_m, abs_err_m], baselines, the
    camera's pitch_deg / roll_deg given (null when unknown), extra fields."""
    rows = []
    pitch, roll = pitch_roll_rows(people.up, len(people))
    for i, pid in enumerate(people.ids):
        row = {
            "id": pid,
            "z_pred_m": _r(scores["model"][i]),
            "z_sigma_m": _r(scores["sigma"][i]),
            "status": str(scores["status"][i]),
        }
        if math.isfinite(people.gt_z[i]):
            row["gt_z_m"] = float(people.gt_z[i])
            row["abs_err_m"] = _r(abs(scores["model"][i] - people.gt_z[i]))
        row["z_box_height_m"] = _r(scores["box_height"][i])
        row["z_shoulder_hip_m"] = _r(scores["shoulder_hip"][i])
        row["pitch_deg"], row["roll_deg"] = _r(pitch[i], 3), _r(roll[i], 3)
        if people.image_wh is not None:
            row["frame_known"] = bool(np.isfinite(people.image_wh[i]).all())
        row.update(people.extra[i] if i < len(people.extra) else {})
        row.update({k: str(v[i]) for k, v in people.groups.items()})
        rows.append(row)
    return rows


def people_metrics(people: PeopleSet, scores: dict[str, np.ndarray]) -> dict:
    """Metrics of each method on the people with ground truth (overall + per band), the model on its ``ok``
    people only, the people per status and the calibration curve."""
    gt = people.has_gt
    true = people.gt_z[gt]
    ok = scores["status"][gt] == STATUSES[OK]
    model_ok = depth_metrics(scores["model"][gt][ok], true[ok], scores["sigma"][gt][ok])
    model_ok["bands"] = per_band(scores["model"][gt][ok], true[ok], scores["sigma"][gt][ok])
    methods = {}
    for name in ("model", "box_height", "shoulder_hip", "floor"):
        sig = scores["sigma"][gt] if name == "model" else None
        m = depth_metrics(scores[name][gt], true, sig)
        m["bands"] = per_band(scores[name][gt], true, sig)
        methods[name] = m
    # The baselines apply to subsets: the model on exactly the same people, for a like-for-like comparison.
    same = {}
    for name in ("box_height", "shoulder_hip"):
        sel = np.isfinite(scores[name][gt])
        m = depth_metrics(scores["model"][gt][sel], true[sel], scores["sigma"][gt][sel])
        m["bands"] = per_band(scores["model"][gt][sel], true[sel], scores["sigma"][gt][sel])
        same[name] = m
    out = {
        "n_with_gt": int(gt.sum()),
        "status_counts": status_counts(scores["status"]),
        "status_counts_with_gt": status_counts(scores["status"][gt]),
        "methods": methods if gt.any() else {},
        "model_ok_only": model_ok if gt.any() else {},
        "model_on_baseline_people": same if gt.any() else {},
    }
    if gt.any():
        out["calibration_curve"] = calibration_curve(scores["model"][gt], true, scores["sigma"][gt])
        out["model_by_person_px"] = per_band(
            scores["model"][gt],
            true,
            scores["sigma"][gt],
            PERSON_PX_BANDS,
            by=pixel_height(people.keypoints[gt]),
        )
        # Labelled sets (synthetic: pose, arms): errors per label, model and box-height rule side by side.
        out["by_group"] = {
            key: {
                name: per_group(
                    scores[name][gt],
                    true,
                    scores["sigma"][gt] if name == "model" else None,
                    labels[gt],
                    order=POSE_ORDER,
                )
                for name in ("model", "box_height")
            }
            for key, labels in people.groups.items()
        }
    return out


def flat_numbers(d: dict, prefix: str = "") -> dict[str, float]:
    """Nested metrics -> ``{"a/b/c": number}`` (numbers only)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flat_numbers(v, f"{prefix}{k}/")
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[f"{prefix}{k}"] = float(v)
    return out


def log_to_loggers(cfg: DictConfig, metrics: dict, images: list[Path]) -> None:
    """Send flat metrics (and the PNGs, where the logger takes images) to every logger in ``cfg.logger``
    (the shared ``conf/logger`` group: ``logger=wandb`` gives an offline W&B run; default ``none``), one run
    named and closed as every job's (:mod:`depth_pose.tracking`)."""
    from hydra.utils import instantiate

    loggers = [instantiate(c) for c in fill_identity(cfg).values() if c and "_target_" in c]
    ok = False
    try:
        for logger in loggers:
            logger.log_metrics({f"eval/{k}": v for k, v in flat_numbers(metrics).items()})
            if images and hasattr(logger, "log_image"):
                for p in images:
                    logger.log_image(key=f"eval/{p.stem}", images=[str(p)])
        ok = True
    finally:
        close_loggers(loggers, ok)


def uses_gravity(predictor) -> bool:
    return bool(getattr(predictor, "uses_gravity", False))


def apply_scene(people: PeopleSet, up: np.ndarray | None) -> dict:
    """Give the people without their own up direction the run-wide one ``up`` (3,); the counts for
    metrics.json."""
    n = len(people)
    own = np.zeros(n, bool) if people.up is None else np.isfinite(people.up).all(1)
    if up is not None and not own.all():
        base = np.full((n, 3), np.nan) if people.up is None else people.up.copy()
        base[~own] = up
        people.up = base
    return {"n_up_from_input": int(own.sum()), "n_up_from_scene": int((~own).sum()) if up is not None else 0}


def gravity_summary(people: PeopleSet, predictor, counts: dict, scene: np.ndarray | None) -> dict:
    """``metrics.json["gravity"]``: whether the model uses the up direction, how many people had one (from
    the input / from ``scene.*``), the scene's pitch and roll."""
    n = len(people)
    known = 0 if people.up is None else int(np.isfinite(people.up).all(1).sum())
    scene_info = None
    if scene is not None:
        p, r = pitch_roll_rows(scene, 1)
        scene_info = {"pitch_deg": _r(p[0], 3), "roll_deg": _r(r[0], 3), "up_cam": [_r(v, 6) for v in scene]}
    return {
        "model_uses_gravity": uses_gravity(predictor),
        "n_with_up": known,
        "n_without_up": n - known,
        **counts,
        "scene": scene_info,
    }


def evaluate_people(
    people: PeopleSet,
    cfg: DictConfig,
    predictor,
    out: Path,
    input_name: str,
    mode: str,
    gravity: dict | None = None,
    scene: EvalSceneOptions | None = None,
    scene_up_given: np.ndarray | None = None,
) -> dict:
    """Score ``people``, write predictions + metrics.json + report.md + plots beside ``out``; return
    the metrics (``gravity``: :func:`gravity_summary`, stored as ``metrics["gravity"]``; ``scene``: the scene
    calibration per camera, :func:`scene_depths`, stored as ``metrics["scene"]``)."""
    bcfg = dict(cfg.baselines) | {"vis_threshold": cfg.vis_threshold}
    scores = score_people(people, predictor, bcfg)
    rows = output_rows(people, scores)
    scene_part = None
    if scene is not None and scene.enabled:
        scene_part = scene_depths(people, predictor, scores, scene, scene_up_given, rows)
    atomic_write_jsonl(out, rows)
    metrics = {
        "mode": mode,
        "input": input_name,
        "out": str(out),
        "model": model_name(predictor),
        "n_input": people.n_input,
        "n_scored": len(people),
        "n_skipped": len(people.skipped),
        "skipped": [{"where": w, "why": y} for w, y in people.skipped],
        "baselines": bcfg,
        "gravity": gravity if gravity is not None else gravity_summary(people, predictor, {}, None),
    } | people_metrics(people, scores)
    out_dir = out.parent
    images: list[Path] = []
    if cfg.plots and metrics["n_with_gt"] > 0:
        gt = people.has_gt
        true = people.gt_z[gt]
        preds = {k: scores[k][gt] for k in ("model", "box_height", "shoulder_hip")}
        images.append(
            plots.error_vs_distance(
                true, preds, out_dir / "error_vs_distance.png", floor_rel=bcfg["floor_rel"]
            )
        )
        images.append(
            plots.pred_vs_true(true, scores["model"][gt], scores["sigma"][gt], out_dir / "pred_vs_true.png")
        )
        images.append(plots.calibration(metrics["calibration_curve"], out_dir / "calibration.png"))
    metrics["plots"] = [str(p) for p in images]
    if scene_part is not None:
        metrics["scene"] = scene_part
    atomic_write_json(out_dir / "metrics.json", metrics)
    report = people_report(metrics)
    if scene_part is not None:
        report = report.rstrip("\n") + "\n\n" + scene_markdown(scene_part)
    atomic_write_text(out_dir / "report.md", report)
    print(report, flush=True)
    log_to_loggers(cfg, metrics, images)
    return metrics


def scene_depths(
    people: PeopleSet,
    predictor,
    scores: dict[str, np.ndarray],
    opts: EvalSceneOptions,
    up: np.ndarray | None,
    rows: list[dict],
) -> dict:
    """Calibrate each camera of ``people`` (``opts.group``) and fuse its people's depths (module docstring);
    add ``z_scene_m``, ``z_scene_sigma_m``, ``depth_source``, ``scene_camera``, ``scene_status`` (and
    ``abs_err_scene_m``) to the output ``rows``; return :func:`depth_pose.scene_commands.scene_metrics`.
    Models with a gravity input get the camera's estimated up direction for the people without their own,
    where it is known well enough (:attr:`depth_pose.scene.SceneCalibration.model_up`)."""
    f = people.fields
    n = len(people)
    tracks = [None] * n
    for name in opts.track_fields:
        tracks = [t if t is not None else v for t, v in zip(tracks, f.get(name, [None] * n))]
    repredict = None
    if uses_gravity(predictor):

        def repredict(idx: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ups = np.broadcast_to(u, (len(idx), 3)).copy()
            if people.up is not None:
                own = np.isfinite(people.up[idx]).all(1)
                ups[own] = people.up[idx][own]
            pred = predictor.predict(
                people.keypoints[idx].astype(np.float32),
                people.K[idx].astype(np.float32),
                up=ups.astype(np.float32),
                **frame_of(people, predictor, idx),
            )
            return np.asarray(pred.z_m, np.float64), np.asarray(pred.sigma_m, np.float64)

    res = calibrate_groups(
        people.keypoints,
        people.K,
        scores["model"],
        scores["sigma"],
        f.get(opts.group, [None] * n),
        track_codes(tracks),
        [image_size(v) for v in f.get("image_wh", [None] * n)],
        up=up,
        height_m=opts.height_m,
        repredict=repredict,
        line_up=people.up,
    )
    status = [None] * n
    for _, fit, idx, _ in res.cameras:
        for i in idx:
            status[i] = fit.status
    for i, row in enumerate(rows):
        row["z_scene_m"] = _r(res.z[i])
        row["z_scene_sigma_m"] = _r(res.sigma[i])
        row["depth_source"] = str(res.source[i])
        row["scene_camera"] = res.camera[i]
        row["scene_status"] = status[i]
        if math.isfinite(people.gt_z[i]):
            row["abs_err_scene_m"] = _r(abs(res.z[i] - people.gt_z[i]))
    truth = {
        k: f[name]
        for k, name in opts.truth_fields.items()
        if name and any(v is not None for v in f.get(name, []))
    }
    metrics = scene_metrics(res, scores["model"], people.gt_z, truth, opts.group)
    missed = [c for c in metrics["cameras"] if c["status"] != CALIBRATED]
    if missed:  # one line for all of them (a file can hold thousands of cameras)
        why = "; ".join(r[2:] for r in reasons(missed)[:3])
        log.warning(
            "scene: %d of %d cameras keep single-frame depths (%s%s)",
            len(missed), len(metrics["cameras"]), why, "; ..." if len(reasons(missed)) > 3 else "",
        )  # fmt: skip
    return metrics


def check_baselines(b) -> None:
    """The baselines' numbers (``baselines.*``), refused before any work when they are no lengths or shares
    (a negative stature gave negative box-height depths)."""
    for key, lo, hi, open_lo in (
        ("stature_m", 0.0, 10.0, True),
        ("kp_extent_over_stature", 0.0, 2.0, True),
        ("shoulder_hip_m", 0.0, 10.0, True),
        ("shoulder_hip_min_conf", 0.0, 1.0, False),
        ("floor_rel", 0.0, 1.0, False),
    ):
        if key in b:
            option_number(b[key], f"baselines.{key}", lo, hi, open_lo=open_lo, error=EvalInputError)


def evaluate(cfg: DictConfig) -> dict:
    """Run the evaluation chosen by ``keypoints=``, ``images=``, ``dataset=`` or ``suite=``;
    return the metrics.

    ``metrics["exit_code"]`` is 0 or 3 (see module docstring); :class:`EvalInputError` means exit 2.
    """
    modes = [k for k in MODES if cfg.get(k) not in (None, "")]
    if len(modes) != 1:
        raise EvalInputError(
            "give exactly one of keypoints=FILE.jsonl, images=DIR, dataset=DIR or "
            f"suite={'|'.join(SUITES)} (got {modes or 'none'})"
        )
    mode = modes[0]
    check_baselines(cfg.get("baselines") or {})
    scene = scene_up(cfg.get("scene"))  # exit 2 on a bad value, before any work
    sopts = eval_scene_options(cfg.get("scene"))
    if sopts.enabled and mode != "keypoints":
        raise EvalInputError(
            f"scene.group / scene.calibrate (scene self-calibration) apply to keypoints= only, not {mode}="
        )
    if scene is not None and mode in ("suite", "dataset"):
        raise EvalInputError(
            f"scene.* (the camera's up direction) applies to keypoints= and images= only, not {mode}="
        )
    if mode == "suite":
        if cfg.suite not in SUITES:
            raise EvalInputError(f"unknown suite '{cfg.suite}' (known: {', '.join(SUITES)})")
        out = check_out(
            out_path(cfg, f"{cfg.suite}_samples.jsonl"),
            model_inputs(cfg.get("ckpt")),
        )
        predictor = load_predictor(cfg.get("ckpt"), cfg.device)
        if cfg.suite == "scenes":
            from depth_pose.suites.scenes import run_scenes

            res = run_scenes(
                predictor,
                cfg.scenes,
                out_jsonl=out,
                plots_enabled=bool(cfg.plots),
                progress=bool(cfg.progress),
            )
            report = scenes_report(res)
        elif cfg.suite == "truncation":
            from depth_pose.suites.truncation import run_truncation

            res = run_truncation(
                predictor,
                cfg.truncation,
                out_jsonl=out,
                plots_enabled=bool(cfg.plots),
                progress=bool(cfg.progress),
            )
            report = truncation_report(res)
        elif cfg.suite == "rendered":
            from depth_pose.suites.rendered import rendered_report, run_rendered

            res = run_rendered(predictor, cfg.get("rendered"), out_jsonl=out)
            report = rendered_report(res)
        elif cfg.suite == "tilt":
            from depth_pose.suites.tilt import run_tilt

            res = run_tilt(
                predictor, cfg.tilt, out_jsonl=out, plots_enabled=bool(cfg.plots), progress=bool(cfg.progress)
            )
            report = tilt_report(res)
        else:
            from depth_pose.suites.invariance import run_invariance

            res = run_invariance(
                predictor,
                cfg.invariance,
                out_jsonl=out,
                bcfg=dict(cfg.baselines) | {"vis_threshold": cfg.vis_threshold},
                plots_enabled=bool(cfg.plots),
                progress=bool(cfg.progress),
            )
            report = invariance_report(res)
        atomic_write_text(out.parent / "report.md", report)
        print(report, flush=True)
        log_to_loggers(cfg, res, [Path(p) for p in res.get("plots", [])])
        res["exit_code"] = EXIT_OK
        return res

    src = abs_path(cfg[mode])
    if mode == "keypoints":
        check_keypoints_file(src)
    out = check_out(
        out_path(cfg, "predictions.jsonl"),
        [(mode, src), *model_inputs(cfg.get("ckpt"))],
    )
    if mode == "keypoints":
        people = read_keypoints_jsonl(src, keep=sopts.fields() if sopts.enabled else ())
        predictor = load_predictor(cfg.get("ckpt"), cfg.device)
    elif mode == "dataset":
        people = read_synthetic_set(
            src, cfg.get("dataset_max_rows"), verify=bool(cfg.get("dataset_verify", True))
        )
        predictor = load_predictor(cfg.get("ckpt"), cfg.device)
    else:
        from hydra.utils import instantiate

        from depth_pose.eval.images import detect_people, read_image_set

        read_image_set(src)  # fail fast (exit 2) on a bad folder before loading anything
        predictor = load_predictor(cfg.get("ckpt"), cfg.device)
        try:
            detector = instantiate(cfg.detector)
        except Exception as e:
            # a refusal of the detector's own (its weights), as it says it
            cause = next((c for c in chain(e) if isinstance(c, InputError)), None)
            why = str(cause) if cause is not None else f"{type(e).__name__}: {e}"
            raise EvalInputError(f"cannot build the pose detector: {why}") from e
        people = detect_people(src, detector, cfg.match_iou, progress=bool(cfg.progress))
    groups = people.fields.get(sopts.group, []) if mode == "keypoints" and sopts.enabled else [0]
    if len(people.ids) and not any(usable_id(v) for v in groups):  # (no usable line at all: the usual error)
        raise EvalInputError(
            f"scene.group={sopts.group}: no usable line of '{src}' has a '{sopts.group}' value (each "
            "person's camera); name the field with scene.group=FIELD"
        )
    counts = apply_scene(people, scene)
    if people.up is not None and np.isfinite(people.up).all(1).any() and not uses_gravity(predictor):
        log.warning(
            "the camera's up direction was given but model '%s' does not use it (no gravity input): ignored",
            model_name(predictor),
        )
    gravity = gravity_summary(people, predictor, counts, scene)
    metrics = evaluate_people(people, cfg, predictor, out, str(src), mode, gravity, sopts, scene)
    metrics["exit_code"] = EXIT_PARTIAL if people.skipped else EXIT_OK
    return metrics
