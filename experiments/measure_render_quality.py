"""Issue 20: is YOLO's skeleton shortening on ``render=draft`` renders an artifact of the render quality?

The same people (full-body, hybrid standing/walking poses, body bank seed 0, a fixed part seed) are rendered
once per preset with an identical scene, camera, appearance, Cycles seed and window (the machinery of
``generation.render.testset``: ``person_window`` at the detector's scale, ``paste`` onto the letterboxed
canvas), YOLO11n-pose runs on each canvas (conf 0.1, the best-OKS detection, no OKS filter) and its keypoints
are compared with the exact ones, paired per person.

    python experiments/measure_render_quality.py --n 80 --presets draft seed high \
        --out docs/bench_render_quality.md

Presets: a name in ``conf/render/`` (its settings merged over ``draft.yaml``), optionally with overrides
``name:samples=16,denoise=true`` (e.g. ``draft:samples=16,denoise=true``). The first preset is the
reference the others are paired against. Per person (canvas pixels, the detector's scale):

* extent ratio: keypoint-box extent (the larger of width/height) of the joints YOLO reports (conf >= 0.1),
  detected / exact over the same joints;
* median per-joint error / person size (size: exact keypoint-box extent, all 17 joints);
* signed offset along the body's vertical (exact mid-ankle -> mid-shoulder direction, + = up) / size, for
  the face (mean of nose and eyes) and the ankles (mean of both);
* missed joints (conf < 0.1 of 17), missed people (no detection).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODY_SEED = 0
PART_SEED = 20  # the issue number: a fixed part seed
CONF = 0.1
FACE = (0, 1, 2)  # nose, left eye, right eye
ANKLES = (15, 16)
BANDS = (("< 100 px", 0, 100), ("100-200 px", 100, 200), (">= 200 px", 200, 10**9), ("all", 0, 10**9))
JOB_TIMEOUT_S = 300.0


def preset_settings(spec: str) -> tuple[str, dict]:
    """``name[:k=v,...]`` -> (label, Cycles settings): ``conf/render/<name>.yaml`` over ``draft.yaml``."""
    import yaml
    from omegaconf import OmegaConf

    from depth_pose.env import config_dir

    name, _, over = spec.partition(":")
    d = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "render" / "draft.yaml"))
    p = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "render" / f"{name}.yaml"))
    p.pop("defaults", None)
    d.update(p)
    for kv in filter(None, over.split(",")):
        k, v = kv.split("=")
        d[k] = yaml.safe_load(v)
    if d.get("device") == "auto":
        d["device"] = "cpu"  # no GPU here
    keys = ("engine", "samples", "denoise", "max_bounces", "threads", "device")
    return spec, {k: d.get(k) for k in keys}


def build_people(n: int, min_px: float | None = None, part_seed: int = PART_SEED):
    """The people: jobs (mesh + look + view) and, per person, exact canvas keypoints, mesh box, window,
    bounds, pose label. Full-body only: people the frame cuts are skipped (more are drawn)."""
    import torch

    from generation.body import BodyModel
    from generation.render import appearance, testset
    from generation.render.downscale import scaled_intrinsics
    from generation.render.framing import blender_camera
    from generation.render.testset import (
        N_BODIES,
        box_of,
        build_samplers,
        crop_view,
        detector_scale,
        draw_cameras,
        person_window,
        posed_geometry,
        project,
    )

    if min_px is not None:  # draw_cameras redraws cameras until the person is this tall for YOLO
        testset.MIN_PERSON_PX = float(min_px)
    body = BodyModel(n_bodies=N_BODIES, seed=BODY_SEED)
    pose_sampler, camera_sampler = build_samplers()
    rng = np.random.default_rng([BODY_SEED, part_seed])
    g = torch.Generator().manual_seed(BODY_SEED * 1_000_003 + part_seed)
    m = int(np.ceil(n * (1.5 if min_px is None else 3.0))) + 8
    poses = pose_sampler.sample(m, g)
    bi = torch.randint(0, len(body.shapes), (m,), generator=g)
    verts, kp_world, labels = posed_geometry(body, poses, bi)
    cams, too_small = draw_cameras(body, poses, bi, camera_sampler, g, kp_world)
    people = []
    for j in range(m):
        if len(people) >= n:
            break
        if too_small[j]:
            continue
        K, R, t, (W, H) = cams["K"][j], cams["R"][j], cams["t"][j], cams["wh"][j]
        d = detector_scale(W, H)
        Ky = scaled_intrinsics(K, d, (0, 0))
        uv, _ = project(kp_world[j], Ky, R, t)
        mbox = box_of(project(verts[j], Ky, R, t)[0])
        bounds = (0.0, 0.0, float(round(W * d)), float(round(H * d)))
        inside = (uv >= [bounds[0], bounds[1]]).all(1) & (uv < [bounds[2], bounds[3]]).all(1)
        if not inside.all():
            continue
        win = person_window(mbox, bounds)
        if win is None:
            continue
        Kw = crop_view(uv, Ky, win)[1]
        view = {
            "camera": blender_camera(Kw, R, t, int(win[2] - win[0]), int(win[3] - win[1])),
            "scene": appearance.scene_look(rng),
            "seed": int(rng.integers(2**31)),
        }
        job = {"vertices": verts[j].astype(np.float32), "look": appearance.person_look(rng), "views": [view]}
        people.append(
            {
                "job": job,
                "gt": uv,
                "box": mbox,
                "win": win,
                "bounds": bounds,
                "pose": str(labels[j]),
                "row": j,
            }
        )
    return body, people


def render_all(body, settings: dict, jobs: list[dict], workers: int) -> tuple[list, float]:
    """Render every job with ``settings``; a job that hangs past :data:`JOB_TIMEOUT_S` gets its pool's
    workers killed (by pid) and the pool restarted once, then counts as failed."""
    from generation.render import appearance
    from generation.render.worker import RenderPool

    faces, face_part, hair = appearance.segment_faces(body.model)
    pool = RenderPool(faces, face_part, hair, settings, workers=workers)
    out: list = [None] * len(jobs)
    t0 = time.perf_counter()
    try:
        todo = list(range(len(jobs)))
        for _attempt in range(2):
            futs = {i: pool.submit(jobs[i]) for i in todo}
            hung = []
            for i in todo:
                try:
                    out[i] = futs[i].result(timeout=JOB_TIMEOUT_S)[0]
                except FutureTimeout:
                    hung.append(i)
                    print(f"  job {i} hung (> {JOB_TIMEOUT_S:.0f} s): restarting the workers", flush=True)
                    for pid in list(getattr(pool._pool, "_processes", {}) or {}):
                        try:
                            os.kill(pid, 9)
                        except OSError:
                            pass
                    pool._pool = None
                    pool._start()
                    hung += [x for x in todo if x > i]
                    break
                except Exception as exc:  # a worker crash or Blender error
                    print(f"  job {i} failed: {exc!r}", flush=True)
            todo = sorted(set(hung))
            if not todo:
                break
    finally:
        pool.close()
    return out, time.perf_counter() - t0


def person_metrics(det: np.ndarray | None, gt: np.ndarray) -> dict:
    """Per-person numbers (see the module docstring); ``det`` (17, 3) or None when missed."""
    size = float(max(np.ptp(gt[:, 0]), np.ptp(gt[:, 1])))
    res = {"size": size, "missed": det is None}
    if det is None:
        return res
    ok = np.isfinite(det[:, :2]).all(1) & (det[:, 2] >= CONF)
    res["missed_joints"] = int(17 - ok.sum())
    if ok.sum() >= 2:
        e_det = max(np.ptp(det[ok, 0]), np.ptp(det[ok, 1]))
        e_gt = max(np.ptp(gt[ok, 0]), np.ptp(gt[ok, 1]))
        res["ratio"] = float(e_det / e_gt) if e_gt > 0 else np.nan
        res["err"] = float(np.median(np.linalg.norm(det[ok, :2] - gt[ok], axis=1)) / size)
    up = 0.5 * (gt[5] + gt[6]) - 0.5 * (gt[15] + gt[16])
    up = up / max(np.linalg.norm(up), 1e-9)
    for name, idx in (("face", FACE), ("ankle", ANKLES)):
        sel = [i for i in idx if ok[i]]
        if sel:
            res[name] = float(np.mean([(det[i, :2] - gt[i]) @ up for i in sel]) / size)
    return res


def q(x, p) -> str:
    x = np.asarray([v for v in x if v is not None and np.isfinite(v)])
    return f"{np.quantile(x, p):+.3f}" if len(x) else "n/a"


def qa(x, p) -> str:
    x = np.asarray([v for v in x if v is not None and np.isfinite(v)])
    return f"{np.quantile(x, p):.3f}" if len(x) else "n/a"


def tables(labels: list[str], mets: dict[str, list[dict]], times: dict[str, float]) -> str:
    ref = labels[0]
    n = len(mets[ref])
    lines = ["#### Per preset", ""]
    lines.append(
        "| preset | band | people | missed | extent ratio median | q10 | q90 | median joint err / size "
        "| face offset median (+ up) | ankle offset median (+ up) | missed joints / person |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for lab in labels:
        for band, lo, hi in BANDS:
            rows = [m for m in mets[lab] if lo <= m["size"] < hi]
            if not rows:
                continue
            det = [m for m in rows if not m["missed"]]

            def g(k, det=det):
                return [m.get(k, np.nan) for m in det]

            mj = np.mean([m["missed_joints"] for m in det]) if det else np.nan
            lines.append(
                f"| {lab} | {band} | {len(rows)} | {len(rows) - len(det)} | {qa(g('ratio'), 0.5)} | "
                f"{qa(g('ratio'), 0.1)} | {qa(g('ratio'), 0.9)} | {qa(g('err'), 0.5)} | "
                f"{q(g('face'), 0.5)} | {q(g('ankle'), 0.5)} | {mj:.2f} |"
            )
    lines += ["", f"#### Paired against `{ref}` (other - {ref}, people both detect)", ""]
    lines.append(
        "| preset | band | pairs | extent ratio diff median | q10 | q90 | share ratio higher | "
        "err diff median | face offset diff median | ankle offset diff median |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for lab in labels[1:]:
        for band, lo, hi in BANDS:
            pairs = [
                (a, b)
                for a, b in zip(mets[ref], mets[lab])
                if lo <= a["size"] < hi and "ratio" in a and "ratio" in b
            ]
            if not pairs:
                continue

            def dif(k, pairs=pairs):
                return [b.get(k, np.nan) - a.get(k, np.nan) for a, b in pairs]

            hi_share = np.mean([b["ratio"] > a["ratio"] for a, b in pairs])
            lines.append(
                f"| {lab} | {band} | {len(pairs)} | {q(dif('ratio'), 0.5)} | {q(dif('ratio'), 0.1)} | "
                f"{q(dif('ratio'), 0.9)} | {hi_share:.2f} | {q(dif('err'), 0.5)} | {q(dif('face'), 0.5)} | "
                f"{q(dif('ankle'), 0.5)} |"
            )
    lines += ["", "#### Render time", "", "| preset | settings | s per person |", "|---|---|---|"]
    for lab in labels:
        lines.append(f"| {lab} | {times[lab + '#settings']} | {times[lab] / max(n, 1):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=48, help="people")
    ap.add_argument("--presets", nargs="+", default=["draft", "seed"], help="first = reference")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--part-seed", type=int, default=PART_SEED, help="seed of the people drawn")
    ap.add_argument(
        "--min-px",
        type=float,
        default=None,
        help="redraw cameras until the person is at least this tall for YOLO (default: the test set's 40)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs/bench_render_quality.md")
    ap.add_argument("--save", type=Path, default=None, help="also save the canvases + metrics (npz)")
    a = ap.parse_args(argv)
    import depth_pose  # noqa: F401  (env defaults before anny)
    from depth_pose.detect import PoseDetector
    from generation.render.label import match
    from generation.render.testset import paste

    t0 = time.perf_counter()
    body, people = build_people(a.n, a.min_px, a.part_seed)
    print(f"{len(people)} people built in {time.perf_counter() - t0:.1f} s", flush=True)
    detector = PoseDetector(None, imgsz=640, conf=CONF)
    labels, mets, times, canv = [], {}, {}, {}
    for spec in a.presets:
        lab, settings = preset_settings(spec)
        labels.append(lab)
        ims, dt = render_all(body, settings, [p["job"] for p in people], a.workers)
        times[lab], times[lab + "#settings"] = dt, ", ".join(f"{k}={v}" for k, v in settings.items())
        print(
            f"{lab}: {len(people)} renders in {dt:.1f} s ({dt / max(len(people), 1):.2f} s/person)",
            flush=True,
        )
        mets[lab], canv[lab] = [], []
        for p, im in zip(people, ims):
            if im is None:
                mets[lab].append({"size": 0.0, "missed": True, "failed": True})
                canv[lab].append(None)
                continue
            c = paste(im, p["win"], p["bounds"])
            canv[lab].append(c)
            (dets,) = detector([c], imgsz=int(32 * np.ceil(max(c.shape[:2]) / 32)))
            r = match(dets, p["gt"], p["box"], (-(10**6), -(10**6), 10**6, 10**6), 0.0)
            det = None if r.status == "no_detection" else np.asarray(r.keypoints, np.float64)
            mets[lab].append(person_metrics(det, p["gt"]))
    # a person whose render failed under any preset is left out of every preset (keeps the pairing)
    failed = {i for lab in labels for i, m in enumerate(mets[lab]) if m.get("failed")}
    if failed:
        print(f"{len(failed)} people left out (a render failed)", flush=True)
    for lab in labels:
        mets[lab] = [m for i, m in enumerate(mets[lab]) if i not in failed]
    text = tables(labels, mets, times)
    print(text, flush=True)
    if a.save:
        np.savez_compressed(
            a.save,
            **{f"{lab}_{i}": c for lab in labels for i, c in enumerate(canv[lab]) if c is not None},
            gt=np.stack([p["gt"] for p in people]),
        )
    cmd = "python experiments/measure_render_quality.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    write_doc(a.out, cmd, len(people) - len(failed), text)
    return 0


def write_doc(path: Path, cmd: str, n: int, text: str) -> None:
    """Write the tables into ``path`` between the ``<!-- tables -->`` markers (the rest of the doc, the
    reading, is kept); a new doc gets a header."""
    begin, end = "<!-- tables:begin -->", "<!-- tables:end -->"
    block = f"{begin}\n\n`{cmd}` ({n} people)\n\n{text}\n{end}"
    if path.exists() and begin in path.read_text():
        old = path.read_text()
        path.write_text(old[: old.index(begin)] + block + old[old.index(end) + len(end) :])
    else:
        path.write_text(f"# Render quality vs YOLO's skeleton shortening (issue 20)\n\n{block}\n")
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
