"""A render campaign of (exact keypoints, YOLO keypoints) pairs (issue 20): many labelled samples per render.

    python -m generation.render.campaign WORK --body-seed 0 [--n 20000] [--part-size 24] [--deadline S]

Each sampled person (the hybrid sampler or a floor preset, a camera of ``conf/camera/mounted.yaml``, as in
:mod:`generation.render.testset`) is rendered ONCE (``render=draft``, the window around the person at the
detector's scale) and several labelled samples are derived from that render (``variant``):

* ``orig``: the sampled camera's image (a person the frame cuts is group ``truncated``, side ``frame``);
* ``down1``, ``down2``: zoom-outs of the same camera about its principal point (focal x ``scale``, scale drawn
  log-uniformly in :data:`SCALE_RANGE`, never below :data:`MIN_PERSON_PX` tall): the window downscaled
  (``cv2.INTER_AREA``, :mod:`generation.render.downscale`), exact keypoints and K by
  ``downscale.scaled_intrinsics`` / ``scaled_pixels``; the depth is unchanged. The render window is never
  clipped by the frame (:func:`render_window`), so a zoom-out shows rendered pixels where the orig's frame
  ended (a person the frame cut may be whole);
* ``cut_<side>`` (:data:`N_CUT` per render): the frame cut through the person (``testset.random_cut``) of the
  orig or one of the zoom-outs.

Groups as in testset: ``full`` (a person a cut or the frame truncates is ``truncated``, with ``truncation``
side and level) and ``floor`` (floor presets, :data:`FLOOR_SHARE` of the renders; ``floor`` even when cut,
the ``truncation`` field says so).

What YOLO sees: cut copies and people near the frame's edges each on their own canvas (the frame, or the cut
frame, cropped to :data:`OWN_MARGIN` px of grey around the rendered window: the frame's edges stay the
canvas's edges); every other sample as a tile in a :data:`MOSAIC` px mosaic, tiles :data:`GUTTER` px of
letterbox grey apart, a detection assigned to the tile whose exact keypoints it matches best (OKS). No OKS
filter (gross errors kept); a missed sample is a line with ``missed: true``. Lines are in testset's JSONL
format (the camera's own pixels) plus ``render_id`` (split by it, never by copy), ``variant`` and ``scale``.
Renders are submitted for the whole part at once and labelled as they arrive (YOLO overlaps Cycles).

``--no-trick``: testset's own-canvas builder (one render and one YOLO call per person: testset's parts of
that body seed, ``render_id`` = ``id``), for the rate comparison (``experiments/bench_campaign.py``).

Resumable: part ``k`` (``--part-size`` renders) depends only on ``(body seed, k)`` (streams apart from
testset's through :data:`CAMPAIGN_TAG`); it is written atomically to ``WORK/parts/part_KKKKK.jsonl``; a rerun
counts the finished parts and renders only missing ones until ``--n`` samples exist; ``--deadline`` stops
after the current part (exit 3: fewer than ``--n`` samples so far; 2: bad arguments). At the end the parts
are joined into ``WORK/out/people.jsonl.gz`` + manifest (``testset.finalize``). Line ids:
``cKKKKK_III_S_<variant>`` (part, person, slot among the render's variants); ``render_id`` = ``cKKKKK_III``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from generation.render import testset as ts
from generation.render.downscale import FILL, Tile, pack, resize, scaled_intrinsics, scaled_pixels
from generation.render.label import Label, match, oks

PROG = "generation.render.campaign"
CAMPAIGN_TAG = 20  # issue 20: the campaign's people differ from testset's parts of the same body seed
FLOOR_SHARE = 0.25
N_DOWN = 2
N_CUT = 1  # 2: 4.6 samples per render but 44 % truncated (1: 3.6 and 33 %; testset 35 %)
SCALE_RANGE = (0.25, 0.8)
MIN_PERSON_PX = ts.MIN_PERSON_PX
MOSAIC = 640  # mosaic side = YOLO's input size
GUTTER = 32  # letterbox grey around each mosaic tile (tiles 2 x GUTTER apart)
OWN_MARGIN = 64  # grey kept around the window on an own canvas (bounded by the frame)
FLUSH_AREA = 1.5 * MOSAIC**2  # queued tile area that triggers labelling full mosaics
AREA_FACTOR = 0.5  # OKS object area = this x mesh-box area (as generation.render.label)
DEFAULT_PART_SIZE = 24


# ---------------------------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """One labelled sample derived from a render, in the detector-scale pixels of its (uncut) frame."""

    name: str  # "orig" | "down1" | "down2" | "cut_<side>"
    scale: float  # exact zoom-out applied to the render (1 = none)
    K: np.ndarray  # (3, 3) intrinsics of the variant's frame
    uv: np.ndarray  # (17, 2) exact keypoints
    mbox: np.ndarray  # exact mesh box xyxy
    tile: np.ndarray  # the rendered window at this scale (BGR)
    tile_xy: tuple[int, int]  # where the tile sits in the frame
    frame: tuple[int, int, int, int]  # the frame (cut or not) x0, y0, x1, y1
    truncation: dict | None = None
    slot: int = 0  # its place among the render's variants (ids stay unique when two cuts share a side)

    @property
    def tile_box(self) -> tuple[int, int, int, int]:
        h, w = self.tile.shape[:2]
        return self.tile_xy[0], self.tile_xy[1], self.tile_xy[0] + w, self.tile_xy[1] + h


def zoom_out(v: Variant, s: float, name: str) -> Variant:
    """The same camera with focal x ``s`` about its principal point: the tile downscaled (pixel-exact scale)
    and pasted at an integer pixel near ``s * corner + (1 - s) * principal point``; keypoints and K follow
    ``u' = s u + offset`` (:func:`downscale.scaled_intrinsics`), the frame is unchanged."""
    img, se = resize(v.tile, s)
    x0, y0 = v.tile_xy
    c = v.K[:2, 2]
    px, py = (int(round(se * x0 + (1 - se) * c[0])), int(round(se * y0 + (1 - se) * c[1])))
    off = (px - se * x0, py - se * y0)
    mb = scaled_pixels(v.mbox.reshape(2, 2), se, off).reshape(4)
    K = scaled_intrinsics(v.K, se, off)
    return Variant(name, v.scale * se, K, scaled_pixels(v.uv, se, off), mb, img, (px, py), v.frame)


def cut_variant(v: Variant, rng: np.random.Generator) -> Variant:
    """``v`` with its frame cut through the person (``testset.random_cut``: side, level, crop box)."""
    x0, y0, x1, y1 = v.frame
    side, frac, cb = ts.random_cut(v.uv - [x0, y0], x1 - x0, y1 - y0, rng)
    frame = (cb[0] + x0, cb[1] + y0, cb[2] + x0, cb[3] + y0)
    trunc = {"side": side, "level": round(frac, 3)}
    return Variant(f"cut_{side}", v.scale, v.K, v.uv, v.mbox, v.tile, v.tile_xy, frame, trunc)


def render_window(mbox: np.ndarray) -> tuple[int, int, int, int]:
    """testset's square window around the person's mesh box, NOT clipped by the frame: what lies beyond the
    frame is rendered too, so a zoom-out (which brings it into the frame) shows real pixels."""
    big = 1e9
    return ts.person_window(mbox, (-big, -big, big, big))


def draw_scales(height_px: float, rng: np.random.Generator, n: int | None = None) -> list[float]:
    """``n`` zoom-out factors (largest first) log-uniform in :data:`SCALE_RANGE`, none making the person
    (keypoint height ``height_px`` at the detector's scale) shorter than :data:`MIN_PERSON_PX`; the draws
    happen whatever the person's size (the part's stream stays aligned), an empty list when too small."""
    lo, hi = max(SCALE_RANGE[0], MIN_PERSON_PX / max(height_px, 1e-6)), SCALE_RANGE[1]
    u = rng.uniform(0.0, 1.0, N_DOWN if n is None else n)
    if lo >= hi:
        return []
    return sorted((float(np.exp(np.log(lo) + x * (np.log(hi) - np.log(lo)))) for x in u), reverse=True)


def make_variants(orig: Variant, rng: np.random.Generator) -> list[Variant]:
    """orig (its tile: the unclipped :func:`render_window`), its zoom-outs and :data:`N_CUT` cut copies of
    randomly chosen levels."""
    scales = draw_scales(float(np.ptp(orig.uv[:, 1])), rng)
    levels = [orig] + [zoom_out(orig, s, f"down{i + 1}") for i, s in enumerate(scales)]
    pick = rng.integers(0, len(levels), N_CUT)
    cuts = [cut_variant(levels[int(i)], rng) for i in pick]
    return [replace(v, slot=j) for j, v in enumerate(levels + cuts)]


# ---------------------------------------------------------------------------------------------- canvases
def intersect(a: tuple, b: tuple) -> tuple[int, int, int, int]:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def grow(box: tuple, m: int) -> tuple[int, int, int, int]:
    return box[0] - m, box[1] - m, box[2] + m, box[3] + m


def own_box(v: Variant, margin: int = OWN_MARGIN) -> tuple[int, int, int, int]:
    """The own canvas of ``v`` in its frame's pixels: the frame (cut or not) within ``margin`` of the tile."""
    return intersect(tuple(int(round(x)) for x in v.frame), grow(v.tile_box, margin))


def in_mosaic(v: Variant, gutter: int = GUTTER, size: int = MOSAIC) -> bool:
    """Whether ``v`` may be a mosaic tile: uncut, its tile + gutter inside the frame (the grey around it is
    the frame's own grey) and small enough for the mosaic."""
    g = grow(v.tile_box, gutter)
    inside = g[0] >= v.frame[0] and g[1] >= v.frame[1] and g[2] <= v.frame[2] and g[3] <= v.frame[3]
    return v.truncation is None and inside and g[2] - g[0] <= size and g[3] - g[1] <= size


def place(v: Variant, box: tuple[int, int, int, int]) -> np.ndarray:
    """The canvas ``box`` of ``v``'s frame: letterbox grey, the tile where it overlaps."""
    canvas = np.full((box[3] - box[1], box[2] - box[0], 3), FILL, np.uint8)
    ov = intersect(box, v.tile_box)
    if ov[2] > ov[0] and ov[3] > ov[1]:
        tx, ty = v.tile_xy
        canvas[ov[1] - box[1] : ov[3] - box[1], ov[0] - box[0] : ov[2] - box[0]] = v.tile[
            ov[1] - ty : ov[3] - ty, ov[0] - tx : ov[2] - tx
        ]
    return canvas


def mosaic_tiles(variants: dict[int, Variant], gutter: int = GUTTER) -> list[Tile]:
    """Each variant's tile padded with ``gutter`` px of grey (its canvas box ``grow(tile_box, gutter)``)."""
    return [Tile(place(v, grow(v.tile_box, gutter)), np.eye(3), key, v.scale) for key, v in variants.items()]


def used_height(canvas) -> int:
    """Rows of a shelf-packed ``downscale.Canvas`` that hold tiles, rounded up to 32 (YOLO's stride)."""
    h = max(y + n for (_, y), n in zip(canvas.offsets, canvas.sizes))
    return int(min(canvas.image.shape[0], 32 * np.ceil(h / 32)))


def assign(dets, gts: list[np.ndarray], boxes: list[np.ndarray], regions: list[tuple]) -> list[Label]:
    """One label per mosaic tile: each detection goes to the tile whose exact keypoints ``gts[i]`` it
    matches best (OKS; a detection matching none goes to the tile holding its box centre), and each tile
    keeps its best detection (no OKS filter). All in mosaic pixels."""
    from depth_pose.detect import Detections

    n = len(dets)
    owner = np.full(n, -1)
    if n and gts:
        areas = [AREA_FACTOR * max(b[2] - b[0], 1.0) * max(b[3] - b[1], 1.0) for b in boxes]
        score = np.array(
            [[oks(dets.keypoints[d, :, :2], g, a) for g, a in zip(gts, areas)] for d in range(n)]
        )
        owner = np.where(score.max(1) > 1e-6, score.argmax(1), -1)
        for d in np.nonzero(owner < 0)[0]:
            cx, cy = 0.5 * (dets.boxes[d, 0] + dets.boxes[d, 2]), 0.5 * (dets.boxes[d, 1] + dets.boxes[d, 3])
            hit = [i for i, r in enumerate(regions) if r[0] <= cx < r[2] and r[1] <= cy < r[3]]
            owner[d] = hit[0] if hit else -1
    out = []
    everywhere = (-(10**6), -(10**6), 10**6, 10**6)
    for i, (g, b) in enumerate(zip(gts, boxes)):
        sel = np.nonzero(owner == i)[0]
        sub = Detections(dets.boxes[sel], dets.scores[sel], dets.keypoints[sel]) if n else dets
        out.append(match(sub, g, b, everywhere, 0.0, AREA_FACTOR))
    return out


# ---------------------------------------------------------------------------------------------- lines
@dataclass
class Person:
    """What a line needs besides the variant: ids, group, pose label, depth, camera angles, detector scale."""

    render_id: str
    group: str  # "full" (a cut makes it "truncated") | "floor" (stays "floor", as in testset)
    pose: str
    z: float
    pitch: float
    roll: float
    d: float


def line_of(p: Person, v: Variant, lab: Label, origin: tuple[float, float]) -> dict:
    """The JSONL line (testset's format + ``render_id``, ``variant``, ``scale``) of ``v`` labelled by
    ``lab`` (its keypoints in a canvas whose corner sits at ``origin`` of ``v``'s frame), in the camera's
    own pixels: the detector-scale frame cut to ``v.frame`` and enlarged by ``1 / d``."""
    fx, fy = v.frame[0], v.frame[1]
    det = np.asarray(lab.keypoints, np.float64).copy()
    det[:, :2] = scaled_pixels(det[:, :2], 1 / p.d, ((origin[0] - fx) / p.d, (origin[1] - fy) / p.d))
    gt = scaled_pixels(v.uv, 1 / p.d, (-fx / p.d, -fy / p.d))
    K_rep = scaled_intrinsics(ts.crop_view(v.uv, v.K, v.frame)[1], 1 / p.d, (0, 0))
    inside = (v.uv >= [v.frame[0], v.frame[1]]).all(1) & (v.uv < [v.frame[2], v.frame[3]]).all(1)
    trunc = v.truncation if v.truncation else (None if inside.all() else {"side": "frame", "level": None})
    line = {
        "id": f"{p.render_id}_{v.slot}_{v.name}",
        "group": p.group if p.group == "floor" else ("truncated" if trunc else "full"),
        "pose": p.pose,
        "keypoints_xyc": [[round(float(a), 2), round(float(b), 2), round(float(c), 3)] for a, b, c in det],
        "K": np.round(K_rep, 3).tolist(),
        "gt_z_m": round(p.z, 4),
        "image_wh": [int(round((v.frame[2] - fx) / p.d)), int(round((v.frame[3] - fy) / p.d))],
        "pitch_deg": round(p.pitch, 2),
        "roll_deg": round(p.roll, 2),
        "missed": lab.status == "no_detection",
        "det_conf": round(float(lab.det_conf), 3),
        "oks": round(float(lab.oks), 3),
        "person_px": round(float(np.ptp(gt[:, 1])), 1),
        "detector_scale": round(p.d, 4),
        "gt_xy": np.round(gt, 1).tolist(),
        "render_id": p.render_id,
        "variant": v.name,
        "scale": round(v.scale, 4),
    }
    if trunc is not None:
        line["truncation"] = trunc
    return line


# ---------------------------------------------------------------------------------------------- labelling
class Labeller:
    """YOLO on own canvases (one call each, at the canvas size) and on mosaics of queued tiles; collects
    lines and the seconds spent in YOLO (``seconds``). ``mosaic=False, margin=10**6``: every sample on its
    whole frame (testset's canvas), for checks."""

    def __init__(
        self,
        detector,
        gutter: int = GUTTER,
        size: int = MOSAIC,
        mosaic: bool = True,
        margin: int = OWN_MARGIN,
    ) -> None:
        self.detector, self.gutter, self.size = detector, gutter, size
        self.mosaic, self.margin = mosaic, margin
        self.queue: dict[int, tuple[Person, Variant]] = {}
        self.lines: list[dict] = []
        self.seconds, self.calls, self._key = 0.0, 0, 0

    def detect(self, image: np.ndarray):
        t = time.perf_counter()
        (dets,) = self.detector([image], imgsz=int(32 * np.ceil(max(image.shape[:2]) / 32)))
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return dets

    def add(self, p: Person, v: Variant) -> None:
        """Label ``v`` now on its own canvas, or queue it for a mosaic."""
        if self.mosaic and in_mosaic(v, self.gutter, self.size):
            self.queue[self._key] = (p, v)
            self._key += 1
            if self._queued_area() >= FLUSH_AREA:
                self.flush(keep_last=True)
            return
        box = own_box(v, self.margin)
        lab = self.match_own(self.detect(place(v, box)), v, box)
        self.lines.append(line_of(p, v, lab, box[:2]))

    def _queued_area(self) -> float:
        return float(sum((v.tile.shape[0] + 2 * self.gutter) ** 2 for _, v in self.queue.values()))

    @staticmethod
    def match_own(dets, v: Variant, box: tuple) -> Label:
        everywhere = (-(10**6), -(10**6), 10**6, 10**6)
        shift = np.array([box[0], box[1]], np.float64)
        mb = v.mbox - np.concatenate([shift, shift])
        return match(dets, v.uv - shift, mb, everywhere, 0.0, AREA_FACTOR)

    def flush(self, keep_last: bool = False) -> None:
        """Pack the queued tiles into mosaics and label them (all, or all but a last partly filled one)."""
        if not self.queue:
            return
        canvases = pack(
            mosaic_tiles({k: v for k, (_, v) in self.queue.items()}, self.gutter), "mosaic", self.size
        )
        if keep_last and len(canvases) > 1:
            canvases = canvases[:-1]
        elif keep_last:
            return
        for c in canvases:
            self._label_mosaic(c)

    def _label_mosaic(self, c) -> None:
        dets = self.detect(c.image[: used_height(c)])
        items = [self.queue.pop(k) for k in c.keys]
        gts, boxes, regions, origins = [], [], [], []
        for (_, v), (x, y), n in zip(items, c.offsets, c.sizes):
            o = np.array(v.tile_xy, np.float64) - self.gutter  # the padded tile's corner in the frame
            gts.append(v.uv - o + [x, y])
            boxes.append(v.mbox - np.concatenate([o, o]) + [x, y, x, y])
            regions.append((x, y, x + n, y + n))
            origins.append((float(o[0] - x), float(o[1] - y)))  # mosaic (0, 0) in the frame's pixels
        for (p, v), lab, org in zip(items, assign(dets, gts, boxes, regions), origins):
            self.lines.append(line_of(p, v, lab, org))


# ---------------------------------------------------------------------------------------------- a part
def part_streams(k: int, body_seed: int):
    """numpy and torch random streams of part ``k`` (apart from testset's by :data:`CAMPAIGN_TAG`)."""
    import torch

    rng = np.random.default_rng([int(body_seed), int(k), CAMPAIGN_TAG])
    g = torch.Generator().manual_seed(int(body_seed) * 1_000_003 + int(k) + (CAMPAIGN_TAG << 40))
    return rng, g


def variant_rng(k: int, i: int, body_seed: int) -> np.random.Generator:
    """The stream of render ``i`` of part ``k``'s variant draws (independent of failed renders)."""
    return np.random.default_rng([int(body_seed), int(k), CAMPAIGN_TAG, int(i)])


@dataclass
class Plan:
    """A person of a part before rendering: its index in the part, line fields, the orig variant (tile not
    rendered yet), the render window (detector pixels), mesh vertices and camera pose."""

    index: int
    person: Person
    orig: Variant
    window: tuple[int, int, int, int]
    verts: np.ndarray
    R: np.ndarray
    t: np.ndarray

    def view(self) -> tuple:
        """(K, R, t, width, height) of the render window: ``OwnCanvasRenderer``'s view."""
        w = self.window
        return ts.crop_view(self.orig.uv, self.orig.K, w)[1], self.R, self.t, w[2] - w[0], w[3] - w[1]


def plan_people(
    k: int, part_size: int, body, pose_sampler, camera_sampler, body_seed: int
) -> tuple[list[Plan], np.random.Generator]:
    """The part's people (:class:`Plan`, by index) and the part's numpy stream (for the render looks)."""
    import torch

    from depth_pose.keypoints import L_HIP, R_HIP
    from generation.pose import named_poses

    rng, g = part_streams(k, body_seed)
    is_floor = rng.random(part_size) < FLOOR_SHARE
    floor_names = ts.floor_presets(list(pose_sampler.presets))
    plans = []
    for kind in ("standing", "floor"):
        idx = [i for i in range(part_size) if is_floor[i] == (kind == "floor")]
        if not idx:
            continue
        if kind == "floor":
            names = [str(x) for x in rng.choice(floor_names, size=len(idx))]
            poses = named_poses(names, 1, g, jitter_deg=8.0)
        else:
            poses = pose_sampler.sample(len(idx), g)
        bi = torch.randint(0, len(body.shapes), (len(idx),), generator=g)
        verts, kp_world, labels = ts.posed_geometry(body, poses, bi)
        cams, too_small = ts.draw_cameras(body, poses, bi, camera_sampler, g, kp_world)
        for j, i in enumerate(idx):
            if too_small[j]:
                continue
            K, R, t, (W, H) = cams["K"][j], cams["R"][j], cams["t"][j], cams["wh"][j]
            d = ts.detector_scale(W, H)
            Ky = scaled_intrinsics(K, d, (0, 0))
            uv, pc = ts.project(kp_world[j], Ky, R, t)
            mbox = ts.box_of(ts.project(verts[j], Ky, R, t)[0])
            frame = (0, 0, int(round(W * d)), int(round(H * d)))
            if not np.isfinite(mbox).all():  # mesh points behind the camera project to NaN (part 302 crashed)
                continue
            if ts.person_window(mbox, frame) is None:  # nothing of the person in the frame
                continue
            win = render_window(mbox)
            z = float(0.5 * (pc[L_HIP, 2] + pc[R_HIP, 2]))
            group = "floor" if kind == "floor" else "full"
            person = Person(
                f"c{k:05d}_{i:03d}",
                group,
                str(labels[j]),
                z,
                float(cams["pitch"][j]),
                float(cams["roll"][j]),
                d,
            )
            orig = Variant("orig", 1.0, Ky, uv, mbox, np.zeros((0, 0, 3), np.uint8), win[:2], frame)
            plans.append(Plan(i, person, orig, win, verts[j], R, t))
    return sorted(plans, key=lambda x: x.index), rng


def make_part(
    k: int,
    part_size: int,
    renderer,
    pose_sampler,
    camera_sampler,
    body_seed: int,
    stats: Counter | None = None,
) -> list[dict]:
    """The JSONL lines of campaign part ``k`` (deterministic in ``k`` and ``body_seed``): every person
    rendered once, its variants labelled as its render arrives; ``stats`` gets seconds and counts."""
    stats = stats if stats is not None else Counter()
    t0 = time.perf_counter()
    plans, rng = plan_people(k, part_size, renderer.body, pose_sampler, camera_sampler, body_seed)
    jobs = renderer.submit([p.verts for p in plans], [p.view() for p in plans], rng)
    stats["plan_s"] += time.perf_counter() - t0
    lab = Labeller(renderer.detector)
    for plan, (job, fut) in zip(plans, jobs):
        tw = time.perf_counter()
        image = renderer.pool.result(job, fut)[0]
        stats["render_wait_s"] += time.perf_counter() - tw
        if image is None:
            stats["render_failed"] += 1
            continue
        stats["renders"] += 1
        for v in make_variants(replace(plan.orig, tile=image), variant_rng(k, plan.index, body_seed)):
            lab.add(plan.person, v)
    lab.flush()
    stats["yolo_s"] += lab.seconds
    stats["yolo_calls"] += lab.calls
    stats["total_s"] += time.perf_counter() - t0
    return sorted(lab.lines, key=lambda o: o["id"])


def own_canvas_part(
    k: int, part_size: int, renderer, pose_sampler, camera_sampler, body_seed: int
) -> list[dict]:
    """testset's own-canvas part ``k`` (one render and one YOLO call per person), with ``render_id``,
    ``variant`` (``orig`` or ``cut_<side>``) and ``scale`` added: the campaign without the trick."""
    lines = ts.make_part(k, part_size, renderer, pose_sampler, camera_sampler, body_seed)
    for o in lines:
        side = (o.get("truncation") or {}).get("side")
        o.update(render_id=o["id"], variant="orig" if side in (None, "frame") else f"cut_{side}", scale=1.0)
    return lines


# ---------------------------------------------------------------------------------------------- the command
def part_path(work: Path, k: int) -> Path:
    return work / "parts" / f"part_{k:05d}.jsonl"


def count_lines(path: Path) -> tuple[int, int]:
    """(samples, accepted samples) of a finished part file."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return len(rows), sum(not o["missed"] for o in rows)


def finished_samples(work: Path, n: int) -> int:
    """Samples in the finished parts 0, 1, ... (up to the first missing one, or until ``n`` are counted)."""
    total, k = 0, 0
    while total < n and part_path(work, k).exists():
        total, k = total + count_lines(part_path(work, k))[0], k + 1
    return total


def clean_temps(work: Path) -> int:
    """Remove temporary files a killed run left beside the parts (their parts are redone); how many."""
    temps = list((work / "parts").glob(".part_*.tmp"))
    for p in temps:
        p.unlink(missing_ok=True)
    return len(temps)


def check_args(a: argparse.Namespace) -> str | None:
    """What is wrong with the arguments (one line), or None."""
    if a.n < 1:
        return f"--n must be at least 1, got {a.n}"
    if not 1 <= a.part_size <= 1000:
        return f"--part-size must be in 1..1000, got {a.part_size}"
    if a.workers < 1:
        return f"--workers must be at least 1, got {a.workers}"
    if a.deadline is not None and not a.deadline > 0:
        return f"--deadline must be a positive number of seconds, got {a.deadline}"
    if a.body_seed == ts.BODY_SEED:
        return f"--body-seed {ts.BODY_SEED} is the held-out test set's bank: use a training seed (e.g. 0)"
    if a.work.exists() and not a.work.is_dir():
        return f"work folder '{a.work}' is not a directory"
    return None


def check_work(work: Path, settings: dict) -> str | None:
    """Record the campaign's settings in ``work/campaign.json`` on first use; a one-line reason when the
    folder holds parts of other settings (its parts would not be the ones asked for)."""
    from depth_pose.eval.io import atomic_write_json

    path = work / "campaign.json"
    if not path.exists():
        if (work / "parts").exists() and any((work / "parts").glob("part_*.jsonl")):
            return f"{work} holds parts but no campaign.json (not a campaign folder): use another work folder"
        atomic_write_json(path, settings)
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return f"{path}: unreadable ({e})"
    diff = [f"{key} {old.get(key)!r} (asked {val!r})" for key, val in settings.items() if old.get(key) != val]
    return (
        f"{work} holds parts of other settings: {', '.join(diff)}: use another work folder" if diff else None
    )


def run_parts(a: argparse.Namespace, build) -> tuple[int, int]:
    """Render missing parts (in order) until the finished ones hold ``a.n`` samples or the deadline passes;
    progress lines on stderr; returns (samples, accepted) in the finished parts."""
    from depth_pose.eval.io import atomic_write_jsonl

    t0, k, total, acc = time.perf_counter(), 0, 0, 0
    while total < a.n:
        path = part_path(a.work, k)
        if not path.exists():
            if a.deadline is not None and time.perf_counter() - t0 > a.deadline:
                print(f"{PROG}: deadline: stopping before part {k} ({total}/{a.n} samples)", file=sys.stderr)
                break
            tp = time.perf_counter()
            lines = build(k)
            atomic_write_jsonl(path, lines)
            dt = time.perf_counter() - tp
            n_acc, n_ren = sum(not o["missed"] for o in lines), len({o["render_id"] for o in lines})
            print(
                f"part {k}: {len(lines)} samples ({n_acc} accepted) from {n_ren}"
                f" renders in {dt:.1f} s ({n_acc / dt:.2f} accepted/s); {total + len(lines)}/{a.n}",
                file=sys.stderr,
                flush=True,
            )
        n, m = count_lines(path)
        total, acc, k = total + n, acc + m, k + 1
    return total, acc


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``PROG: error: ...`` line (exit 2), without the usage block."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("work", type=Path, help="work folder (parts/ kept here: a rerun continues)")
    ap.add_argument("--body-seed", type=int, default=0, help="body bank seed (not the held-out 1919)")
    ap.add_argument("--n", type=int, default=20000, help="labelled samples wanted (missed ones included)")
    ap.add_argument("--part-size", type=int, default=DEFAULT_PART_SIZE, help="renders per part")
    ap.add_argument("--deadline", type=float, default=None, help="start no part after this many seconds")
    ap.add_argument("--no-trick", action="store_true", help="own-canvas builder: one render per sample")
    ap.add_argument("--workers", type=int, default=2, help="Blender processes")
    ap.add_argument("--dest", type=Path, default=None, help="joined set + manifest (default WORK/out)")
    a = ap.parse_args(argv)
    why = check_args(a)
    settings = {"body_seed": a.body_seed, "part_size": a.part_size, "trick": not a.no_trick}
    why = why or check_work(a.work, settings)
    if why:
        print(f"{PROG}: error: {why}", file=sys.stderr)
        return 2
    import depth_pose  # noqa: F401  (env defaults before anny)
    from generation.body import BodyModel

    if clean_temps(a.work):
        print(f"{PROG}: removed temporary files of a killed part (it is redone)", file=sys.stderr)
    total = finished_samples(a.work, a.n)
    if total < a.n:  # no Blender workers, Anny or YOLO when the finished parts suffice
        body = BodyModel(n_bodies=ts.N_BODIES, seed=a.body_seed)
        pose_sampler, camera_sampler = ts.build_samplers()
        renderer = ts.OwnCanvasRenderer(body, workers=a.workers)
        builder = own_canvas_part if a.no_trick else make_part
        try:
            total, _ = run_parts(
                a, lambda k: builder(k, a.part_size, renderer, pose_sampler, camera_sampler, a.body_seed)
            )
        finally:
            renderer.close()
    extra = {
        "render": "draft",
        "campaign": settings,
        "body_seed": a.body_seed,
        "variants": "orig, down1, down2, cut_<side>" if not a.no_trick else "orig, cut_<side> (own canvas)",
    }
    command = f"python -m {PROG} " + " ".join(argv if argv is not None else sys.argv[1:])
    m = ts.finalize(a.work, a.dest or a.work / "out", a.n, command, extra)
    print(json.dumps({key: m[key] for key in ("people", "missed", "groups", "bytes")}), flush=True)
    return 0 if total >= a.n else 3


if __name__ == "__main__":
    raise SystemExit(main())
