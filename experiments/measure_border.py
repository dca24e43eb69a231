"""YOLO's behaviour at the image border, measured on renders (issue 19, item 1): what the detector reports for
joints OUTSIDE the frame and for joints inside it near the border.

Standing / walking people (hybrid sampler legs: standing preset or walk cycle; level cameras of
``conf/camera/default.yaml``) are rendered with ``render=draft`` settings, each on its OWN 320 px canvas (YOLO
clamps to the image border, not to a mosaic tile's edge), framed to ``--fill`` (mesh box / render, mid-range
size). Each render is cropped (the image array; the exact keypoints and K move with the crop,
``generation.render.testset.crop_view``) so that the bottom edge sits at the ankles, knees, hips, waist (35 %
up the torso) or chest (75 % up), or a side edge at the image-right-most / left-most shoulder; plus the uncut
render. YOLO (bundled yolo11n-pose, imgsz = 320 = native size, conf 0.1) runs on each crop and the detection
with the best OKS against the exact keypoints is kept (no OKS filter).

Per cut and joint group, for joints outside the crop: share reported (confidence >= vis_threshold and finite),
confidence quantiles, the reported point's inset from the border (px and / person height), share exactly on
the border (< 1 px), its offset along the edge / person height; for joints inside within 10 % of the person's
height of the cut edge: share reported and confidence quantiles. Prints recommended values for the noise-model
keys ``border_clamp_prob`` (by how far outside), ``border_conf_min`` / ``border_conf_max``, border jitter.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/measure_border.py --n 160 --raw /tmp/border.npz \
        --md docs/bench_border.md
    .venv/bin/python experiments/measure_border.py --from-raw /tmp/border.npz --md docs/bench_border.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

GROUPS = {
    "face": [0, 1, 2, 3, 4],
    "shoulders": [5, 6],
    "elbows": [7, 8],
    "wrists": [9, 10],
    "hips": [11, 12],
    "knees": [13, 14],
    "ankles": [15, 16],
}
CUTS = ("none", "ankles", "knees", "hips", "waist", "chest", "shoulder_right", "shoulder_left")
DIST_BINS = (0.0, 0.03, 0.1, 0.2, 0.4, 10.0)  # how far outside, / person height
NEAR = 0.1  # inside joints within this fraction of the person height of the cut edge
VIS = 0.1  # conf/*.yaml vis_threshold


def cut_of(name: str, gt: np.ndarray, W: int, H: int) -> tuple[str, tuple[int, int, int, int]]:
    """The crop side and box of cut ``name`` for exact keypoints ``gt`` (17, 2) on a W x H render."""
    from generation.render.testset import cut_box

    sh_y, hip_y = gt[[5, 6], 1].mean(), gt[[11, 12], 1].mean()
    level = {
        "ankles": gt[[15, 16], 1].mean(),
        "knees": gt[[13, 14], 1].mean(),
        "hips": hip_y,
        "waist": hip_y + 0.35 * (sh_y - hip_y),
        "chest": hip_y + 0.75 * (sh_y - hip_y),
    }
    if name == "none":
        return "none", (0, 0, W, H)
    if name == "shoulder_right":
        return "right", cut_box("right", gt[[5, 6], 0].max(), W, H)
    if name == "shoulder_left":
        return "left", cut_box("left", gt[[5, 6], 0].min(), W, H)
    return "bottom", cut_box("bottom", level[name], W, H)


def collect(n: int, fill: float, seed: int, workers: int) -> dict:
    """Render ``n`` people, crop, detect; raw arrays (one row per person x cut)."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from depth_pose.env import config_dir
    from generation.body import BodyModel
    from generation.config import with_defaults
    from generation.render.framing import frame_person
    from generation.render.testset import OwnCanvasRenderer, box_of, crop_view, posed_geometry, project

    ov = [
        "camera=default",
        "pose_sampling=hybrid",
        "pose_sampling.p_preset=0.5",
        "pose_sampling.p_hands_up=0.0",
        "out_dir=/tmp/unused",
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = with_defaults(compose("generate", overrides=ov))
    from generation.pose import HybridPoseSampler

    only_standing = {k: float(k == "standing") for k in HybridPoseSampler().preset_names}
    pose_sampler = instantiate(cfg.pose_sampling, preset_weights=only_standing)
    cam_sampler = instantiate(cfg.camera)
    body = BodyModel(n_bodies=64, seed=seed)
    g, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    rows = {k: [] for k in ("cut", "side", "gt", "det", "wh", "h", "det_conf", "missed", "pose")}
    renderer = OwnCanvasRenderer(body, workers=workers)
    t0 = time.perf_counter()
    try:
        done = 0
        while done < n:
            m = min(16, n - done)
            poses = pose_sampler.sample(m, g)
            bi = torch.randint(0, len(body.shapes), (m,), generator=g)
            cams = cam_sampler.sample(body.pose(bi, poses), g)
            verts, kp_world, labels = posed_geometry(body, poses, bi)
            views, geo = [], []
            for i in range(m):
                R, t = cams.R[i].double().numpy(), cams.t[i].double().numpy()
                K = frame_person(verts[i], R, t, renderer.res, fill)
                views.append((K, R, t, renderer.res, renderer.res))
                geo.append((project(kp_world[i], K, R, t)[0], box_of(project(verts[i], K, R, t)[0]), K))
            images = renderer.render(verts, views, rng)
            imgs, gts, boxes, meta = [], [], [], []
            for image, (uv, mbox, K), pose in zip(images, geo, labels):
                if image is None:
                    continue
                H, W = image.shape[:2]
                h = float(np.ptp(uv[:, 1]))
                for c in CUTS:
                    side, box = cut_of(c, uv, W, H)
                    gt, _ = crop_view(uv, K, box)
                    imgs.append(image[box[1] : box[3], box[0] : box[2]])
                    gts.append(gt)
                    boxes.append(mbox - np.array([box[0], box[1]] * 2))
                    meta.append((c, side, (box[2] - box[0], box[3] - box[1]), h, str(pose)))
            labs = renderer.label(imgs, gts, boxes)
            for gt, lab, (c, side, wh, h, pose) in zip(gts, labs, meta):
                rows["cut"].append(c)
                rows["side"].append(side)
                rows["gt"].append(gt)
                rows["det"].append(lab.keypoints)
                rows["wh"].append(wh)
                rows["h"].append(h)
                rows["det_conf"].append(lab.det_conf)
                rows["missed"].append(lab.status == "no_detection")
                rows["pose"].append(pose)
            done += m
            print(
                f"  {done}/{n} people, {len(rows['cut'])} crops, {time.perf_counter() - t0:.0f} s", flush=True
            )
    finally:
        renderer.close()
    out = {k: np.array(v) for k, v in rows.items()}
    out["seconds"] = np.array(time.perf_counter() - t0)
    return out


def outside_distance(side: str, xy: np.ndarray, W: float, H: float) -> np.ndarray:
    """Signed distance (px) of points (..., 2) beyond the cut edge (> 0 outside, < 0 inside)."""
    if side == "bottom":
        return xy[..., 1] - H
    if side == "right":
        return xy[..., 0] - W
    if side == "left":
        return -xy[..., 0]
    return np.full(xy.shape[:-1], -np.inf)


def along(side: str, xy: np.ndarray) -> np.ndarray:
    """The coordinate along the cut edge."""
    return xy[..., 0] if side == "bottom" else xy[..., 1]


def q(v: np.ndarray, ps=(10, 50, 90)) -> list[float | None]:
    v = v[np.isfinite(v)]
    return [round(float(np.percentile(v, p)), 3) if len(v) else None for p in ps]


def analyse(d: dict) -> dict:
    """Tables per cut x joint group and the recommended noise-model values."""
    res: dict = {"per_cut": {}, "by_distance": [], "inside_near": {}}
    all_out = {"dist": [], "rep": [], "conf": [], "inset": [], "along": [], "nan": []}
    for c in CUTS:
        sel = np.nonzero(d["cut"] == c)[0]
        if not len(sel):
            continue
        res["per_cut"][c] = {"crops": int(len(sel)), "missed": float(d["missed"][sel].mean()), "groups": {}}
        near_rows = {}
        for gname, js in GROUPS.items():
            o_rep, o_conf, o_inset, o_along, o_nan, o_n = [], [], [], [], [], 0
            i_rep, i_conf = [], []
            for i in sel:
                side, (W, H), h = d["side"][i], d["wh"][i], d["h"][i]
                if d["missed"][i]:
                    continue
                gt, det = d["gt"][i][js], d["det"][i][js]
                dist = outside_distance(side, gt, W, H)
                conf = det[:, 2]
                finite = np.isfinite(det[:, :2]).all(1)
                rep = finite & (conf >= VIS)
                for k in range(len(js)):
                    if dist[k] > 0:
                        o_n += 1
                        o_rep.append(rep[k])
                        o_conf.append(conf[k])
                        o_nan.append(not finite[k])
                        if rep[k]:
                            inset = -outside_distance(side, det[k, :2], W, H)
                            o_inset.append(inset / h)
                            o_along.append((along(side, det[k, :2]) - along(side, gt[k])) / h)
                            all_out["inset"].append(inset / h)
                            all_out["along"].append(o_along[-1])
                        all_out["dist"].append(dist[k] / h)
                        all_out["rep"].append(rep[k])
                        all_out["conf"].append(conf[k] if rep[k] else np.nan)
                    elif dist[k] > -NEAR * h and side != "none":
                        i_rep.append(rep[k])
                        i_conf.append(conf[k])
            row = {"outside_n": o_n}
            if o_n:
                ins = np.array(o_inset)
                row.update(
                    reported=round(float(np.mean(o_rep)), 3),
                    conf_q10_50_90=q(np.array(o_conf)[np.array(o_rep, bool)]),
                    conf_all_q50=q(np.array(o_conf), (50,))[0],
                    inset_rel_q50_90=q(ins, (50, 90)),
                    on_border=round(float(np.mean(ins < 1e-6)), 3) if len(ins) else None,
                    along_rel_sigma=round(float(1.4826 * np.median(np.abs(o_along - np.median(o_along)))), 4)
                    if len(o_along) > 2
                    else None,
                    nan=round(float(np.mean(o_nan)), 3),
                )
            if i_rep:
                near_rows[gname] = {
                    "n": len(i_rep),
                    "reported": round(float(np.mean(i_rep)), 3),
                    "conf_q10_50_90": q(np.array(i_conf)),
                }
            res["per_cut"][c]["groups"][gname] = row
        res["inside_near"][c] = near_rows
    dist, rep = np.array(all_out["dist"]), np.array(all_out["rep"], bool)
    conf = np.array(all_out["conf"])
    for lo, hi in zip(DIST_BINS[:-1], DIST_BINS[1:]):
        m = (dist >= lo) & (dist < hi)
        if m.sum():
            res["by_distance"].append(
                {
                    "lo": lo,
                    "hi": hi,
                    "n": int(m.sum()),
                    "reported": round(float(rep[m].mean()), 3),
                    "conf_q10_50_90": q(conf[m & rep]),
                }
            )
    # recommendation: p(d) = p0 exp(-d / scale) fitted on the bins (least squares on the log, weighted by n)
    b = [x for x in res["by_distance"] if x["reported"] > 0]
    mid = np.array([min(0.5 * (x["lo"] + x["hi"]), 0.6) for x in b])
    pr = np.array([x["reported"] for x in b])
    w = np.sqrt([x["n"] for x in b])
    A = np.stack([np.ones_like(mid), -mid], 1) * w[:, None]
    coef, *_ = np.linalg.lstsq(A, np.log(pr) * w, rcond=None)
    # and the logistic p(d) = p_max / (1 + exp((d - d50) / width)) on every outside joint (plateau, then drop)
    from scipy.optimize import curve_fit

    try:
        (pmax, d50, wid), _ = curve_fit(
            lambda x, a, m, s: a / (1 + np.exp((x - m) / s)),
            dist,
            rep.astype(float),
            p0=(0.95, 0.3, 0.05),
            bounds=([0, 0, 1e-3], [1, 2, 1]),
        )
    except RuntimeError:
        pmax, d50, wid = (float("nan"),) * 3
    inset = np.array(all_out["inset"])
    alg = np.array(all_out["along"])
    cr = conf[rep]
    res["recommend"] = {
        "border_clamp_prob": round(float(rep.mean()), 3),
        "border_clamp_prob_fit": {
            "p0": round(float(min(np.exp(coef[0]), 1.0)), 3),
            "scale_rel_height": round(float(1 / coef[1]) if coef[1] > 0 else float("inf"), 3),
        },
        "border_clamp_prob_logistic": {
            "p_max": round(float(pmax), 3),
            "d50_rel_height": round(float(d50), 3),
            "width_rel_height": round(float(wid), 3),
        },
        "border_conf_min": round(float(np.percentile(cr, 10)), 3) if len(cr) else None,
        "border_conf_max": round(float(np.percentile(cr, 90)), 3) if len(cr) else None,
        "border_conf_median": round(float(np.median(cr)), 3) if len(cr) else None,
        "border_on_edge_share": round(float((inset < 1e-6).mean()), 3) if len(inset) else None,
        "border_inset_rel_q50_90": q(inset, (50, 90)),
        "border_jitter_rel": round(float(1.4826 * np.median(np.abs(alg - np.median(alg)))), 4)
        if len(alg)
        else None,
        "n_outside": int(len(dist)),
    }
    return res


def markdown(res: dict, meta: dict) -> str:
    L = [
        "# YOLO at the image border, measured on renders (issue 19)",
        "",
        "What is measured: `experiments/measure_border.py` (module docstring): standing / walking people",
        "rendered with `render=draft` settings on their OWN 320 px canvas (not a mosaic tile), mesh box at",
        f"{meta['fill']} of the render (keypoint height median {meta['h_median']:.0f} px), each render",
        "cropped so the bottom edge sits at the ankles / knees / hips / waist / chest or a side edge at one",
        "shoulder; YOLO (yolo11n-pose, imgsz 320 = native, conf 0.1) on each crop, best-OKS detection kept",
        "(no OKS filter). A joint is *outside* when its exact projection is beyond the cut edge; *reported*",
        "= confidence >= 0.1 (`vis_threshold` in `conf/*.yaml`) with finite coordinates; *inset* = how far",
        "inside the border YOLO put it.",
        "",
        "```bash",
        meta["command"],
        "```",
        "",
        f"{meta['n_people']} people x {len(CUTS)} crops = {meta['n_crops']} YOLO images in "
        f"{meta['seconds']:.0f} s ({meta['n_people'] / meta['seconds']:.2f} people/s incl. render + 8 YOLO "
        "passes; 2-core CPU shared with other jobs); " + meta["date"],
        "",
        "## Recommended noise-model values (generation/noise.py)",
        "",
        "```json",
        json.dumps(res["recommend"], indent=1),
        "```",
        "",
        "* `border_clamp_prob`: share of outside joints reported (>= 0.1) over all cuts; "
        "`border_clamp_prob_fit`: p(d) = p0 exp(-d / scale), d = distance outside / person height; "
        "`border_clamp_prob_logistic`: p(d) = p_max / (1 + exp((d - d50) / width)) on every outside joint.",
        "* `border_conf_min` / `border_conf_max`: 10th / 90th percentile of the reported outside joints' "
        "confidence.",
        "* `border_on_edge_share`: reported outside joints placed exactly on the border (ultralytics clips "
        "keypoints to the image); `border_inset_rel_q50_90`: inset / person height; `border_jitter_rel`: "
        "robust sigma "
        "(1.4826 MAD) of the offset along the edge / person height.",
        "",
        "## Outside joints by distance outside (all cuts)",
        "",
        "| d / height | n | reported | conf p10 / p50 / p90 (reported) |",
        "|---|---|---|---|",
    ]
    for b in res["by_distance"]:
        L.append(f"| {b['lo']}-{b['hi']} | {b['n']} | {b['reported']} | {b['conf_q10_50_90']} |")
    L += [
        "",
        "## Outside joints per cut and joint group",
        "",
        "| cut | crops | person missed | group | n outside | reported | conf p10/p50/p90 (reported) | "
        "inset/h p50/p90 | on border | along-edge sigma/h | NaN |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c, r in res["per_cut"].items():
        for gname, row in r["groups"].items():
            if not row["outside_n"]:
                continue
            L.append(
                f"| {c} | {r['crops']} | {r['missed']:.3f} | {gname} | {row['outside_n']} | "
                f"{row['reported']} | {row['conf_q10_50_90']} | {row['inset_rel_q50_90']} | "
                f"{row['on_border']} | "
                f"{row['along_rel_sigma']} | {row['nan']} |"
            )
    L += [
        "",
        f"## Inside joints within {NEAR} x height of the cut edge",
        "",
        "| cut | group | n | reported | conf p10/p50/p90 |",
        "|---|---|---|---|---|",
    ]
    for c, rows in res["inside_near"].items():
        for gname, row in rows.items():
            L.append(f"| {c} | {gname} | {row['n']} | {row['reported']} | {row['conf_q10_50_90']} |")
    L += [
        "",
        "Uncut renders (reference): person missed share " + f"{res['per_cut']['none']['missed']:.3f}.",
        "",
    ]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=160, help="people rendered")
    ap.add_argument("--fill", type=float, default=0.6, help="mesh box / render size (mid-range person size)")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--raw", type=Path, default=None, help="save the raw samples (.npz)")
    ap.add_argument("--from-raw", type=Path, default=None, help="analyse saved samples, no rendering")
    ap.add_argument("--md", type=Path, default=None, help="write the Markdown report here")
    a = ap.parse_args(argv)
    import depth_pose  # noqa: F401

    if a.from_raw:
        d = dict(np.load(a.from_raw, allow_pickle=False))
    else:
        d = collect(a.n, a.fill, a.seed, a.workers)
        if a.raw:
            np.savez_compressed(a.raw, **d)
    res = analyse(d)
    print(json.dumps(res["recommend"], indent=1))
    if a.md:
        from depth_pose.fileio import atomic_write_text

        meta = {
            "fill": a.fill,
            "h_median": float(np.median(d["h"])),
            "n_people": int((d["cut"] == "none").sum()),
            "n_crops": int(len(d["cut"])),
            "seconds": float(d["seconds"]),
            "command": "OMP_NUM_THREADS=1 .venv/bin/python experiments/measure_border.py "
            + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        atomic_write_text(a.md, markdown(res, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
