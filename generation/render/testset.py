"""Held-out rendered + YOLO test set (issue 19): people rendered with ``render=draft``, each on its own
canvas, labelled by YOLO pose WITHOUT the OKS filter, written in the dp-eval keypoints JSONL contract.

    python -m generation.render.testset WORK_DIR [--n 3000] [--dest depth_pose/assets/rendered_yolo]

Groups: ``full`` (the hybrid pose sampler, cameras of ``conf/camera/mounted.yaml``: level, ceiling, low,
phone with roll; a person the sampled frame cuts is relabelled ``truncated`` with side ``frame``),
``truncated`` (the image cut at a random level through the person: bottom, top, left or right,
:func:`random_cut`), ``floor`` (jittered variants of every floor preset present in
``generation/data/presets/`` at build time, :func:`floor_presets`).

What YOLO sees: the sampled camera's image (its K and size) shrunk to the detector's input
(:func:`detector_scale`, 640 px), cropped by the cut; only a window around the person is rendered
(:func:`person_window`) and pasted at its place on a canvas of that size (letterbox grey elsewhere,
:func:`paste`), so the person has its real detector-scale pixel size and the frame's edges are the canvas
edges. Cameras are redrawn until the person is at least :data:`MIN_PERSON_PX` tall for the detector. The
matched detection is the one with the highest OKS against the exact keypoints, whatever its OKS (gross errors
kept); a person YOLO misses is a line with ``missed: true`` and no keypoints (all null), not dropped. Lines
are in the camera's own pixels: ``K``, ``image_wh`` (cropped when cut), ``keypoints_xyc``, ``gt_xy`` (exact).

Held out: bodies come from ``BodyModel(seed=BODY_SEED)`` with a bank seed no config in ``conf/`` uses
(training banks are drawn with the generation seed, 0 by default; the suites use 917 and 1601), checked by
``tests/test_rendered_suite.py``; poses and cameras from their own generators seeded per part.

Resumable: part ``k`` (``part_size`` people) depends only on ``(BODY_SEED, k)``; it is written atomically to
``WORK_DIR/parts/part_KKKKK.jsonl`` and a rerun renders only the missing parts. At the end (or with
``--finalize``) the finished parts are joined into ``people.jsonl.gz`` (gzip, mtime 0: byte-identical for the
same parts) + ``manifest.json`` (sha256, counts per group and pose, command, generator commit) in ``--dest``.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

BODY_SEED = 1919  # held-out body bank seed (issue 19); no training or suite config uses it
N_BODIES = 256
GROUPS = ("full", "truncated", "floor")
GROUP_SHARES = (0.4, 0.35, 0.25)
FLOOR_PATTERNS = (
    "lying*",
    "sit_floor*",
    "sit_cross*",
    "kneel*",
    "reclining*",
    "one_knee*",
    "pick_up*",
    "climb_step*",
)
CUT_SIDES = ("bottom", "top", "left", "right")
CUT_SIDE_SHARES = (0.6, 0.1, 0.15, 0.15)
YOLO_IMGSZ = 640  # the detector's input size: an image is seen shrunk to it (never enlarged)
MIN_PERSON_PX = 40  # cameras are redrawn until YOLO would see the person at least this tall (YOLO misses
# most people under ~36 px: docs/bench_render.md)
MIN_CROP_PX = 48
DATA_FILE = "people.jsonl.gz"
MANIFEST = "manifest.json"


# ---------------------------------------------------------------------------------------------- pure pieces
def crop_view(
    kp_xy: np.ndarray, K: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (..., 2) and intrinsics (3, 3) of the image cropped to ``box`` = (x0, y0, x1, y1) px: a crop
    only moves the origin, so both shift by (x0, y0) (the principal point too)."""
    from generation.render.downscale import scaled_intrinsics

    x0, y0 = float(box[0]), float(box[1])
    return np.asarray(kp_xy, np.float64) - np.array([x0, y0]), scaled_intrinsics(K, 1.0, (-x0, -y0))


def cut_box(side: str, level_px: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The crop (x0, y0, x1, y1) of a ``width`` x ``height`` image whose ``side`` edge sits at ``level_px``
    (a y for bottom/top, an x for left/right), kept at least :data:`MIN_CROP_PX` wide/high."""
    lv = int(round(level_px))
    if side == "bottom":
        return 0, 0, width, int(np.clip(lv, MIN_CROP_PX, height))
    if side == "top":
        return 0, int(np.clip(lv, 0, height - MIN_CROP_PX)), width, height
    if side == "right":
        return 0, 0, int(np.clip(lv, MIN_CROP_PX, width)), height
    if side == "left":
        return int(np.clip(lv, 0, width - MIN_CROP_PX)), 0, width, height
    raise ValueError(f"cut side must be one of {CUT_SIDES}, got {side!r}")


def random_cut(
    gt_xy: np.ndarray, width: int, height: int, rng: np.random.Generator
) -> tuple[str, float, tuple[int, int, int, int]]:
    """A random truncation of a person (exact keypoints ``gt_xy`` (17, 2)): the side, the level as a fraction
    of the keypoints' extent from the kept end (bottom: 0.35-0.95 of the way from the head down; top:
    0.1-0.5; left/right: 0.3-0.7 across), and the crop box."""
    side = str(rng.choice(CUT_SIDES, p=CUT_SIDE_SHARES))
    lo, hi = np.nanmin(gt_xy, 0), np.nanmax(gt_xy, 0)
    if side in ("bottom", "top"):
        f = rng.uniform(0.35, 0.95) if side == "bottom" else rng.uniform(0.1, 0.5)
        level = lo[1] + f * (hi[1] - lo[1])
    else:
        f = rng.uniform(0.3, 0.7)
        level = lo[0] + f * (hi[0] - lo[0]) if side == "right" else hi[0] - f * (hi[0] - lo[0])
    return side, float(f), cut_box(side, level, width, height)


def assign_groups(n: int, rng: np.random.Generator) -> list[str]:
    """The group of each of ``n`` people of a part (drawn with :data:`GROUP_SHARES`)."""
    return [str(g) for g in rng.choice(GROUPS, size=n, p=GROUP_SHARES)]


def floor_presets(names: list[str]) -> list[str]:
    """The floor poses among preset ``names`` (:data:`FLOOR_PATTERNS`), sorted."""
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in FLOOR_PATTERNS))


def part_seed(k: int, body_seed: int = BODY_SEED) -> list[int]:
    """numpy seed of part ``k`` (torch gets ``body_seed * 1_000_003 + k``)."""
    return [int(body_seed), int(k)]


# ---------------------------------------------------------------------------------------------- rendering
def detector_scale(width: float, height: float, imgsz: int = YOLO_IMGSZ) -> float:
    """How much YOLO at ``imgsz`` shrinks a ``width`` x ``height`` image (<= 1: it never enlarges here)."""
    return min(1.0, imgsz / max(float(width), float(height)))


def person_window(
    box: np.ndarray, bounds: tuple[float, float, float, float], margin: float = 1.6
) -> tuple[int, int, int, int] | None:
    """The render window (x0, y0, x1, y1) px: a square ``margin`` x the larger side of the mesh ``box``
    (rounded up to 32 px, 96-640 px) centred on it, intersected with the image ``bounds``; None when empty."""
    span = float(max(box[2] - box[0], box[3] - box[1]))
    size = int(np.clip(32 * np.ceil(margin * span / 32), 96, 640))
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    x0, y0 = int(np.floor(cx - size / 2)), int(np.floor(cy - size / 2))
    x0, y0 = max(x0, int(np.ceil(bounds[0]))), max(y0, int(np.ceil(bounds[1])))
    x1 = min(int(np.floor(cx - size / 2)) + size, int(np.floor(bounds[2])))
    y1 = min(int(np.floor(cy - size / 2)) + size, int(np.floor(bounds[3])))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return None
    return x0, y0, x1, y1


def paste(render: np.ndarray, window: tuple[int, int, int, int], bounds: tuple[float, ...]) -> np.ndarray:
    """The image YOLO sees: the detector-scale image cropped to ``bounds`` (its frame, cut or not), YOLO's
    letterbox grey (114) where nothing was rendered, the ``render`` of ``window`` at its place, so the frame's
    edges are the canvas edges and the person has its detector-scale pixel size."""
    b = [int(round(v)) for v in bounds]
    canvas = np.full((b[3] - b[1], b[2] - b[0], 3), 114, np.uint8)
    x0, y0 = window[0] - b[0], window[1] - b[1]
    h, w = render.shape[:2]
    canvas[y0 : y0 + h, x0 : x0 + w] = render[: canvas.shape[0] - y0, : canvas.shape[1] - x0]
    return canvas


def posed_geometry(body, poses, body_index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mesh vertices (n, V, 3), exact keypoints (n, 17, 3) in world metres and a pose name per row."""
    from depth_pose.eval.io import pose_labels

    verts, _ = body.mesh(body_index, poses)
    kp_world = body.pose(body_index, poses).keypoints.double().cpu().numpy()
    tags = {k: v.cpu().numpy() for k, v in poses.tags.items()}
    n = len(body_index)
    labels = pose_labels(
        np.array([poses.strategy] * n),
        np.array([p or "" for p in poses.preset]),
        tags.get("walk", np.zeros(n, bool)),
        tags.get("both_walk", np.zeros(n, bool)),
    )
    return verts.cpu().numpy(), kp_world, labels


def project(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 2) and camera coordinates (N, 3) of world points (:mod:`depth_pose.geometry`, float64)."""
    import torch

    from depth_pose import geometry

    f64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    p = geometry.world_to_camera(f64(points), f64(R), f64(t))
    return geometry.project(p, f64(K)).numpy(), p.numpy()


def box_of(uv: np.ndarray) -> np.ndarray:
    return np.concatenate([uv.min(0), uv.max(0)])


class OwnCanvasRenderer:
    """Blender workers (``render=draft`` settings) + YOLO, for people rendered one per canvas (the image YOLO
    sees is the render itself, at its native size). Needs the ``if __name__ == "__main__":`` guard."""

    def __init__(self, body, workers: int = 2, preset: str = "draft", yolo_conf: float = 0.1) -> None:
        from omegaconf import OmegaConf

        from depth_pose.detect import PoseDetector
        from depth_pose.env import config_dir
        from generation.render import appearance
        from generation.render.label import RENDER_WEIGHT_KEYS
        from generation.render.worker import RenderPool

        r = OmegaConf.load(Path(config_dir()) / "render" / f"{preset}.yaml")
        self.body, self.res, self.preset = body, int(r.resolution), preset
        faces, face_part, hair = appearance.segment_faces(body.model)
        settings = {k: r.get(k) for k in ("engine", "samples", "denoise", "max_bounces", "threads", "device")}
        self.pool = RenderPool(faces, face_part, hair, settings, workers=workers)
        self.yolo_conf = float(yolo_conf)
        self.detector = PoseDetector(
            r.yolo_weights,
            imgsz=self.res,
            conf=self.yolo_conf,
            weights_sha256=r.get("yolo_weights_sha256"),
            trust_weights=r.get("yolo_trust_weights", False),
            keys=RENDER_WEIGHT_KEYS,
        )

    def close(self) -> None:
        self.pool.close()

    def submit(self, verts, views: list[tuple], rng: np.random.Generator) -> list[tuple[dict, object]]:
        """Submit one render job per person (:func:`render_jobs`) without waiting; (job, future) pairs for
        ``self.pool.result``."""
        return [(j, self.pool.submit(j)) for j in render_jobs(verts, views, rng)]

    def render(
        self, verts: np.ndarray, views: list[tuple], rng: np.random.Generator
    ) -> list[np.ndarray | None]:
        """One BGR image per person: ``verts[i]`` seen through ``views[i] = (K, R, t, width, height)``
        (None when the render failed)."""
        return [self.pool.result(j, f)[0] for j, f in self.submit(verts, views, rng)]

    def label(self, images: list[np.ndarray], gt: list[np.ndarray], boxes: list[np.ndarray]):
        """YOLO on each image at its native size; the detection with the best OKS against ``gt``, NO OKS
        filter (``generation.render.label.Label``: status ``accepted`` or ``no_detection``)."""
        from generation.render.label import match

        labs = []
        for im, g, b in zip(images, gt, boxes):
            imgsz = int(32 * np.ceil(max(im.shape[:2]) / 32))
            (dets,) = self.detector([im], imgsz=imgsz)
            labs.append(match(dets, g, b, (-(10**6), -(10**6), 10**6, 10**6), 0.0))
        return labs


def render_jobs(verts, views: list[tuple], rng: np.random.Generator) -> list[dict]:
    """One render job per person: ``verts[i]`` seen through ``views[i] = (K, R, t, width, height)``, a scene
    and a person look drawn from ``rng`` (in this order, person by person: the draws every builder shares)."""
    from generation.render import appearance
    from generation.render.framing import blender_camera

    jobs = []
    for v, (K, R, t, w, h) in zip(verts, views, strict=True):
        view = {
            "camera": blender_camera(K, R, t, int(w), int(h)),
            "scene": appearance.scene_look(rng),
            "seed": int(rng.integers(2**31)),
        }
        jobs.append({"vertices": v.astype(np.float32), "look": appearance.person_look(rng), "views": [view]})
    return jobs


# ---------------------------------------------------------------------------------------------- the builder
def build_samplers():
    """The hybrid pose sampler and the ``mounted`` camera mixture, from the generation defaults."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from depth_pose.env import config_dir
    from generation.config import with_defaults

    ov = ["camera=mounted", "pose_sampling=hybrid", "out_dir=/tmp/unused"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = with_defaults(compose("generate", overrides=ov))
    return instantiate(cfg.pose_sampling), instantiate(cfg.camera)


def draw_cameras(body, poses, bi, camera_sampler, g, kp_world: np.ndarray, rounds: int = 8):
    """Cameras for the posed rows (numpy arrays), redrawn (up to ``rounds`` times) for rows whose person
    YOLO would see smaller than :data:`MIN_PERSON_PX` (keypoint height at the detector's scale), and a mask
    of the rows still too small."""
    from generation.types import PosedBodies

    posed = body.pose(bi, poses)
    cams = camera_sampler.sample(posed, g)
    rows = {
        "K": cams.K.double().numpy(),
        "R": cams.R.double().numpy(),
        "t": cams.t.double().numpy(),
        "wh": np.stack([cams.img_w.numpy(), cams.img_h.numpy()], 1).astype(np.float64),
        "pitch": cams.tilt_deg.double().numpy(),
        "roll": cams.roll_deg.double().numpy(),
    }

    def small() -> np.ndarray:
        out = np.zeros(len(bi), bool)
        for i in range(len(bi)):
            uv, p = project(kp_world[i], rows["K"][i], rows["R"][i], rows["t"][i])
            d = detector_scale(*rows["wh"][i])
            out[i] = (p[:, 2] <= 0).any() or np.ptp(uv[:, 1]) * d < MIN_PERSON_PX
        return out

    bad = small()
    for _ in range(rounds):
        idx = np.nonzero(bad)[0]
        if not len(idx):
            break
        sub = PosedBodies(keypoints=posed.keypoints[idx], body_index=posed.body_index[idx])
        c2 = camera_sampler.sample(sub, g)
        rows["K"][idx], rows["R"][idx], rows["t"][idx] = c2.K.double(), c2.R.double(), c2.t.double()
        rows["wh"][idx] = np.stack([c2.img_w.numpy(), c2.img_h.numpy()], 1)
        rows["pitch"][idx], rows["roll"][idx] = c2.tilt_deg.double(), c2.roll_deg.double()
        bad = small()
    return rows, bad


def make_part(
    k: int,
    part_size: int,
    renderer: OwnCanvasRenderer,
    pose_sampler,
    camera_sampler,
    body_seed: int = BODY_SEED,
) -> list[dict]:
    """The JSONL lines of part ``k`` (deterministic in ``k`` and ``body_seed``); see the module docstring."""
    import torch

    from depth_pose.keypoints import L_HIP, R_HIP
    from generation.pose import named_poses
    from generation.render.downscale import scaled_intrinsics

    rng = np.random.default_rng(part_seed(k, body_seed))
    g = torch.Generator().manual_seed(int(body_seed) * 1_000_003 + int(k))
    groups = assign_groups(part_size, rng)
    floor_names = floor_presets(list(pose_sampler.presets))
    lines: list[dict] = []
    n_body = len(renderer.body.shapes)
    for kind in ("standing", "floor"):
        idx = [i for i, gr in enumerate(groups) if (gr == "floor") == (kind == "floor")]
        if not idx:
            continue
        if kind == "floor":
            poses = named_poses(
                [str(x) for x in rng.choice(floor_names, size=len(idx))], 1, g, jitter_deg=8.0
            )
        else:
            poses = pose_sampler.sample(len(idx), g)
        bi = torch.randint(0, n_body, (len(idx),), generator=g)
        verts, kp_world, labels = posed_geometry(renderer.body, poses, bi)
        cams, too_small = draw_cameras(renderer.body, poses, bi, camera_sampler, g, kp_world)
        todo = []  # (person row, group, window, crop, d, truncation, uv_eff, mesh box, z)
        for j, i in enumerate(idx):
            if too_small[j]:
                continue
            K, R, t, (W, H) = cams["K"][j], cams["R"][j], cams["t"][j], cams["wh"][j]
            d = detector_scale(W, H)
            Ky = scaled_intrinsics(K, d, (0, 0))  # the image shrunk to the detector's input
            uv, p = project(kp_world[j], Ky, R, t)
            mbox = box_of(project(verts[j], Ky, R, t)[0])
            bounds = (0.0, 0.0, float(round(W * d)), float(round(H * d)))
            group, trunc = groups[i], None
            if group == "truncated":
                side, frac, cb = random_cut(uv, int(W * d), int(H * d), rng)
                bounds, trunc = tuple(float(v) for v in cb), {"side": side, "level": round(frac, 3)}
            inside = (uv >= [bounds[0], bounds[1]]).all(1) & (uv < [bounds[2], bounds[3]]).all(1)
            if group == "full" and not inside.all():
                group, trunc = "truncated", {"side": "frame", "level": None}
            win = person_window(mbox, bounds)
            if win is None:
                continue
            z = float(0.5 * (p[L_HIP, 2] + p[R_HIP, 2]))
            todo.append((i, j, group, win, bounds, d, trunc, uv, mbox, z, Ky, R, t))
        images = renderer.render(
            [verts[x[1]] for x in todo],
            [
                (crop_view(x[7], x[10], x[3])[1], x[11], x[12], x[3][2] - x[3][0], x[3][3] - x[3][1])
                for x in todo
            ],
            rng,
        )
        ok = [(x, im) for x, im in zip(todo, images) if im is not None]
        if len(ok) < len(todo):
            print(f"part {k}: {len(todo) - len(ok)} renders failed (left out)", flush=True)
        labs = renderer.label(
            [paste(im, x[3], x[4]) for x, im in ok],
            [x[7] - [x[4][0], x[4][1]] for x, _ in ok],
            [x[8] - np.array([x[4][0], x[4][1]] * 2) for x, _ in ok],
        )
        for ((i, j, group, _win, bounds, d, trunc, uv, _, z, Ky, _, _), _), lab in zip(ok, labs):
            # report in the camera's own pixels, the image cropped to ``bounds`` (the cut) when truncated
            det = np.asarray(lab.keypoints, np.float64).copy()
            det[:, :2] = det[:, :2] / d
            gt = (uv - [bounds[0], bounds[1]]) / d
            K_rep = crop_view(uv, Ky, tuple(int(round(v)) for v in bounds))[1]
            K_rep = np.diag([1 / d, 1 / d, 1.0]) @ K_rep
            line = {
                "id": f"r{k:05d}_{i:03d}",
                "group": group,
                "pose": str(labels[j]),
                "keypoints_xyc": [
                    [round(float(a), 2), round(float(b), 2), round(float(c), 3)] for a, b, c in det
                ],
                "K": np.round(K_rep, 3).tolist(),
                "gt_z_m": round(z, 4),
                "image_wh": [
                    int(round((bounds[2] - bounds[0]) / d)),
                    int(round((bounds[3] - bounds[1]) / d)),
                ],
                "pitch_deg": round(float(cams["pitch"][j]), 2),
                "roll_deg": round(float(cams["roll"][j]), 2),
                "missed": lab.status == "no_detection",
                "det_conf": round(float(lab.det_conf), 3),
                "oks": round(float(lab.oks), 3),
                "person_px": round(float(np.ptp(gt[:, 1])), 1),
                "detector_scale": round(d, 4),
                "gt_xy": np.round(gt, 1).tolist(),
            }
            if trunc is not None:
                line["truncation"] = trunc
            lines.append(line)
    return sorted(lines, key=lambda o: o["id"])


def git_commit() -> str:
    """The checkout's commit (+ ``-dirty`` when files differ), or ``unknown``."""
    try:
        root = Path(__file__).resolve().parents[2]
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def finalize(work: Path, dest: Path, n_max: int | None, command: str, extra: dict) -> dict:
    """Join the finished parts (in order, up to ``n_max`` people) into ``dest/people.jsonl.gz`` and write its
    manifest; returns the manifest."""
    from depth_pose.eval.io import atomic_write_json
    from depth_pose.fileio import atomic_write

    parts = sorted((work / "parts").glob("part_*.jsonl"))
    rows: list[str] = []
    for p in parts:
        rows += [ln for ln in p.read_text().splitlines() if ln.strip()]
    if n_max is not None:
        rows = rows[:n_max]
    data = ("\n".join(rows) + "\n").encode()
    dest.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as z:
            z.write(data)

    path = atomic_write(dest / DATA_FILE, write)
    objs = [json.loads(r) for r in rows]
    counts: dict = {}
    for gr in GROUPS:
        sel = [o for o in objs if o["group"] == gr]
        counts[gr] = {"people": len(sel), "missed": sum(o["missed"] for o in sel)}
    per_pose = Counter(f"{o['group']}/{o['pose']}" for o in objs)
    manifest = {
        "file": DATA_FILE,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
        "people": len(objs),
        "missed": sum(o["missed"] for o in objs),
        "groups": counts,
        "per_pose": dict(sorted(per_pose.items())),
        "parts": len(parts),
        "body_seed": extra.get("body_seed", BODY_SEED),
        "n_bodies": N_BODIES,
        "command": command,
        "generator_commit": git_commit(),
        **extra,
    }
    atomic_write_json(dest / MANIFEST, manifest)
    return manifest


def check_work_seed(work: Path, body_seed: int) -> bool:
    """Record the body seed of a work folder on first use; False (and one error line) when a rerun asks for
    another seed (its parts would mix two body banks)."""
    from depth_pose.eval.io import atomic_write_json

    path = work / "body_seed.json"
    if path.exists():
        try:
            recorded = int(json.loads(path.read_text())["body_seed"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"generation.render.testset: error: {path}: unreadable ({e})", file=sys.stderr)
            return False
        if recorded != int(body_seed):
            print(
                f"generation.render.testset: error: {work} holds parts of body seed {recorded}, not "
                f"{body_seed}: use another work folder",
                file=sys.stderr,
            )
            return False
        return True
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"body_seed": int(body_seed)})
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", type=Path, help="work folder (parts/ kept here: a rerun continues)")
    ap.add_argument("--n", type=int, default=3000, help="people wanted")
    ap.add_argument("--part-size", type=int, default=40)
    ap.add_argument(
        "--dest", type=Path, default=Path(__file__).resolve().parents[2] / "depth_pose/assets/rendered_yolo"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--deadline", type=float, default=None, help="stop starting parts after this many seconds"
    )
    ap.add_argument("--finalize", action="store_true", help="only join the finished parts")
    ap.add_argument(
        "--body-seed",
        type=int,
        default=BODY_SEED,
        help=f"body bank seed (default {BODY_SEED}: the held-out test set; another seed, e.g. the training "
        "banks' 0, makes (exact, YOLO) pairs for a detector model, never into the test set's folder)",
    )
    a = ap.parse_args(argv)
    default_dest = Path(__file__).resolve().parents[2] / "depth_pose/assets/rendered_yolo"
    if a.body_seed != BODY_SEED and a.dest.resolve() == default_dest:
        print(
            f"generation.render.testset: error: --body-seed {a.body_seed} is not the held-out seed "
            f"{BODY_SEED}: give --dest (the committed test set holds held-out bodies only)",
            file=sys.stderr,
        )
        return 2
    if not check_work_seed(a.work, a.body_seed):
        return 2
    import depth_pose  # noqa: F401  (env defaults before anny)
    from depth_pose.detect import YOLO11N_POSE_SHA256
    from depth_pose.eval.io import atomic_write_jsonl

    n_parts = -(-a.n // a.part_size)
    (a.work / "parts").mkdir(parents=True, exist_ok=True)
    todo = [k for k in range(n_parts) if not (a.work / "parts" / f"part_{k:05d}.jsonl").exists()]
    t0 = time.perf_counter()
    extra = {
        "render": "draft",
        "render_window": "1.6 x the person's mesh box, 96-640 px, at the detector's scale",
        "yolo": {
            "weights_sha256": YOLO11N_POSE_SHA256,
            "imgsz": "the canvas (the camera's image shrunk to <= 640 px, cut), rounded up to 32",
            "conf": 0.1,
            "oks_filter": None,
        },
        "min_person_px": MIN_PERSON_PX,
        "people_requested": n_parts * a.part_size,
        "part_size": a.part_size,
        "group_shares": dict(zip(GROUPS, GROUP_SHARES)),
        "body_seed": a.body_seed,
    }
    if todo and not a.finalize:
        from generation.body import BodyModel

        body = BodyModel(n_bodies=N_BODIES, seed=a.body_seed)
        pose_sampler, camera_sampler = build_samplers()
        extra["floor_presets"] = floor_presets(list(pose_sampler.presets))
        renderer = OwnCanvasRenderer(body, workers=a.workers)
        try:
            for k in todo:
                if a.deadline is not None and time.perf_counter() - t0 > a.deadline:
                    print(f"deadline: stopping before part {k}", flush=True)
                    break
                tp = time.perf_counter()
                lines = make_part(k, a.part_size, renderer, pose_sampler, camera_sampler, a.body_seed)
                atomic_write_jsonl(a.work / "parts" / f"part_{k:05d}.jsonl", lines)
                dt = time.perf_counter() - tp
                print(f"part {k}: {len(lines)} people in {dt:.1f} s ({len(lines) / dt:.2f}/s)", flush=True)
        finally:
            renderer.close()
    else:
        from generation.pose import HybridPoseSampler

        extra["floor_presets"] = floor_presets(list(HybridPoseSampler().presets))
    args = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--finalize"]
    command = "python -m generation.render.testset " + " ".join(args)
    m = finalize(a.work, a.dest, a.n, command, extra)
    print(json.dumps({k: m[k] for k in ("people", "missed", "groups", "bytes", "sha256")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
