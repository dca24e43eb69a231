"""Render campaign (issue 20): variant geometry, canvases, mosaic assignment, line format, resumability.
The fast tests use synthetic tiles and a fake detector (no Blender, no YOLO); one render test runs the
command end to end."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_pose.detect import Detections
from generation.render import campaign as cp
from generation.render import testset as ts
from generation.render.label import Label

R_ID, T_ID = np.eye(3), np.zeros(3)


def _camera(width: int = 1000, height: int = 800) -> np.ndarray:
    return np.array([[700.0, 0, width / 2 + 13.3], [0, 700.0, height / 2 - 7.1], [0, 0, 1]])


def _points(rng: np.random.Generator, centre=(0.3, 0.2, 6.0)) -> np.ndarray:
    """17 world points of a person-sized blob (camera = world frame)."""
    return np.array(centre) + rng.normal(0, [0.25, 0.5, 0.1], (17, 3))


def _variant(rng, colour, centre=(0.3, 0.2, 6.0), K=None, frame=(0, 0, 1000, 800)) -> tuple:
    """An orig variant whose tile is a solid ``colour`` window around the projected points."""
    K = _camera() if K is None else K
    pts = _points(rng, centre)
    uv = ts.project(pts, K, R_ID, T_ID)[0]
    mbox = ts.box_of(uv)
    win = cp.render_window(mbox)
    tile = np.zeros((win[3] - win[1], win[2] - win[0], 3), np.uint8)
    tile[:] = colour
    return cp.Variant("orig", 1.0, K, uv, mbox, tile, win[:2], frame), pts, win


def _person(name: str = "c00000_000", d: float = 1.0) -> cp.Person:
    return cp.Person(name, "full", "walk", 6.0, -5.0, 1.0, d)


# ---------------------------------------------------------------------------------------------- geometry
def test_zoom_out_keypoints_are_the_scaled_camera_projection():
    rng = np.random.default_rng(0)
    v, pts, win = _variant(rng, (10, 200, 30))
    for s in (0.8, 0.5, 0.31):
        z = cp.zoom_out(v, s, "down1")
        assert np.allclose(z.uv, ts.project(pts, z.K, R_ID, T_ID)[0], atol=1e-9)
        n = z.tile.shape[0]
        assert z.scale == pytest.approx(n / v.tile.shape[0]) and abs(z.scale - s) < 1 / v.tile.shape[0]
        assert z.K[0, 0] == pytest.approx(v.K[0, 0] * z.scale)
        assert np.abs(z.K[:2, 2] - v.K[:2, 2]).max() <= 0.5 + 1e-9  # zoom about the principal point
        assert all(isinstance(c, int) for c in z.tile_xy) and z.frame == v.frame
        # the tile's corners are the window's corners under u' = s u + offset
        corner = np.array([win[:2], win[2:]], np.float64)
        off = np.array(z.tile_xy) - z.scale * corner[0]
        assert np.allclose(z.scale * corner + off, [z.tile_xy, np.array(z.tile_xy) + n])


def test_cut_variant_keeps_the_camera_and_cuts_the_frame():
    rng = np.random.default_rng(1)
    v, pts, _ = _variant(rng, (50, 60, 70))
    for seed in range(20):
        c = cp.cut_variant(v, np.random.default_rng(seed))
        side = c.truncation["side"]
        assert c.name == f"cut_{side}" and side in ts.CUT_SIDES
        f = c.frame
        assert v.frame[0] <= f[0] < f[2] <= v.frame[2] and v.frame[1] <= f[1] < f[3] <= v.frame[3]
        inside = (c.uv >= f[:2]).all(1) & (c.uv < f[2:]).all(1)
        assert not inside.all() and inside.any()  # the cut goes through the person
        line = cp.line_of(_person(d=0.5), c, _label(c.uv - f[:2]), f[:2])
        K_rep, gt = np.array(line["K"]), np.array(line["gt_xy"])
        # own pixels = detector pixels / d, origin at the cut frame's corner
        assert np.allclose(gt, (c.uv - f[:2]) / 0.5, atol=0.06)
        assert np.allclose(ts.project(pts, K_rep, R_ID, T_ID)[0], gt, atol=0.06)
        assert line["image_wh"] == [int(round((f[2] - f[0]) / 0.5)), int(round((f[3] - f[1]) / 0.5))]
        assert line["group"] == "truncated" and line["truncation"]["side"] == side
        floor = cp.line_of(replace(_person(d=0.5), group="floor"), c, _label(c.uv - f[:2]), f[:2])
        assert floor["group"] == "floor" and floor["truncation"] == line["truncation"]  # as in testset


def test_draw_scales_keep_people_tall_enough():
    rng = np.random.default_rng(2)
    for h in (30.0, 50.0, 60.0, 120.0, 600.0):
        s = cp.draw_scales(h, rng)
        assert s == sorted(s, reverse=True)
        assert all(
            cp.SCALE_RANGE[0] <= x <= cp.SCALE_RANGE[1] and x * h >= cp.MIN_PERSON_PX - 1e-9 for x in s
        )
    assert cp.draw_scales(30.0, rng) == [] and len(cp.draw_scales(600.0, rng)) == cp.N_DOWN


def test_make_variants_zoom_frame_cut_people_from_the_unclipped_window():
    rng = np.random.default_rng(3)
    v, _, win = _variant(rng, (1, 2, 3))
    names = [x.name for x in cp.make_variants(v, np.random.default_rng(0))]
    assert names[:3] == ["orig", "down1", "down2"] and len(names) == 3 + cp.N_CUT
    assert all(n.startswith("cut_") for n in names[3:])
    # a person the frame's left edge cuts: the window is rendered beyond the frame, the zoom-out shows it
    edge, _, ewin = _variant(rng, (1, 2, 3), centre=(-4.1, 0.2, 6.0))
    assert ewin[0] < 0 and ewin == cp.render_window(edge.mbox) and not cp.in_mosaic(edge)
    assert (edge.uv[:, 0] < 0).any()
    z = cp.zoom_out(edge, 0.5, "down1")
    assert (z.uv[:, 0] >= 0).all() and z.tile_box[0] >= 0  # now whole, and its tile inside the frame
    line = cp.line_of(_person(), edge, _label(edge.uv), (0, 0))
    assert line["group"] == "truncated" and line["truncation"]["side"] == "frame"
    assert "truncation" not in cp.line_of(_person(), z, _label(z.uv), (0, 0))


# ---------------------------------------------------------------------------------------------- canvases
def test_place_crops_a_tile_partly_outside_the_box():
    tile = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    v = cp.Variant("orig", 1.0, _camera(), np.zeros((17, 2)), np.zeros(4), tile, (10, 20), (0, 0, 100, 100))
    c = cp.place(v, (12, 18, 30, 24))
    assert c.shape == (6, 18, 3)
    assert (c[:2] == cp.FILL).all() and (c[:, 3:] == cp.FILL).all()
    assert np.array_equal(c[2:6, 0:3], tile[0:4, 2:5])


def _label(kp_xy: np.ndarray, missed: bool = False) -> Label:
    kp = np.concatenate([kp_xy, np.full((17, 1), 0.9)], 1).astype(np.float32)
    if missed:
        kp[:] = np.nan
        kp[:, 2] = 0
        return Label("no_detection", kp, 0.0, 0.0)
    return Label("accepted", kp, 0.8, 0.9)


class BlockDetector:
    """A fake YOLO: every solid block of a registered colour is a person whose keypoints sit where the tile
    of that colour and size puts them (the tile's corner from the block, a cut side from the canvas edge)."""

    def __init__(self) -> None:
        self.people: dict[tuple, tuple[np.ndarray, tuple[int, int]]] = {}
        self.calls: list[tuple] = []

    def register(self, v: cp.Variant) -> None:
        colour = tuple(int(c) for c in v.tile[0, 0])
        self.people[colour] = self.people.get(colour, []) + [(v.uv - v.tile_xy, v.tile.shape[:2])]

    def __call__(self, images, imgsz=None):
        (im,) = images
        self.calls.append((im.shape, imgsz))
        boxes, kps = [], []
        for colour, options in self.people.items():
            mask = (im == np.array(colour, np.uint8)).all(-1).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            for x, y, w, h, _ in stats[1:n]:
                for rel, (th, tw) in options:
                    full = (w == tw or x == 0 or x + w == im.shape[1]) and (
                        h == th or y == 0 or y + h == im.shape[0]
                    )
                    if not full:
                        continue
                    x0 = x if (w == tw or x > 0) else x + w - tw
                    y0 = y if (h == th or y > 0) else y + h - th
                    boxes.append([x, y, x + w, y + h])
                    kps.append(np.concatenate([rel + [x0, y0], np.full((17, 1), 0.9)], 1))
        if not boxes:
            return [Detections.empty()]
        return [
            Detections(
                np.array(boxes, np.float32), np.full(len(boxes), 0.8, np.float32), np.array(kps, np.float32)
            )
        ]


def _people(n: int, seed: int = 4) -> list[tuple[cp.Person, cp.Variant]]:
    """``n`` synthetic people on one 1000 x 800 frame, each with its variants (distinct colours)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        centre = (rng.uniform(-1.5, 1.5), rng.uniform(-1.0, 1.0), rng.uniform(5.0, 12.0))
        v, _, win = _variant(rng, (20 + 9 * i, 255 - 7 * i, 100 + 5 * i), centre)
        for x in cp.make_variants(v, np.random.default_rng(i)):
            out.append((_person(f"c00000_{i:03d}", d=0.75), x))
    return out


def test_labeller_maps_every_detection_back_to_its_sample():
    """Mosaics + own canvases through a fake detector that finds each tile exactly: every line's YOLO
    keypoints equal its exact ones (the bookkeeping of canvases, mosaics and own pixels is exact)."""
    det = BlockDetector()
    lab = cp.Labeller(det)
    items = _people(9)
    for _, v in items:
        det.register(v)
    for p, v in items:
        lab.add(p, v)
    lab.flush()
    assert len(lab.lines) == len(items) == len({o["id"] for o in lab.lines})
    kinds = Counter(cp.in_mosaic(v) for _, v in items)
    assert kinds[True] >= 6 and kinds[False] >= 6  # both paths exercised
    assert lab.calls < len(items)  # mosaics pack several samples per YOLO call
    for shape, imgsz in det.calls:
        assert imgsz % 32 == 0 and max(shape[:2]) <= imgsz <= cp.MOSAIC
    for o in lab.lines:
        assert not o["missed"], o["id"]
        kp, gt = np.array(o["keypoints_xyc"])[:, :2], np.array(o["gt_xy"])
        assert np.abs(kp - gt).max() < 0.2, o["id"]
        assert o["id"].startswith(o["render_id"] + "_") and o["id"].endswith("_" + o["variant"])
        assert o["variant"] in ("orig", "down1", "down2") or o["variant"].startswith("cut_")


def test_assign_gives_each_tile_its_best_detection():
    rng = np.random.default_rng(5)
    gts = [rng.uniform(0, 100, (17, 2)) + [150 * i, 0] for i in range(3)]
    boxes = [np.concatenate([g.min(0), g.max(0)]) for g in gts]
    regions = [(150 * i, 0, 150 * i + 140, 140) for i in range(3)]
    order = [2, 0]  # tile 1 missed; detections in another order, plus a far-away one
    kps = [gts[i] + rng.normal(0, 1.0, (17, 2)) for i in order] + [np.full((17, 2), 5000.0)]
    kps.append(gts[0] + 40.0)  # a worse detection of tile 0
    dets = Detections(
        np.array([[0, 0, 1, 1]] * 3 + [[0, 0, 10, 10]], np.float32),
        np.array([0.9, 0.8, 0.3, 0.5], np.float32),
        np.array([np.concatenate([k, np.ones((17, 1))], 1) for k in kps], np.float32),
    )
    labs = cp.assign(dets, gts, boxes, regions)
    assert [lb.status for lb in labs] == ["accepted", "no_detection", "accepted"]
    assert np.allclose(labs[0].keypoints[:, :2], kps[1], atol=1e-4) and labs[0].det_conf == pytest.approx(0.8)
    assert np.allclose(labs[2].keypoints[:, :2], kps[0], atol=1e-4)
    assert all(lb.oks == 0.0 or lb.oks > 0.5 for lb in labs)
    assert [lb.status for lb in cp.assign(Detections.empty(), gts, boxes, regions)] == ["no_detection"] * 3


def test_mosaic_tiles_are_gutter_apart_and_crop_to_used_rows():
    items = _people(6)
    vs = {k: v for k, (_, v) in enumerate(items) if cp.in_mosaic(v)}
    canvases = cp.pack(cp.mosaic_tiles(vs), "mosaic", cp.MOSAIC)
    for c in canvases:
        for key, (x, y), n in zip(c.keys, c.offsets, c.sizes):
            v = vs[key]
            assert n == v.tile.shape[0] + 2 * cp.GUTTER
            assert (c.image[y : y + cp.GUTTER, x : x + n] == cp.FILL).all()
            assert np.array_equal(c.image[y + cp.GUTTER, x + cp.GUTTER], v.tile[0, 0])
        assert cp.used_height(c) % 32 == 0 or cp.used_height(c) == c.image.shape[0]
        assert cp.used_height(c) >= max(y + n for (_, y), n in zip(c.offsets, c.sizes))


# ---------------------------------------------------------------------------------------------- lines
def test_lines_read_back_with_the_eval_reader(tmp_path):
    from depth_pose.eval.io import atomic_write_jsonl, read_keypoints_jsonl

    items = _people(3)
    lines = []
    for j, (p, v) in enumerate(items):
        box = cp.own_box(v)
        lines.append(cp.line_of(p, v, _label(v.uv - box[:2], missed=j == 1), box[:2]))
    path = atomic_write_jsonl(tmp_path / "part_00000.jsonl", lines)
    ps = read_keypoints_jsonl(path, keep=("render_id", "variant", "scale", "missed"))
    assert not ps.skipped and len(ps.ids) == len(lines)
    assert ps.fields["missed"][1] is True and np.isnan(ps.keypoints[1][:, :2]).all()
    assert all(set(_testset_keys()) <= set(o) for o in lines)
    assert ps.image_wh is not None and np.isfinite(np.asarray(ps.image_wh, float)).all()


def _testset_keys() -> list[str]:
    return [
        "id", "group", "pose", "keypoints_xyc", "K", "gt_z_m", "image_wh", "pitch_deg", "roll_deg", "missed",
        "det_conf", "oks", "person_px", "detector_scale", "gt_xy", "render_id", "variant", "scale",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------- resuming
def _args(work: Path, **kw) -> argparse.Namespace:
    base = {"work": work, "n": 10, "part_size": 4, "workers": 2, "deadline": None, "body_seed": 0}
    return argparse.Namespace(**{**base, **kw})


def _fake_build(calls: list[int], per_part: int = 4):
    def build(k: int) -> list[dict]:
        calls.append(k)
        return [{"id": f"c{k}_{i}", "render_id": f"c{k}", "missed": i == 0} for i in range(per_part)]

    return build


def test_run_parts_skips_finished_parts_and_redoes_killed_ones(tmp_path, capsys):
    from depth_pose.eval.io import atomic_write_jsonl

    parts = tmp_path / "parts"
    atomic_write_jsonl(cp.part_path(tmp_path, 0), [{"id": "x", "render_id": "x", "missed": False}] * 4)
    (parts / ".part_00001.jsonl.abc123.tmp").write_text('{"id": "half')  # a part killed mid-write
    assert cp.clean_temps(tmp_path) == 1 and not list(parts.glob(".*tmp"))
    calls: list[int] = []
    total, acc = cp.run_parts(_args(tmp_path, n=10), _fake_build(calls))
    assert calls == [1, 2] and total == 12 and acc == 4 + 3 + 3
    assert "part 1: 4 samples (3 accepted) from 1 renders" in capsys.readouterr().err
    calls.clear()
    assert cp.run_parts(_args(tmp_path, n=12), _fake_build(calls)) == (12, 10) and calls == []
    assert cp.run_parts(_args(tmp_path, n=13, deadline=1e-9), _fake_build(calls))[0] == 12 and calls == []
    assert "deadline: stopping before part 3" in capsys.readouterr().err


def test_a_rerun_with_enough_finished_parts_renders_nothing(tmp_path, monkeypatch, capsys):
    from depth_pose.eval.io import atomic_write_jsonl

    def refuse(*a, **kw):
        raise AssertionError("nothing to render")

    monkeypatch.setattr(ts, "OwnCanvasRenderer", refuse)
    monkeypatch.setattr(ts, "build_samplers", refuse)
    lines = []
    for p, v in _people(2):
        box = cp.own_box(v)
        lines.append(cp.line_of(p, v, _label(v.uv - box[:2]), box[:2]))
    work = tmp_path / "w"
    assert cp.check_work(work, {"body_seed": 0, "part_size": 4, "trick": True}) is None
    atomic_write_jsonl(cp.part_path(work, 0), lines)
    assert cp.main([str(work), "--n", "3", "--part-size", "4"]) == 0
    assert json.loads((work / "out" / ts.MANIFEST).read_text())["people"] == 3
    assert "part" not in capsys.readouterr().err


def test_work_folder_settings_are_checked(tmp_path):
    s = {"body_seed": 0, "part_size": 24, "trick": True}
    assert cp.check_work(tmp_path / "w", s) is None and cp.check_work(tmp_path / "w", s) is None
    why = cp.check_work(tmp_path / "w", {**s, "part_size": 12})
    assert "part_size 24 (asked 12)" in why
    (tmp_path / "t" / "parts").mkdir(parents=True)
    (tmp_path / "t" / "parts" / "part_00000.jsonl").write_text("{}\n")
    assert "not a campaign folder" in cp.check_work(tmp_path / "t", s)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--n", "0"], "--n must be at least 1"),
        (["--part-size", "0"], "--part-size must be in 1..1000"),
        (["--deadline", "-1"], "--deadline must be a positive"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--body-seed", str(ts.BODY_SEED)], "held-out"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, argv, needle):
    assert cp.main([str(tmp_path / "w"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{cp.PROG}: error: ") and needle in err[0]


def test_argparse_errors_are_one_line_too(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cp.main([str(tmp_path), "--n", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "invalid int value: 'x'" in err[0]


def test_variant_draws_do_not_depend_on_other_renders():
    a = cp.variant_rng(3, 5, 0).uniform(size=4)
    assert np.array_equal(a, cp.variant_rng(3, 5, 0).uniform(size=4))
    assert not np.array_equal(a, cp.variant_rng(3, 6, 0).uniform(size=4))
    assert not np.array_equal(
        cp.part_streams(0, 0)[0].uniform(size=3), np.random.default_rng(ts.part_seed(0, 0)).uniform(size=3)
    )


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.render
@pytest.mark.yolo
def test_campaign_end_to_end_and_resume(tmp_path, capsys):
    """A tiny campaign: parts written, every line has a render_id and a variant; a rerun asking for more
    renders only the missing part."""
    work = tmp_path / "w"
    assert cp.main([str(work), "--n", "3", "--part-size", "2"]) == 0
    first = sorted((work / "parts").glob("part_*.jsonl"))
    rows = [json.loads(x) for p in first for x in p.read_text().splitlines()]
    assert rows and all(o["id"].startswith(o["render_id"]) and o["variant"] for o in rows)
    before = {p.name: p.read_bytes() for p in first}
    n_more = len(rows) + 1
    assert cp.main([str(work), "--n", str(n_more), "--part-size", "2"]) == 0
    after = sorted((work / "parts").glob("part_*.jsonl"))
    assert len(after) > len(first) and all(before[p.name] == p.read_bytes() for p in first)
    assert (work / "out" / ts.DATA_FILE).exists()
