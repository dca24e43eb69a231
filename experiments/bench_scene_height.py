"""What a known camera height buys (issue 16): the scene suite's flat-floor scenes calibrated three ways at
the suite's checkpoints, fused and filtered as the suite does (``fuse_online``), scored on the suite's
standing / walking person-frames after the warm-up:

- ``self``: self-calibration (the suite's scene-aware result);
- ``height``: ``dp-predict scene.height_m=<the mount's height>`` (:func:`depth_pose.scene_commands.fit_scene`
  with the height: the up is estimated and sharpened by the height);
- ``mount``: the whole mount given (``scene.height_m`` with ``scene.pitch_deg`` / ``roll_deg``: nothing
  estimated), the bound of the fusion itself.

Also the pitch error after the first checkpoint and after all person-frames (self vs height).

    OMP_NUM_THREADS=1 .venv/bin/python experiments/bench_scene_height.py [--out TABLE.md] [HYDRA_OVERRIDE ...]
        (e.g. scenes.seed=200; the defaults are the suite's: seed 16, 20 scenes per mount)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from model_bench import compose
from tqdm import tqdm

from depth_pose.fileio import atomic_write_text
from depth_pose.predictor import DepthPredictor
from depth_pose.scene_commands import fit_scene, given_calibration
from depth_pose.suites.scenes import SIT, build_scenes, calib_errors, fuse_online, model_ups

WAYS = ("self", "height", "mount")


def calibrations(run, z, s, way: str, checkpoints: list[int], image_wh, fps: float) -> list[tuple]:
    """``run.calibs`` of one way: (checkpoint, calibration or None, why)."""
    if way == "mount":
        return [(checkpoints[0], given_calibration(run.up_cam, run.height_m, run.K, image_wh), "given")]
    height = run.height_m if way == "height" else None
    out = []
    for c in checkpoints + [len(run)]:
        if c > len(run):
            continue
        f = fit_scene(
            run.keypoints[:c], run.K, z[:c], s[:c], run.track[:c], image_wh, height_m=height, fps=fps
        )
        out.append((c, f.calib, f.why or ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="also write the table here (Markdown)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of conf/eval.yaml (scenes.*)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = compose(["suite=scenes", "scenes.floors=[flat]", *args.overrides]).scenes
    image_wh, fps = (int(cfg.img_w), int(cfg.img_h)), float(cfg.fps)
    checkpoints = [int(c) for c in cfg.calib_at]
    warm = int(cfg.warmup_person_frames)
    runs, _ = build_scenes(cfg, progress=True)
    predictor = DepthPredictor.load()
    frame = {"image_wh": image_wh} if getattr(predictor, "uses_border", False) else {}
    errors: dict[tuple[str, str], list[np.ndarray]] = {}
    pitch: dict[tuple[str, str, str], list[float]] = {}
    for run in tqdm(runs, desc="scenes: calibrate and fuse"):
        K = np.broadcast_to(run.K, (len(run), 3, 3)).astype(np.float32)
        p = predictor.predict(run.keypoints, K, up=None, **frame)
        z1, s1 = np.asarray(p.z_m, np.float64), np.asarray(p.sigma_m, np.float64)
        scored = (np.arange(len(run)) >= warm) & (run.activity != SIT)
        for way in WAYS:
            calibs = calibrations(run, z1, s1, way, checkpoints, image_wh, fps)
            if way != "mount":
                for c, calib, _ in (calibs[0], calibs[-1]):
                    at = "all" if c == len(run) else str(c)
                    pitch.setdefault((run.mount, way, at), []).append(calib_errors(run, calib)["pitch"])
                calibs = [x for x in calibs if x[0] < len(run)] or calibs[:1]
            run.calibs = calibs
            p = predictor.predict(
                run.keypoints, K, up=model_ups(run) if predictor.uses_gravity else None, **frame
            )
            fused = fuse_online(
                run, np.asarray(p.z_m, np.float64), np.asarray(p.sigma_m, np.float64), cfg, image_wh
            )
            errors.setdefault((run.mount, way), []).append(
                np.abs(fused["smooth"][scored] / run.z_true[scored] - 1)
            )
    mounts = list(dict.fromkeys(r.mount for r in runs))
    first = str(checkpoints[0])

    def med(v: list) -> str:
        v = [x for x in v if x is not None]
        return f"{np.median(v):.2f}° ({len(v)})" if v else "–"

    lines = [
        f"Scene suite, flat floors (seed {cfg.seed}, {cfg.n_scenes} scenes per mount): scene-aware median "
        "|z/true − 1| of standing / walking person-frames after the warm-up, and the median |pitch error| "
        f"(scenes calibrated) after {first} and after all person-frames.",
        "",
        "| mount | self-calibrated | height given | mount given | pitch @" + first + ", self → height "
        "| pitch @all, self → height |",
        "|---|---|---|---|---|---|",
    ]
    for m in mounts:
        e = {w: 100 * float(np.median(np.concatenate(errors[(m, w)]))) for w in WAYS}
        lines.append(
            f"| {m} | {e['self']:.2f}% | {e['height']:.2f}% | {e['mount']:.2f}% | "
            f"{med(pitch[(m, 'self', first)])} → {med(pitch[(m, 'height', first)])} | "
            f"{med(pitch[(m, 'self', 'all')])} → {med(pitch[(m, 'height', 'all')])} |"
        )
    lines += ["", f"Wall {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
