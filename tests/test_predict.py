"""dp-predict: sources, intrinsics, smoothing lag, zoom mapping, tracking end to end, bad inputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO, compose

import depth_pose  # noqa: F401
from depth_pose import geometry
from depth_pose.predict.intrinsics import (
    DIAG_35MM,
    IntrinsicsError,
    IntrinsicsResolver,
    load_calibration,
)
from depth_pose.predict.run import PredictError, predict
from depth_pose.predict.smoothing import TrackSmoother
from depth_pose.predict.sources import SourceError, resolve_source
from depth_pose.predict.zoom import crop_for_box, crop_to_image


def bus_image() -> np.ndarray:
    import ultralytics

    img = cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"))
    assert img is not None
    return img


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    """The shipped default model; before it exists, the real predictor code path with untrained weights."""
    from depth_pose.predictor import DEFAULT_MODEL, export_model

    if DEFAULT_MODEL.exists():
        return str(DEFAULT_MODEL)
    from depth_pose.models.module import DepthModule

    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    return str(export_model(DepthModule(), path))


def cfg_for(source, out, ckpt, *overrides):
    return compose(
        "predict", [f"source={source}", f"out={out}", f"ckpt={ckpt}", "progress=false", *overrides]
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- intrinsics


def test_calibration_file_and_fov_give_same_K(tmp_path):
    W, H, hfov = 1280, 720, 66.0
    K_fov, src = IntrinsicsResolver(hfov_deg=hfov)(W, H)
    assert src.startswith("hfov")
    assert K_fov[0, 0] == pytest.approx(W / (2 * math.tan(math.radians(hfov / 2))), rel=1e-6)
    # JSON with K, YAML with a flat cameraMatrix, OpenCV FileStorage, gt.json-style samples[], and fx only.
    (tmp_path / "k.json").write_text(json.dumps({"K": K_fov.tolist(), "width": W, "height": H}))
    (tmp_path / "k.yaml").write_text(f"cameraMatrix: {K_fov.ravel().tolist()}\nimage_size: [{W}, {H}]\n")
    fs = cv2.FileStorage(str(tmp_path / "cv.yaml"), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", W)
    fs.write("image_height", H)
    fs.write("cameraMatrix", K_fov)
    fs.write("distCoeffs", np.zeros((1, 5)))
    fs.release()
    (tmp_path / "gt.json").write_text(json.dumps({"samples": [{"image": "a.png", "K": K_fov.tolist()}]}))
    for name in ("k.json", "k.yaml", "cv.yaml"):
        K, src = IntrinsicsResolver(calib=str(tmp_path / name))(W, H, "x.jpg")
        np.testing.assert_allclose(K, K_fov, rtol=1e-6, err_msg=name)
        assert src.startswith("calib:")
    K, _ = IntrinsicsResolver(calib=str(tmp_path / "gt.json"))(W, H, "/some/dir/a.png")
    np.testing.assert_allclose(K, K_fov, rtol=1e-6)
    K, _ = IntrinsicsResolver(fx=float(K_fov[0, 0]))(W, H)
    np.testing.assert_allclose(K, K_fov, rtol=1e-6)
    # The same calibration on a half-size image scales like the FOV does (same hfov, half the pixels).
    K_half, src = IntrinsicsResolver(calib=str(tmp_path / "cv.yaml"))(W // 2, H // 2)
    np.testing.assert_allclose(K_half, IntrinsicsResolver(hfov_deg=hfov)(W // 2, H // 2)[0], rtol=1e-6)
    assert "scaled x0.5" in src
    # A per-image calibration that does not list the image is an error naming both.
    with pytest.raises(IntrinsicsError, match="b.png"):
        IntrinsicsResolver(calib=str(tmp_path / "gt.json"))(W, H, "b.png")


def test_exif_default_and_bad_calibration(tmp_path):
    from PIL import Image

    W, H = 400, 300
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28  # FocalLengthIn35mmFilm
    Image.new("RGB", (W, H)).save(tmp_path / "e.jpg", exif=exif.tobytes())
    K, src = IntrinsicsResolver()(W, H, tmp_path / "e.jpg")
    assert src == "exif:f35=28mm"
    assert K[0, 0] == pytest.approx(28 * math.hypot(W, H) / DIAG_35MM, rel=1e-5)
    Image.new("RGB", (W, H)).save(tmp_path / "plain.jpg")
    res = IntrinsicsResolver()
    with pytest.warns(UserWarning, match="60 deg"):
        K, src = res(W, H, tmp_path / "plain.jpg")
    assert src.startswith("default")
    assert K[0, 0] == pytest.approx(W / (2 * math.tan(math.radians(30))), rel=1e-6)
    (tmp_path / "bad.json").write_text(json.dumps({"K": [[0, 0, 1], [0, 500, 1], [0, 0, 1]]}))
    with pytest.raises(IntrinsicsError, match="non-positive focal"):
        load_calibration(tmp_path / "bad.json")
    with pytest.raises(IntrinsicsError, match="does not exist"):
        load_calibration(tmp_path / "missing.yaml")
    (tmp_path / "nok.json").write_text("{}")
    with pytest.raises(IntrinsicsError, match="no top-level"):
        load_calibration(tmp_path / "nok.json")


# ---------------------------------------------------------------- smoothing


def walk_toward(fps: float = 30.0, v: float = 1.4, seed: int = 0, rel_sigma: float = 0.05):
    """Stand 2 s at 10 m, then walk toward the camera at v m/s; noisy measurements with sigma = rel_sigma
    * z."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 7, 1 / fps)
    z_true = np.where(t < 2, 10.0, 10.0 - v * (t - 2))
    sigma = rel_sigma * z_true
    return t, z_true, z_true + rng.normal(size=t.size) * sigma, sigma


def run_filter(sm: TrackSmoother, t, z, sigma, with_sigma: bool = False):
    """One track through ``sm``: the smoothed depths (and sigmas ``with_sigma``)."""
    out = [sm(tt, np.array([7]), np.array([a]), np.array([s])) for tt, a, s in zip(t, z, sigma)]
    zs, ss = np.array([o[0][0] for o in out]), np.array([o[1][0] for o in out])
    return (zs, ss) if with_sigma else zs


def measured_lag(t, z_true, z_s, start: float) -> float:
    """Time shift tau minimising the error between the smoothed signal and the truth delayed by tau."""
    seg = t > start
    taus = np.arange(0, 2.0, 0.005)
    err = [np.mean((z_s[seg] - np.interp(t[seg] - tau, t, z_true)) ** 2) for tau in taus]
    return float(taus[int(np.argmin(err))])


@pytest.mark.parametrize("method", ["kalman", "one_euro"])
@pytest.mark.parametrize("max_lag_s", [0.2, 0.5])
@pytest.mark.parametrize("rel_sigma", [0.05, 0.3])
def test_smoothing_lag_on_walking_ramp(method, max_lag_s, rel_sigma):
    # The lag is measured on the mean response over 8 noise draws, so measurement noise does not blur it.
    runs = []
    for seed in range(8):
        t, z_true, z_meas, sigma = walk_toward(rel_sigma=rel_sigma, seed=seed)
        runs.append(run_filter(TrackSmoother(method=method, max_lag_s=max_lag_s), t, z_meas, sigma))
    lag = measured_lag(t, z_true, np.mean(runs, axis=0), start=2.0)
    assert lag <= max_lag_s, f"{method}: lag {lag:.3f} s > {max_lag_s}"
    t, z_true, z_meas, sigma = walk_toward(rel_sigma=rel_sigma, seed=0)
    z_s = runs[0]
    # ... and it does smooth: less error than the raw measurements, standing and walking.
    for seg in (t < 2, t > 2 + max_lag_s):
        assert np.std(z_s[seg] - z_true[seg]) < 0.75 * np.std(z_meas[seg] - z_true[seg])


def test_one_euro_lag_floor_binds_and_sigma_is_used():
    """With a tiny base cutoff the lag floor alone sets the lag: 0.7 max_lag_s (noise-free ramp)."""
    t, z_true, _, sigma = walk_toward()
    sm = TrackSmoother(method="one_euro", max_lag_s=0.4, min_cutoff=1e-4, beta=0.0)
    lag = measured_lag(t, z_true, run_filter(sm, t, z_true, sigma), start=3.5)
    assert lag == pytest.approx(0.7 * 0.4, abs=0.011)
    # Kalman: a larger sigma means a smaller gain (measurement noise = sigma^2).
    steps = []
    for s in (0.05, 1.0):
        sm = TrackSmoother(method="kalman", max_lag_s=2.0)
        sm(0.0, np.array([1]), np.array([10.0]), np.array([s]))
        for k in range(1, 10):
            sm(k / 30, np.array([1]), np.array([10.0]), np.array([s]))
        steps.append(sm(10 / 30, np.array([1]), np.array([11.0]), np.array([s]))[0][0] - 10.0)
    assert steps[0] > 1.5 * steps[1] > 0


def test_smoothed_sigma_keeps_the_error_a_person_keeps_over_frames():
    """Half of each depth's variance is shared along the track (a size error), half is new every frame: the
    filter averages only the second half, so its sigma must still cover the truth >= ~68% of the time at 1
    sigma; the bare Kalman posterior (shared_share=0) claims far less than the error it keeps."""
    rng = np.random.default_rng(0)
    cover = {0.0: [], 0.5: []}
    for _ in range(100):
        t = np.arange(60) / 10.0
        z_true, sigma = np.full(60, 10.0), np.full(60, 0.5)
        z = z_true + rng.normal(0, 0.5 * np.sqrt(0.5)) + rng.normal(0, 0.5 * np.sqrt(0.5), 60)
        for share, hits in cover.items():
            zs, ss = run_filter(TrackSmoother(shared_share=share), t, z, sigma, with_sigma=True)
            hits.append(np.abs(zs[20:] - z_true[20:]) <= ss[20:])
    assert 0.62 < np.mean(cover[0.5]) < 0.85  # (a constant-velocity model on a standing person: a bit wide)
    assert np.mean(cover[0.5]) > np.mean(cover[0.0]) + 0.1
    t, z = np.arange(30) / 10.0, 10.0 + rng.normal(0, 0.5, 30)
    bare = run_filter(TrackSmoother(shared_share=0.0), t, z, np.full(30, 0.5), with_sigma=True)[1]
    kept = run_filter(TrackSmoother(shared_share=0.3), t, z, np.full(30, 0.5), with_sigma=True)[1]
    assert (bare[5:] < 0.45).all() and np.allclose(kept**2, 0.3 * 0.25 + 0.7 * bare**2)
    from depth_pose.errors import InputError

    with pytest.raises(InputError, match="shared_share must be a number in"):
        TrackSmoother(shared_share=1.5)
    with pytest.raises(InputError, match="max_lag_s must be a number"):
        TrackSmoother(max_lag_s="x")


def test_smoother_tracks_are_independent_and_expire():
    sm = TrackSmoother(method="kalman", track_timeout_s=1.0)
    z, _ = sm(0.0, np.array([1, 2, -1]), np.array([5.0, 20.0, 8.0]), np.array([0.2, 1.0, 0.5]))
    np.testing.assert_allclose(z, [5.0, 20.0, 8.0])
    z, _ = sm(0.1, np.array([1, 2, -1]), np.array([6.0, 20.0, 9.0]), np.array([0.2, 1.0, 0.5]))
    assert 5.0 < z[0] < 6.0 and z[1] == pytest.approx(20.0) and z[2] == 9.0
    sm(2.0, np.array([2]), np.array([20.0]), np.array([1.0]))
    assert set(sm.filters) == {2}


# ---------------------------------------------------------------- zoom geometry


def test_zoom_crop_maps_back_exactly():
    img = np.zeros((480, 640, 3), np.uint8)
    img[220:230, 310:312] = 255  # a small blob whose centre is (311, 225) in continuous pixel coordinates
    box = np.array([300.0, 200.0, 320.0, 250.0])
    crop = crop_for_box(img, box, context=1.6, target_px=200, max_scale=4)
    assert crop.scale == pytest.approx(4.0, rel=0.02)
    pts = np.array([[[305.25, 210.5], [319.0, 249.0]]])
    in_crop = geometry.transform_pixels(
        __import__("torch").as_tensor(pts), crop.scale, (-crop.scale * crop.x0, -crop.scale * crop.y0)
    ).numpy()
    np.testing.assert_allclose(crop_to_image(in_crop, crop), pts, atol=1e-9)
    # The crop's pixel content agrees with that mapping (corner-aligned resize, as cv2.resize does).
    ys, xs = np.nonzero(crop.image[..., 0] > 128)
    centre = crop_to_image(np.array([[[xs.mean() + 0.5, ys.mean() + 0.5]]]), crop)[0, 0]
    np.testing.assert_allclose(centre, [311.0, 225.0], atol=0.3)


@pytest.mark.yolo
def test_zoom_improves_small_people(ckpt, tmp_path):
    """The bus image shrunk so people are ~50 px tall: zoom is used and raises mean keypoint confidence."""
    img = bus_image()
    small = cv2.resize(img, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)
    canvas = np.full((360, 480, 3), 114, np.uint8)
    canvas[100 : 100 + small.shape[0], 150 : 150 + small.shape[1]] = small
    cv2.imwrite(str(tmp_path / "small.png"), canvas)
    recs = {}
    for zoom in (True, False):
        out = tmp_path / f"zoom_{zoom}"
        summary = predict(
            cfg_for(tmp_path / "small.png", out, ckpt, f"zoom.enabled={zoom}", "intrinsics.hfov_deg=60")
        )
        recs[zoom] = read_jsonl(out / "predictions.jsonl")
        assert (summary["counts"]["zoom_uses"] > 0) == zoom
    assert any(r["zoomed"] for r in recs[True]) and not any(r["zoomed"] for r in recs[False])
    conf = {k: np.mean([r["mean_kp_conf"] for r in v]) for k, v in recs.items()}
    assert sum(r["zoomed"] for r in recs[True]) >= 2
    assert conf[True] > conf[False] + 0.02, conf
    for r in recs[True]:  # keypoints mapped back into the full image, near the person's box
        kp = np.asarray(r["keypoints_xyc"])
        x1, y1, x2, y2 = r["box_xyxy"]
        seen = kp[:, 2] > 0.5
        assert np.all(
            (kp[seen, 0] > x1 - 10)
            & (kp[seen, 0] < x2 + 10)
            & (kp[seen, 1] > y1 - 10)
            & (kp[seen, 1] < y2 + 10)
        )


# ---------------------------------------------------------------- end to end


def make_video(path: Path, n: int = 24, fps: float = 12.0, size=(480, 360)) -> None:
    """A virtual camera dollying into the bus image: people grow (come closer) and drift sideways."""
    img = bus_image()
    H, W = img.shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert vw.isOpened()
    for i in range(n):
        f = i / (n - 1)
        cw = int(W * (1.0 - 0.3 * f))
        ch = int(cw * size[1] / size[0])
        x0 = int((W - cw) * 0.3 * f)
        y0 = int((H - ch) * 0.5)
        vw.write(cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], size, interpolation=cv2.INTER_AREA))
    vw.release()


@pytest.mark.yolo
def test_video_tracking_and_smoothing_end_to_end(ckpt, tmp_path):
    video = tmp_path / "walk.mp4"
    make_video(video)
    out = tmp_path / "out"
    summary = predict(cfg_for(video, out, ckpt, "intrinsics.hfov_deg=60", "zoom.enabled=false"))
    c = summary["counts"]
    assert c["frames"] == 24 and c["failed"] == 0
    assert c["people"] >= 24 * 2 and c["tracks"] >= 2
    assert summary["fps"] > 0 and 0 < summary["time_share"]["depth"] < summary["time_share"]["detection"]
    recs = read_jsonl(out / "predictions.jsonl")
    assert len(recs) == c["people"]
    assert (out / "predictions.csv").read_text().count("\n") == len(recs) + 1
    by_track: dict[int, list[dict]] = {}
    for r in recs:
        assert r["track_id"] >= 0 and np.isfinite(r["z_m"]) and r["sigma_m"] > 0
        by_track.setdefault(r["track_id"], []).append(r)
    long_tracks = [v for v in by_track.values() if len(v) >= 18]
    assert len(long_tracks) >= 2  # the same people keep their ids across frames
    for v in long_tracks:
        z, z_raw = np.array([r["z_m"] for r in v]), np.array([r["z_raw_m"] for r in v])
        assert z[0] == pytest.approx(z_raw[0], rel=1e-5)  # a new track starts at its measurement
        assert not np.allclose(z[1:], z_raw[1:])  # smoothing is applied ...
        assert np.abs(np.diff(z)).sum() <= np.abs(np.diff(z_raw)).sum() + 1e-6  # ... and reduces jitter
        g, hip = np.array([r["ground_xyz_m"] for r in v]), np.array([r["hip_xyz_m"] for r in v])
        assert np.all(hip[:, 2] == pytest.approx(z, abs=1e-3))
        # The ground point lies in the vertical plane through the hip facing the camera (the records' up
        # direction: self-calibrated here, level when none)
        for r, gi, hi in zip(v, g, hip, strict=True):
            up = np.array([0.0, -1.0, 0.0])
            if r["pitch_deg"] is not None:
                up = geometry.up_from_pitch_roll(r["pitch_deg"], r["roll_deg"]).double().numpy()
            forward = np.array([0.0, 0.0, 1.0]) - up[2] * up
            assert abs((gi - hi) @ forward) / np.linalg.norm(forward) < 2e-3
    cap = cv2.VideoCapture(str(out / "walk_pred.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    cap.release()
    saved = json.loads((out / "summary.json").read_text())
    assert saved["counts"] == c


@pytest.mark.yolo
def test_folder_with_bad_files_is_processed_and_bad_ones_listed(ckpt, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.jpg"), cv2.resize(bus_image(), (405, 540)))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "clip.xyz").write_text("hello")
    (folder / "calib.json").write_text("{}")  # a sidecar: skipped, not an error
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="cannot be decoded"):
        summary = predict(cfg_for(folder, out, ckpt, "intrinsics.hfov_deg=70"))
    c = summary["counts"]
    assert (c["sources"], c["processed"], c["failed"]) == (4, 1, 3)
    assert c["people"] >= 3
    errs = {Path(e["source"]).name: e["error"] for e in summary["errors"]}
    assert set(errs) == {"corrupt.jpg", "empty.mp4", "clip.xyz"}
    assert [Path(p).name for p in summary["skipped"]] == ["calib.json"]
    assert "cannot be decoded" in errs["corrupt.jpg"] and "empty" in errs["empty.mp4"]
    assert "unsupported file extension" in errs["clip.xyz"]
    assert (out / "good.jpg").is_file() and (out / "summary.json").is_file()


@pytest.mark.yolo
def test_single_bad_sources_raise(ckpt, tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        resolve_source(str(tmp_path / "missing.jpg"))
    (tmp_path / "x.docx").write_text("x")
    with pytest.raises(SourceError, match="unsupported file extension"):
        resolve_source(str(tmp_path / "x.docx"))
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(PredictError, match="empty"), pytest.warns(UserWarning, match="empty"):
        predict(cfg_for(tmp_path / "zero.mp4", tmp_path / "o1", ckpt))
    assert json.loads((tmp_path / "o1" / "summary.json").read_text())["counts"]["failed"] == 1
    with (
        pytest.raises(PredictError, match="cannot be opened"),
        pytest.warns(UserWarning, match="camera '63'"),
    ):
        predict(cfg_for(63, tmp_path / "o2", ckpt))  # a camera index with no device


@pytest.mark.yolo
def test_cli_exits_nonzero_on_bad_source(ckpt, tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "depth_pose.cli.predict", f"source={bad}", f"out={tmp_path / 'o'}",
         f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'h'}"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "cannot be decoded" in proc.stderr and str(bad) in proc.stderr


def test_resolve_source_kinds(tmp_path, monkeypatch):
    for name in ("b.png", "a.jpg", "c.mp4"):
        (tmp_path / name).write_bytes(b"x")
    items, errors, _ = resolve_source(str(tmp_path / "*.jpg"))
    assert [i.name for i in items] == ["a.jpg"] and errors == []
    items, _, _ = resolve_source(str(tmp_path))
    assert [(i.kind, i.name) for i in items] == [("image", "a.jpg"), ("image", "b.png"), ("video", "c.mp4")]
    assert resolve_source("0")[0][0].kind == "camera" and resolve_source(2)[0][0].ref == 2
    assert resolve_source("rtsp://host:554/live")[0][0].kind == "stream"
    with pytest.raises(SourceError, match="no image or video"):
        resolve_source(str(tmp_path / "*.gif"))
    from depth_pose.predict.outputs import Viewer

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.warns(UserWarning, match="no display"):
        viewer = Viewer(True)
    assert not viewer.enabled and viewer.show(np.zeros((4, 4, 3), np.uint8))


def test_positions_ground_point_rules():
    from depth_pose.predict.positions import HIP_HEIGHT_M, positions
    from depth_pose.scene.floor import ANKLE_HEIGHT_M

    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    kp = np.zeros((2, 17, 3))
    kp[:, 11, :] = [300, 240, 0.9]  # hips
    kp[:, 12, :] = [340, 240, 0.9]
    kp[0, 15, :] = [310, 340, 0.9]  # ankles: person 0 only
    kp[0, 16, :] = [330, 340, 0.9]
    boxes = np.array([[290, 150, 350, 350], [290, 150, 350, 350]], float)
    hip, ground, rule = positions(kp, boxes, np.array([5.0, 5.0]), K, 0.3)
    np.testing.assert_allclose(hip[0], [0.0, 0.0, 5.0], atol=1e-9)  # mid-hip on the optical axis
    np.testing.assert_allclose(ground[0], [0.0, 100 / 500 * 5 + ANKLE_HEIGHT_M, 5.0], atol=1e-9)
    np.testing.assert_allclose(ground[1], [0.0, HIP_HEIGHT_M, 5.0], atol=1e-9)
    assert rule == ["ankles", "hip"]
    level = positions(kp, boxes, np.array([5.0, 5.0]), K, 0.3, up=np.array([0.0, -2.0, 0.0]))
    np.testing.assert_allclose(level[1], ground, atol=1e-12)  # a level up direction is the default


@pytest.mark.parametrize("pitch_deg, roll_deg", [(-30.0, 4.0), (-55.0, -8.0), (-88.0, 0.0)])
def test_positions_ground_point_follows_the_up_direction(pitch_deg, roll_deg):
    """A tilted camera's ground point is the floor under the person's hips: with the camera's up direction
    the point is right for the hip and the ankle rule; taking the camera as level puts it
    decimetres to metres off."""
    import torch

    from depth_pose.predict.positions import HIP_HEIGHT_M, positions

    K = np.array([[900.0, 0, 960], [0, 900, 540], [0, 0, 1]])
    R = geometry.camera_rotation(torch.tensor(np.radians(pitch_deg)), torch.tensor(np.radians(roll_deg)))
    R = R.double().numpy()
    cam = np.array([0.0, 0.0, 6.0])  # 6 m above the floor (world Z up)
    feet = np.array([[0.4, 7.0, 0.0], [-1.5, 12.0, 0.0], [0.3, 2.0, 0.0]])
    if pitch_deg < -80:
        feet = np.array([[0.6, 0.5, 0.0], [-1.2, 1.0, 0.0], [0.3, -0.4, 0.0]])  # under a camera looking down
    hips_w = feet + [0.0, 0.0, HIP_HEIGHT_M]
    ankles_w = feet + [0.0, 0.0, 0.09]

    def px(p_world):
        p = (p_world - cam) @ R.T
        return p[:, :2] / p[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2], p[:, 2]

    hip_px, z = px(hips_w)
    ank_px, _ = px(ankles_w)
    kp = np.zeros((3, 17, 3))
    kp[:, 11, :2] = kp[:, 12, :2] = hip_px
    kp[:, 15, :2] = kp[:, 16, :2] = ank_px
    kp[:, [11, 12, 15, 16], 2] = 0.9
    boxes = np.tile([0.0, 0.0, 10.0, 10.0], (3, 1))
    floor_cam = (feet - cam) @ R.T
    up = R @ np.array([0.0, 0.0, 1.0])
    _, ground, rule = positions(kp, boxes, z, K, 0.3, up=up)
    assert rule == ["ankles"] * 3
    np.testing.assert_allclose(ground, floor_cam, atol=1e-6)
    kp[:, [15, 16], 2] = 0.0  # ankles unseen: the hip rule
    _, ground, rule = positions(kp, boxes, z, K, 0.3, up=up)
    assert rule == ["hip"] * 3
    np.testing.assert_allclose(ground, floor_cam, atol=1e-6)
    _, level, _ = positions(kp, boxes, z, K, 0.3)
    assert np.linalg.norm(level - floor_cam, axis=1).min() > 0.1


@pytest.mark.yolo
def test_video_botsort_one_euro(ckpt, tmp_path):
    """The other tracker and filter: BoT-SORT ids persist and One-Euro smooths (short clip)."""
    video = tmp_path / "short.mp4"
    make_video(video, n=8)
    out = tmp_path / "out"
    summary = predict(
        cfg_for(video, out, ckpt, "tracking.tracker=botsort", "smoothing.method=one_euro",
                "intrinsics.fx=400", "save=false")
    )  # fmt: skip
    assert summary["counts"]["frames"] == 8 and summary["counts"]["tracks"] >= 2
    assert not list(out.glob("*.mp4"))
    recs = read_jsonl(out / "predictions.jsonl")
    assert all(r["track_id"] >= 0 and r["K_source"] == "fx/fy/cx/cy" for r in recs)
    later = [r for r in recs if r["frame"] > 0]
    assert any(abs(r["z_m"] - r["z_raw_m"]) > 1e-6 for r in later)
