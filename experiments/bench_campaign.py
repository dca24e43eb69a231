"""Rate of the render campaign WITH the trick (``generation.render.campaign``) and WITHOUT (testset's
own-canvas builder), interleaved in one process (same Blender workers, same machine state), plus fidelity
checks: YOLO on a downscaled render vs on a render made directly at the small size, and the campaign's
mosaics / tight canvases vs the whole frame (docs/bench_campaign.md).

    .venv/bin/python experiments/bench_campaign.py [--rounds 3] [--own-part 48] [--campaign-part 24]
        [--fidelity 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from dataclasses import replace

import numpy as np

BODY_SEED = 0


def timed(obj, name: str, stats: Counter, key: str) -> None:
    """Wrap method ``name`` of ``obj`` so that its seconds add up in ``stats[key]``."""
    fn = getattr(obj, name)

    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            stats[key] += time.perf_counter() - t

    setattr(obj, name, wrapper)


def rate_rows(args, renderer, pose_sampler, camera_sampler) -> list[dict]:
    """Both builders, alternating part by part (the first of each round alternates too)."""
    from generation.render import campaign

    own, camp = Counter(), Counter()
    timed(renderer, "render", own, "render_s")  # the own-canvas builder renders and labels through these
    timed(renderer, "label", own, "yolo_s")
    for r in range(args.rounds):
        order = ("own", "campaign") if r % 2 == 0 else ("campaign", "own")
        for which in order:
            t = time.perf_counter()
            if which == "own":
                lines = campaign.own_canvas_part(
                    args.first_part + r, args.own_part, renderer, pose_sampler, camera_sampler, BODY_SEED
                )
                st = own
            else:
                lines = campaign.make_part(
                    args.first_part + r,
                    args.campaign_part,
                    renderer,
                    pose_sampler,
                    camera_sampler,
                    BODY_SEED,
                    camp,
                )
                st = camp
            dt = time.perf_counter() - t
            st["s"] += dt
            st["samples"] += len(lines)
            st["accepted"] += sum(not o["missed"] for o in lines)
            st["render_ids"] += len({o["render_id"] for o in lines})
            st["parts"] += 1
            acc = sum(not o["missed"] for o in lines)
            print(f"round {r} {which}: {len(lines)} samples ({acc} accepted) in {dt:.1f} s", flush=True)
    rows = []
    for name, st in (("own canvas (no trick)", own), ("campaign (trick)", camp)):
        wait = st["render_s"] if "render_s" in st else st["render_wait_s"]
        rows.append(
            {
                "builder": name,
                "parts": st["parts"],
                "renders": st["render_ids"],
                "samples": st["samples"],
                "accepted": st["accepted"],
                "s": round(st["s"], 1),
                "accepted_per_s": round(st["accepted"] / st["s"], 2),
                "render_wait_s": round(wait, 1),
                "yolo_s": round(st["yolo_s"], 1),
                "yolo_calls": int(st.get("yolo_calls", st["samples"])),
                "other_s": round(st["s"] - wait - st["yolo_s"], 1),
            }
        )
    rows[1]["ratio"] = round(rows[1]["accepted_per_s"] / rows[0]["accepted_per_s"], 2)
    return rows


def body_error(o: dict) -> float:
    """Mean |YOLO - exact| over the 12 body joints (shoulders..ankles) of a line, in detector pixels; NaN
    when missed."""
    kp, gt = np.array(o["keypoints_xyc"], np.float64)[5:, :2], np.array(o["gt_xy"], np.float64)[5:]
    return float(np.nanmean(np.linalg.norm(kp - gt, axis=1)) * o["detector_scale"])


def between(a: dict, b: dict) -> float:
    """Mean distance between two lines' YOLO body joints, in detector pixels (NaN if either missed)."""
    ka, kb = (np.array(o["keypoints_xyc"], np.float64)[5:, :2] for o in (a, b))
    return float(np.nanmean(np.linalg.norm(ka - kb, axis=1)) * a["detector_scale"])


def summary(pairs: list[tuple[dict, dict]]) -> dict:
    """Medians over (a, b) line pairs of the same sample seen two ways."""
    ea, eb = (np.array([body_error(p[i]) for p in pairs]) for i in (0, 1))
    med = lambda x: round(float(np.nanmedian(x)), 2) if np.isfinite(x).any() else None  # noqa: E731
    return {
        "n": len(pairs),
        "person_px_median": med(np.array([p[0]["person_px"] * p[0]["detector_scale"] for p in pairs])),
        "missed": [int(np.isnan(ea).sum()), int(np.isnan(eb).sum())],
        "median_err_px": [med(ea), med(eb)],
        "median_paired_diff_px": med(ea - eb),
        "median_between_px": med(np.array([between(*p) for p in pairs])),
    }


def fidelity(args, renderer, pose_sampler, camera_sampler) -> dict:
    """(1) downscale: YOLO on the render downscaled by ``args.scale`` vs YOLO on a render of the zoomed-out
    camera made directly (same look, scene and Cycles seed), both on the whole frame; (2) canvases: the
    campaign's mosaics / tight own canvases vs the whole frame (testset's canvas), same images."""
    from generation.render import campaign as cp
    from generation.render import testset as ts

    plans, _ = cp.plan_people(2000, args.fidelity * 8, renderer.body, pose_sampler, camera_sampler, BODY_SEED)
    plans = [p for p in plans if np.ptp(p.orig.uv[:, 1]) * args.scale >= cp.MIN_PERSON_PX]
    camp, frame = cp.Labeller(renderer.detector), cp.Labeller(renderer.detector, mosaic=False, margin=10**6)
    for plan in plans[: args.fidelity]:
        person, orig, verts, R, t = plan.person, plan.orig, plan.verts, plan.R, plan.t
        seed = [BODY_SEED, 2000, plan.index]
        (img,) = renderer.render([verts], [plan.view()], np.random.default_rng(seed))
        down = cp.zoom_out(replace(orig, tile=img), args.scale, "down") if img is not None else None
        wd = cp.render_window(down.mbox) if down is not None else None
        vd = (ts.crop_view(down.uv, down.K, wd)[1], R, t, wd[2] - wd[0], wd[3] - wd[1]) if wd else None
        (direct_img,) = renderer.render([verts], [vd], np.random.default_rng(seed)) if vd else (None,)
        if direct_img is None:
            continue
        o = replace(orig, tile=img)
        direct = replace(down, name="direct", tile=direct_img, tile_xy=wd[:2], slot=3)
        cut = replace(cp.cut_variant(o, np.random.default_rng(seed)), slot=2)
        for v in (o, replace(down, slot=1), cut):
            camp.add(person, v)
            frame.add(person, v)
        frame.add(person, direct)
    camp.flush()
    A = {x["id"]: x for x in camp.lines}
    B = {x["id"]: x for x in frame.lines}
    of = lambda lines, name: sorted(k for k in lines if k.endswith(name))  # noqa: E731
    downs = [(B[k], B[k.replace("_1_down", "_3_direct")]) for k in of(B, "_1_down")]
    out = {"scale": args.scale, "downscaled_vs_direct": summary(downs)}
    for name in ("_0_orig", "_1_down", "_cut_"):
        keys = [k for k in A if name in k]
        out[f"campaign_canvas_vs_frame{name.rstrip('_')}"] = summary([(A[k], B[k]) for k in keys])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--own-part", type=int, default=48, help="people per own-canvas part")
    ap.add_argument("--campaign-part", type=int, default=24, help="renders per campaign part")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--first-part", type=int, default=0, help="part index of round 0 (both builders)")
    ap.add_argument("--fidelity", type=int, default=12, help="people in the downscale check (0: skip)")
    ap.add_argument("--scale", type=float, default=0.5, help="downscale of the fidelity check")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import depth_pose  # noqa: F401  (env defaults before anny)
    from generation.body import BodyModel
    from generation.render import testset as ts

    load0 = os.getloadavg()
    body = BodyModel(n_bodies=ts.N_BODIES, seed=BODY_SEED)
    pose_sampler, camera_sampler = ts.build_samplers()
    renderer = ts.OwnCanvasRenderer(body, workers=args.workers)
    try:
        ts.make_part(999, 2, renderer, pose_sampler, camera_sampler, BODY_SEED)  # warm-up: workers, YOLO
        t0 = time.perf_counter()
        rows = rate_rows(args, renderer, pose_sampler, camera_sampler)
        result = {"rates": rows, "rate_wall_s": round(time.perf_counter() - t0, 1)}
        result["loadavg_before"], result["loadavg_after_rates"] = load0, os.getloadavg()
        if args.fidelity:
            result["fidelity"] = fidelity(args, renderer, pose_sampler, camera_sampler)
    finally:
        renderer.close()
    print(json.dumps(result, indent=1))
    keys = ("builder", "renders", "samples", "accepted", "s", "accepted_per_s", "render_wait_s", "yolo_s")
    print("| " + " | ".join(keys + ("yolo_calls", "other_s", "ratio")) + " |")
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys + ("yolo_calls", "other_s", "ratio")) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
