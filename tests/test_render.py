"""Render path: Blender camera conversion, downscale trick, OKS matching, and dp-generate render=draft end
to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, compose, render_camera
from procs import live_pids

from depth_pose import geometry
from depth_pose.detect import Detections
from generation.render import downscale
from generation.render.framing import blender_camera, frame_person, project_np
from generation.render.label import match, oks

_ONLY_STANDING = ",".join(
    f"{p.stem}:{float(p.stem == 'standing')}" for p in (REPO / "generation/data/presets").glob("*.yaml")
)


def _blender_projection(pts, K, R, t, w, h) -> np.ndarray:
    """Blender's own projection (world_to_camera_view) of ``pts`` for our camera, in a separate process
    (bpy stays out of the test process: bpy + ultralytics in one process stalled the worker pool here)."""
    import subprocess
    import sys

    code = """
import json, sys
import numpy as np
import bpy
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Matrix, Vector
from generation.render.framing import blender_camera
a = json.loads(sys.stdin.read())
w, h = a["w"], a["h"]
cam = blender_camera(np.array(a["K"]), np.array(a["R"]), np.array(a["t"]), w, h)
bpy.ops.wm.read_factory_settings(use_empty=True)
sc = bpy.context.scene
ob = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
sc.collection.objects.link(ob)
sc.camera = ob
d = ob.data
d.sensor_fit, d.sensor_width, d.lens, d.shift_x, d.shift_y = (
    cam["sensor_fit"], cam["sensor_width"], cam["lens"], cam["shift_x"], cam["shift_y"])
sc.render.resolution_x, sc.render.resolution_y = w, h
ob.matrix_world = Matrix(cam["matrix_world"].tolist())
bpy.context.view_layer.update()
q = [list(world_to_camera_view(sc, ob, Vector(p)))[:2] for p in a["pts"]]
print("RESULT" + json.dumps([[x * w, (1 - y) * h] for x, y in q]))
"""
    arg = {"K": K.tolist(), "R": R.tolist(), "t": t.tolist(), "w": w, "h": h, "pts": pts.tolist()}
    res = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(arg),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")]
    assert res.returncode == 0 and line, res.stderr[-2000:]
    return np.array(json.loads(line[0][6:]))


def test_blender_camera_reproduces_our_projection():
    """Blender's projection of points through the converted camera equals ours to < 0.01 px (16:9 camera with
    an off-centre principal point, and a square framing camera)."""
    import importlib.util

    assert importlib.util.find_spec("bpy") is not None, "bpy is a project dependency"
    pts = np.random.default_rng(0).uniform([-0.5, -0.5, 0.0], [0.5, 0.5, 1.8], size=(50, 3))
    _, R1, t1, _, _ = render_camera(1)
    for K, R, t, w, h in [render_camera(0), (frame_person(pts, R1, t1, 320), R1, t1, 320, 320)]:
        theirs = _blender_projection(pts, K, R, t, w, h)
        assert np.abs(project_np(pts, K, R, t) - theirs).max() < 0.01


def test_frame_person_centres_and_fills():
    K, R, t, _, _ = render_camera(2)
    pts = np.random.default_rng(1).uniform([-0.3, -0.2, 0.0], [0.3, 0.2, 1.7], size=(200, 3))
    Kf = frame_person(pts, R, t, 320, fill=0.8)
    px = project_np(pts, Kf, R, t)
    span = px.max(0) - px.min(0)
    assert abs(span.max() - 256.0) < 1e-6
    np.testing.assert_allclose(0.5 * (px.max(0) + px.min(0)), [160.0, 160.0], atol=1e-6)


def test_downscale_keeps_labels_exact():
    """A bright dot rendered at a projected point lands, after resize + paste, at transform_pixels of it,
    which equals the projection under transform_intrinsics (same 3D point, focal s f)."""
    K, R, t, _, _ = render_camera(3)
    p = np.array([[0.1, 0.0, 1.0]])
    Kr = frame_person(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.8]]), R, t, 400)
    u = project_np(p, Kr, R, t)[0]
    img = np.zeros((400, 400, 3), np.uint8)
    yy, xx = np.mgrid[0:400, 0:400] + 0.5
    img[((xx - u[0]) ** 2 + (yy - u[1]) ** 2) < 12.0**2] = 255
    for s in (0.5, 0.3, 0.25):
        tiles = downscale.make_tiles(img, Kr, [s], [0])
        canvases = downscale.pack(tiles, "single", 400, np.random.default_rng(0))
        c = canvases[0]
        Ks = c.K[0]
        exact = project_np(p, Ks, R, t)[0]
        np.testing.assert_allclose(
            exact, downscale.scaled_pixels(u[None], tiles[0].scale, c.offsets[0])[0], atol=1e-6
        )
        m = c.image[..., 0].astype(float)
        m[m == downscale.FILL] = 0
        cy, cx = np.mgrid[0:400, 0:400] + 0.5
        centroid = np.array([(m * cx).sum(), (m * cy).sum()]) / m.sum()
        assert np.abs(centroid - exact).max() < 0.3, (s, centroid, exact)
        assert abs(Ks[0, 0] - tiles[0].scale * Kr[0, 0]) < 1e-9


def test_mosaic_packing_fits_and_offsets():
    img = np.zeros((320, 320, 3), np.uint8)
    tiles = downscale.make_tiles(img, np.eye(3), [1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.13] * 3, list(range(21)))
    canvases = downscale.pack(tiles, "mosaic", 640)
    assert sorted(k for c in canvases for k in c.keys) == list(range(21))
    assert len(canvases) <= 2
    for c in canvases:
        boxes = [(x, y, x + n, y + n) for (x, y), n in zip(c.offsets, c.sizes)]
        for i, a in enumerate(boxes):
            assert a[2] <= 640 and a[3] <= 640
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]  # no overlap


def test_oks_and_match_statuses():
    gt = np.random.default_rng(0).uniform(100, 200, size=(17, 2))
    box = np.array([100.0, 100.0, 200.0, 200.0])
    assert oks(gt, gt, 5000.0) == pytest.approx(1.0)
    assert oks(gt + 30.0, gt, 5000.0) < 0.2
    kp = np.concatenate([gt, np.ones((17, 1))], 1)[None].astype(np.float32)
    good = Detections(np.array([[100, 100, 200, 200]], np.float32), np.array([0.9], np.float32), kp)
    assert match(good, gt, box, (0, 0, 320, 320), 0.5).status == "accepted"
    outside = match(good, gt, box, (320, 0, 640, 320), 0.5)
    assert outside.status == "no_detection"
    bad = Detections(good.boxes, good.scores, kp + np.array([40.0, 0, 0], np.float32))
    lab = match(bad, gt, box, (0, 0, 320, 320), 0.5)
    assert lab.status == "low_oks" and lab.oks < 0.5
    assert match(Detections.empty(), gt, box, (0, 0, 320, 320), 0.5).status == "no_detection"


@pytest.mark.render
@pytest.mark.yolo
def test_dp_generate_render_draft_end_to_end(tmp_path):
    """dp-generate render=draft: a few renders -> shards + manifest; YOLO on a standing person at large scale
    lies within a few pixels of the exact projection; resuming a complete set does nothing."""
    from depth_pose import shards
    from generation.pipeline import generate

    out = tmp_path / "render_set"
    overrides = [
        "render=draft",
        "num_samples=30",
        "shard_size=30",
        "samples_per_pose=2",
        f"out_dir={out}",
        "body.n_bodies=8",
        "render.poses_per_chunk=2",
        "render.workers=2",
        "progress=false",
        "pose_sampling.p_preset=1.0",
        f"pose_sampling.preset_weights={{{_ONLY_STANDING}}}",
        "pose_sampling.interp_max=0.0",
        "pose_sampling.p_spine_turn=0",
        "pose_sampling.p_hands_up=0",
        "pose_sampling.p_head_turn=0",
        "camera.depth_max_m=20",
        "render.keep_images=true",
    ]
    cfg = compose("generate", overrides)
    generate(cfg)
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["source"] == "render"
    counts = man["render_stats"]["counts"]
    assert counts["accepted"] >= 30 and counts["renders"] >= 1
    df = shards.read_frame(out)
    assert len(df) == 30 and (df["source"] == "render").all()
    assert df["scale"].between(0.0, 1.0).all() and (df["oks"] >= 0.5).all()
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    assert (
        len(list((out / "images").glob("*.jpg"))) == counts["yolo_images"]
    )  # keep_images: every YOLO canvas
    # exact labels: gt columns are the projection of the stored camera (K) of a point at depth z_m
    assert np.isfinite(df[["gt_left_hip_x", "gt_right_hip_y", "z_m", "fx", "cx"]].to_numpy()).all()
    assert df["z_m"].between(0.5, 21.0).all()
    # YOLO vs exact at large scale (person ~ 256 px): body joints within a few pixels
    big = df[df["scale"] == 1.0]
    assert len(big) >= 2
    joints = [
        "left_shoulder",
        "right_shoulder",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ]
    err = np.stack(
        [np.hypot(big[f"{j}_x"] - big[f"gt_{j}_x"], big[f"{j}_y"] - big[f"gt_{j}_y"]) for j in joints]
    )
    # (YOLO's COCO hips sit systematically a few px off Anny's regressed hips; 1-sample renders are noisy)
    assert np.median(err) < 8.0, np.median(err, axis=1)
    assert np.median(err[:2]) < 6.0, np.median(err, axis=1)  # shoulders
    assert (big["person_px_height"] > 150).all()
    # resume: a complete set is left as is
    mtime = (out / "shard-00000.parquet").stat().st_mtime_ns
    generate(cfg)
    assert (out / "shard-00000.parquet").stat().st_mtime_ns == mtime


def test_example_asset_is_consistent():
    """depth_pose/assets/example.{jpg,json}: 1280x720 JPEG < 300 KB, K, and 2-3 people at distinct depths
    whose exact keypoints re-project from their camera-frame mid-hip depth."""
    import cv2

    assets = REPO / "depth_pose" / "assets"
    meta = json.loads((assets / "example.json").read_text())
    jpg = assets / meta["image"]
    assert jpg.stat().st_size < 300_000
    img = cv2.imread(str(jpg))
    assert img.shape[:2] == (meta["image_size"][1], meta["image_size"][0]) == (720, 1280)
    K = np.array(meta["K"])
    assert K.shape == (3, 3) and geometry.check_intrinsics(torch.tensor(K)) is None
    z = [p["z_m"] for p in meta["people"]]
    assert 2 <= len(z) <= 3 and min(np.diff(sorted(z))) > 1.0
    for p in meta["people"]:
        kp = np.array(p["keypoints_px"])
        np.testing.assert_allclose(0.5 * (kp[11] + kp[12]), p["hip_px"], atol=1e-6)
        assert 0 <= p["hip_px"][0] < 1280 and 0 <= p["hip_px"][1] < 720
        assert "yolo" in p and p["yolo"]["mean_kp_err_px"] < 15.0


@pytest.mark.render
def test_worker_crash_is_isolated_and_pool_recovers():
    """A worker that aborts (like a Cycles/Mesa crash) costs only its job; the pool restarts and renders
    on."""
    from generation.render import appearance
    from generation.render.worker import RenderPool

    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    verts = np.array([[-0.5, 0, 0], [0.5, 0, 0], [0.5, 0, 1.8], [-0.5, 0, 1.8]], np.float32)
    part = np.full(2, appearance.P["torso"], np.int8)
    K, R, t, _, _ = render_camera(4)
    Kf = frame_person(verts, R, t, 64)
    rng = np.random.default_rng(0)
    view = {"camera": blender_camera(Kf, R, t, 64, 64), "scene": appearance.scene_look(rng), "seed": 1}
    job = {"vertices": verts, "look": appearance.person_look(rng), "views": [view]}
    with RenderPool(
        faces, part, np.full(2, -10.0, np.float32), {"engine": "cycles", "samples": 1}, workers=1
    ) as pool:
        crashed = pool.result({**job, "abort": True}, pool.submit({**job, "abort": True}))
        assert crashed == [None] and pool.failed_jobs == 1
        img = pool.result(job, pool.submit(job))[0]
        frames = pool.tmp_dir
        assert any(Path(frames).rglob("frame.png"))  # the workers render into the pool's folder ...
    assert not Path(frames).exists()  # ... which goes with the pool, the crashed worker's frames included
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert img.std() > 1.0  # a real render, not a blank frame


_ORPHAN_PARENT = """
import sys, time
import numpy as np
sys.path.insert(0, {tests!r})
from helpers import render_camera
from generation.render import appearance
from generation.render.framing import blender_camera, frame_person
from generation.render.worker import RenderPool

if __name__ == "__main__":
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    verts = np.array([[-0.5, 0, 0], [0.5, 0, 0], [0.5, 0, 1.8], [-0.5, 0, 1.8]], np.float32)
    K, R, t, _, _ = render_camera(4)
    rng = np.random.default_rng(0)
    view = {{"camera": blender_camera(frame_person(verts, R, t, 64), R, t, 64, 64),
             "scene": appearance.scene_look(rng), "seed": 1}}
    job = {{"vertices": verts, "look": appearance.person_look(rng), "views": [view]}}
    pool = RenderPool(faces, np.full(2, appearance.P["torso"], np.int8), np.full(2, -10.0, np.float32),
                      {{"engine": "cycles", "samples": 1}}, workers=1)
    pool.result(job, pool.submit(job))
    pool.submit({{**job, "views": [view] * 5000}})  # minutes of work in flight when we are killed
    time.sleep(1.0)
    print("workers", *[p.pid for p in pool._pool._processes.values()], flush=True)
    time.sleep(600)
"""


@pytest.mark.render
def test_render_workers_die_with_a_killed_parent(tmp_path):
    """dp-generate killed mid-render (SIGKILL, OOM) must not leave Blender workers rendering on as orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc to watch the worker processes")
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_PARENT.format(tests=str(Path(__file__).resolve().parent)))
    p = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        line = ""
        while not line.startswith("workers "):  # (Blender's own "Saved: ..." lines share the stdout)
            line = p.stdout.readline()
            assert line, "the parent exited before starting its worker"
        pids = [int(x) for x in line.split()[1:]]
        assert pids and all(Path(f"/proc/{pid}").exists() for pid in pids)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    deadline = time.monotonic() + 15
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = live_pids(pids)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"render workers {alive} outlived their killed parent"
