"""Benchmarks of dp-predict (CPU). Every number is a ratio against a baseline measured in the same run.

    python experiments/bench_predict.py speed            # depth head time per frame, 10 people, vs YOLO
    python experiments/bench_predict.py zoom             # zoom gain on small people (keypoint conf,
                                                         # depth error)
    python experiments/bench_predict.py real --out DIR   # dp-predict on shared/data/real with the gt.json K
    python experiments/bench_predict.py all              # all three

``--ckpt PATH`` picks the depth model (default: the shipped one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import depth_pose  # noqa: F401
from depth_pose import geometry
from depth_pose.detect import PoseDetector
from depth_pose.env import real_data_dir
from depth_pose.predict.positions import positions
from depth_pose.predict.zoom import Zoom, box_iou

REPO = Path(__file__).resolve().parents[1]
REAL = real_data_dir()


def load_depth(ckpt: str | None):
    from depth_pose.predictor import DepthPredictor

    return DepthPredictor.load(ckpt)


def bus() -> np.ndarray:
    import ultralytics

    return cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"))


def timeit(fn, n: int, warmup: int = 3) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


# ---------------------------------------------------------------------------------------------- speed


def bench_speed(ckpt: str | None, people: int = 10) -> dict:
    det = PoseDetector()
    img = bus()
    dets = det(img)[0]
    rng = np.random.default_rng(0)
    reps = -(-people // max(len(dets), 1))
    kp = np.concatenate([dets.keypoints] * reps)[:people].copy()
    kp[..., :2] += rng.normal(0, 2, kp[..., :2].shape)
    boxes = np.concatenate([dets.boxes] * reps)[:people]
    K = geometry.intrinsics_from_hfov(60.0, img.shape[1], img.shape[0]).numpy()
    model = load_depth(ckpt)

    t_yolo = timeit(lambda: det(img), 15)
    t_depth = timeit(lambda: model.predict(kp, K), 200, warmup=10)
    t_pos = timeit(lambda: positions(kp, boxes, np.full(people, 5.0), K, 0.3), 200, warmup=10)
    t_yolo2 = timeit(lambda: det(img), 15)  # again, to see how noisy the machine is
    yolo = statistics.median([t_yolo, t_yolo2])
    rows = [
        ("YOLO pose (baseline), 1 frame", yolo, 1.0),
        (f"depth head, {people} people batched", t_depth, t_depth / yolo),
        (f"3D/ground points, {people} people", t_pos, t_pos / yolo),
        ("depth + 3D total", t_depth + t_pos, (t_depth + t_pos) / yolo),
    ]
    print(
        f"\n## speed (image {img.shape[1]}x{img.shape[0]}, imgsz 640, "
        f"torch threads {torch.get_num_threads()})"
    )
    print("| step | ms/frame | share of YOLO |\n|---|---|---|")
    for name, t, r in rows:
        print(f"| {name} | {1000 * t:.3f} | {100 * r:.2f}% |")
    print(f"(YOLO runs: {1000 * t_yolo:.1f} ms and {1000 * t_yolo2:.1f} ms)")
    return {"yolo_s": yolo, "depth_s": t_depth, "positions_s": t_pos, "depth_share_of_yolo": t_depth / yolo}


# ----------------------------------------------------------------------------------------------- zoom


def _kp_box(kp) -> list[float] | None:
    """Box around projected keypoints, padded 10% of its height (head top and feet lie beyond the joints)."""
    if not kp:
        return None
    xy = np.asarray(kp, np.float64)[:, :2]
    (x1, y1), (x2, y2) = np.nanmin(xy, 0), np.nanmax(xy, 0)
    pad = 0.1 * max(y2 - y1, x2 - x1)
    return [x1 - pad, y1 - pad, x2 + pad, y2 + pad]


def zoom_cases() -> list[dict]:
    """Images with known K and per-person depth: the rendered example (if shipped) and the real frames."""
    cases = []
    ex = REPO / "depth_pose" / "assets" / "example.json"
    if ex.is_file() and ex.with_suffix(".jpg").is_file():
        meta = json.loads(ex.read_text())
        people = [
            {"box": p.get("bbox_xyxy_px") or p.get("box_xyxy") or _kp_box(p.get("keypoints_px")),
             "z": p.get("gt_z_m", p.get("z_m"))}
            for p in meta.get("people", [])
        ]  # fmt: skip
        cases.append(
            {"name": "example.jpg", "image": ex.with_suffix(".jpg"), "K": meta["K"], "people": people}
        )
    k = REAL / "kitti_000000" / "gt.json"
    if k.is_file():
        meta = json.loads(k.read_text())
        cases.append({
            "name": "kitti_000000", "image": k.parent / meta["image"], "K": meta["K"],
            "people": [{"box": p["bbox_xyxy_px"], "z": p["gt_z_m"]} for p in meta["people"]],
        })  # fmt: skip
    p = REAL / "phone_3to6m" / "gt.json"
    if p.is_file():
        meta = json.loads(p.read_text())
        for s in meta["samples"]:
            cases.append({
                "name": s["image"], "image": p.parent / s["image"], "K": s["K"],
                "people": [{"box": None, "z": s["person_depth_m_approx"]}],  # the largest detection
            })  # fmt: skip
    return cases


def _match(dets, box) -> int | None:
    if len(dets) == 0:
        return None
    if box is None:
        return int(np.argmax(dets.boxes[:, 3] - dets.boxes[:, 1]))
    iou = box_iou(np.asarray([box], np.float32), dets.boxes)[0]
    j = int(np.argmax(iou))
    return j if iou[j] >= 0.3 else None


def bench_zoom(ckpt: str | None, heights=(30, 45, 60, 80), canvas=(640, 480)) -> dict:
    """Shrink each image so the person is h px tall, paste it in a grey 640x480 frame (YOLO sees it at
    scale 1) (K follows exactly via geometry.transform_intrinsics), then predict with and without zoom and
    compare against the known depth."""
    det, zdet = PoseDetector(), PoseDetector()
    zoom = Zoom(min_box_px=100)
    model = load_depth(ckpt)
    rows = []
    for case in zoom_cases():
        img = cv2.imread(str(case["image"]))
        K = torch.as_tensor(case["K"], dtype=torch.float64)
        full = det(img)[0]
        for person in case["people"]:
            j = _match(full, person["box"])
            if j is None:
                continue
            box = full.boxes[j]
            for h in heights:
                s = h / float(box[3] - box[1])
                small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                sh, sw = small.shape[:2]
                cw, ch = max(canvas[0], sw), max(canvas[1], sh)
                ox, oy = (cw - sw) // 2, (ch - sh) // 2
                frame = np.full((ch, cw, 3), 114, np.uint8)
                frame[oy : oy + sh, ox : ox + sw] = small
                Ks = geometry.transform_intrinsics(K, s, (float(ox), float(oy))).numpy()
                box_s = geometry.transform_pixels(
                    torch.as_tensor(box.reshape(2, 2), dtype=torch.float64), s, (ox, oy)
                )
                t0 = time.perf_counter()
                d0 = det(frame)[0]
                t_det = time.perf_counter() - t0
                jj = _match(d0, box_s.numpy().ravel())
                if jj is None:
                    rows.append({"case": case["name"], "h": h, "found": False})
                    continue
                t0 = time.perf_counter()
                d1, zoomed = zoom(frame, d0, zdet)
                t_zoom = time.perf_counter() - t0
                kp0, kp1 = d0.keypoints[jj : jj + 1], d1.keypoints[jj : jj + 1]
                z0 = float(model.predict(kp0, Ks).z_m[0])
                z1 = float(model.predict(kp1, Ks).z_m[0])
                rows.append({
                    "case": case["name"], "h": h, "found": True, "zoomed": bool(zoomed[jj]),
                    "gt": person["z"],
                    "conf0": float(kp0[0, :, 2].mean()), "conf1": float(kp1[0, :, 2].mean()),
                    "err0": abs(z0 - person["z"]), "err1": abs(z1 - person["z"]),
                    "rel0": abs(z0 - person["z"]) / person["z"], "rel1": abs(z1 - person["z"]) / person["z"],
                    "t_det": t_det, "t_zoom": t_zoom,
                    "n_small": int((d0.boxes[:, 3] - d0.boxes[:, 1] < 100).sum()),
                })  # fmt: skip
    print(f"\n## zoom on small people ({len(rows)} person x size cases, min_box_px={zoom.min_box_px})")
    print(
        "| person height | n | found | zoom used | mean kp conf no zoom -> zoom | "
        "abs err (m) no zoom -> zoom | "
        "rel err no zoom -> zoom |\n|---|---|---|---|---|---|---|"
    )
    summary = {}
    for h in heights:
        r = [x for x in rows if x["h"] == h]
        f = [x for x in r if x["found"]]
        if not f:
            print(f"| {h} px | {len(r)} | 0 | - | - | - | - |")
            continue
        m = {k: float(np.mean([x[k] for x in f])) for k in ("conf0", "conf1", "err0", "err1", "rel0", "rel1")}
        used = sum(x["zoomed"] for x in f)
        print(
            f"| {h} px | {len(r)} | {len(f)} | {used} | {m['conf0']:.3f} -> {m['conf1']:.3f} | "
            f"{m['err0']:.2f} -> {m['err1']:.2f} | {100 * m['rel0']:.1f}% -> {100 * m['rel1']:.1f}% |"
        )
        summary[h] = {"n": len(r), "found": len(f), "zoom_used": used, **m}
    f = [x for x in rows if x["found"]]
    if f:
        ratio = np.mean([x["t_zoom"] for x in f]) / np.mean([x["t_det"] for x in f])
        print(
            "zoom time (all small people of a frame, one batch; "
            f"mean {np.mean([x['n_small'] for x in f]):.1f} "
            f"small people/frame): {100 * ratio:.0f}% of the frame's YOLO time"
        )
    return {"rows": rows, "by_height": summary}


# ----------------------------------------------------------------------------------------------- real


def bench_real(ckpt: str | None, out: Path, extra: list[str] | None = None) -> dict:
    """dp-predict's own function on the real folders, intrinsics from their gt.json (calib=...); ``extra``:
    more dp-predict overrides (e.g. ``scene.pitch_deg=0`` for these level cameras)."""
    from hydra import compose, initialize_config_dir

    from depth_pose.predict.run import predict

    results = {}
    for name in ("phone_3to6m", "kitti_000000"):
        folder = REAL / name
        if not folder.is_dir():
            print(f"skip {name}: {folder} missing")
            continue
        overrides = [
            f"source={folder}",
            f"out={out / name}",
            f"intrinsics.calib={folder / 'gt.json'}",
            "progress=false",
            *(extra or []),
        ] + ([f"ckpt={ckpt}"] if ckpt else [])
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("predict", overrides=overrides)
        print(f"\n$ dp-predict {' '.join(overrides)}")
        summary = predict(cfg)
        recs = [json.loads(x) for x in (out / name / "predictions.jsonl").read_text().splitlines()]
        gt = json.loads((folder / "gt.json").read_text())
        rows = []
        if "samples" in gt:
            for s in gt["samples"]:
                mine = [r for r in recs if r["source"] == s["image"]]
                if not mine:
                    rows.append((s["image"], s["person_depth_m_approx"], None, None, None, s.get("note", "")))
                    continue
                r = max(mine, key=lambda r: r["box_xyxy"][3] - r["box_xyxy"][1])  # the man: the tallest box
                rows.append(
                    (
                        s["image"],
                        s["person_depth_m_approx"],
                        r["z_m"],
                        r["sigma_m"],
                        r["zoomed"],
                        s.get("note", "") + (f" ({len(mine)} people found)" if len(mine) > 1 else ""),
                    )
                )
        else:
            for p in gt["people"]:
                mine = [r for r in recs if r["source"] == gt["image"]]
                iou = box_iou(
                    np.asarray([p["bbox_xyxy_px"]], np.float32),
                    np.asarray([r["box_xyxy"] for r in mine], np.float32).reshape(-1, 4),
                )[0]
                if len(mine) == 0 or iou.max() < 0.3:
                    rows.append((gt["image"], p["gt_z_m"], None, None, None, "not detected"))
                    continue
                r = mine[int(np.argmax(iou))]
                g = np.asarray(p["gt_xyz_bottom_center_m"])
                note = (
                    f"ground point {np.round(r['ground_xyz_m'], 2).tolist()} "
                    f"vs gt bottom centre {g.tolist()} "
                    f"(dist err {abs(r['ground_dist_m'] - np.linalg.norm(g)):.2f} m)"
                )
                rows.append((gt["image"], p["gt_z_m"], r["z_m"], r["sigma_m"], r["zoomed"], note))
        print(
            "| image | gt z (m) | predicted z ± sigma (m) | error (m) | rel | zoomed | note |\n"
            "|---|---|---|---|---|---|---|"
        )
        errs = []
        for img, g, z, s, zm, note in rows:
            if z is None:
                print(f"| {img} | {g:.2f} | not found | - | - | - | {note} |")
                continue
            errs.append((z - g, (z - g) / g))
            print(
                f"| {img} | {g:.2f} | {z:.2f} ± {s:.2f} | {z - g:+.2f} | {100 * (z - g) / g:+.1f}% | "
                f"{zm} | {note} |"
            )
        if errs:
            e = np.asarray(errs)
            print(
                f"mean abs error {np.abs(e[:, 0]).mean():.2f} m, "
                f"mean abs rel {100 * np.abs(e[:, 1]).mean():.1f}%, "
                f"bias {100 * e[:, 1].mean():+.1f}% over {len(e)} people; fps {summary['fps']:.2f}, "
                f"time share detection {100 * summary['time_share']['detection']:.1f}% / depth "
                f"{100 * summary['time_share']['depth']:.2f}%"
            )
        results[name] = {"rows": rows, "summary_counts": summary["counts"]}
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "zoom", "real", "all"], nargs="?", default="all")
    ap.add_argument("--ckpt", default=None, help="depth model (default: the shipped one)")
    ap.add_argument(
        "--out", default=str(REPO / "outputs" / "bench_predict"), help="dp-predict outputs (real)"
    )
    ap.add_argument("overrides", nargs="*", help="dp-predict overrides for `real` (e.g. scene.pitch_deg=0)")
    a = ap.parse_intermixed_args()
    if a.what in ("speed", "all"):
        bench_speed(a.ckpt)
    if a.what in ("zoom", "all"):
        bench_zoom(a.ckpt)
    if a.what in ("real", "all"):
        bench_real(a.ckpt, Path(a.out), a.overrides)


if __name__ == "__main__":
    sys.exit(main())
