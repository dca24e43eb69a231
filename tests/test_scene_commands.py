"""Scene self-calibration in the commands (depth_pose/scene_commands.py): dp-eval grouped by camera,
dp-predict on a video (two passes), on images of one camera and live (StreamScene), scene.save -> scene.load,
refused calibration files, and the fall-back to single-frame depths.

People are tests/scene_sim.py stick figures; the depth model is a stand-in (:class:`FakeDepth`: the true
mid-hip depth times a per-track size error and per-frame noise, looked up by the hip pixels), the detector a
fixed one (:class:`SceneDetector`: frame ``f`` of the scene in an image filled with grey ``20 f``), so no YOLO
and no trained model are needed.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from helpers import REPO, compose
from scene_sim import H, Scene, W, make_scene

from depth_pose.cli.shell import user_error
from depth_pose.detect import Detections
from depth_pose.errors import InputError
from depth_pose.scene import CalibrationMismatchError, SceneCalibration, SceneCalibrationError
from depth_pose.scene.calibration import MODEL_UP_MAX_SIGMA_DEG
from depth_pose.scene_commands import (
    CALIBRATED,
    FAILED,
    GIVEN_UP,
    SceneOptionsError,
    StreamScene,
    eval_scene_options,
    predict_scene_options,
    scene_line,
)

FRAMES = 8
MAIN = (4.0, -20.0, 0.0)  # height, pitch, roll: a camera the scene calibrates (a level floor, 60 people)
SECOND = (3.0, -30.0, 4.0)


def hip_key(kp: np.ndarray) -> tuple:
    """A person-frame's key: its hip pixels at float32 precision, 0.1 px."""
    return tuple(np.round(np.asarray(kp, np.float32)[[11, 12], :2].astype(np.float64), 1).ravel())


class FakeDepth:
    """A depth model that knows the scenes' people: their model depth by :func:`hip_key`."""

    uses_gravity = False
    metadata = {"source": "fake"}

    def __init__(self) -> None:
        self.table: dict[tuple, tuple[float, float]] = {}

    def add(self, kp: np.ndarray, z: np.ndarray, sigma: np.ndarray) -> FakeDepth:
        for k, zz, ss in zip(kp, z, sigma):
            self.table[hip_key(k)] = (float(zz), float(ss))
        return self

    def predict(self, kp, K, up=None):
        zs = np.array([self.table.get(hip_key(k), (10.0, 1.0)) for k in np.asarray(kp)]).reshape(-1, 2)
        return SimpleNamespace(z_m=zs[:, 0], sigma_m=zs[:, 1], status=np.full(len(zs), "ok"))


@functools.cache
def scene(cam: tuple[float, float, float], n_tracks: int = 60, seed: int = 0):
    """(scene, frame index (N,), model depth, model sigma)."""
    rng = np.random.default_rng(seed)
    sc = make_scene(rng, *cam, n_tracks=n_tracks, frames=FRAMES, outliers=0.1)
    z, sigma, _ = sc.model_depth(rng)
    ids, first = np.unique(sc.track, return_index=True)
    frame = np.arange(len(sc.track)) - first[np.searchsorted(ids, sc.track)]
    return sc, frame, z, sigma


def rel_err(z, true) -> float:
    return float(np.median(np.abs(np.asarray(z) / np.asarray(true) - 1.0)))


# ---- dp-eval: grouped by camera --------------------------------------------------------------------------


def eval_lines(
    truth_names=("camera_pitch_deg", "camera_roll_deg", "camera_height_m"), offset=0.0
) -> list[str]:
    """Three cameras (two that calibrate, one with two people) as JSONL lines with panoptic-style fields."""
    lines = []
    for cam_id, cam, n_tracks in (("main", MAIN, 60), ("second", SECOND, 60), ("few", MAIN, 2)):
        sc, frame, _, _ = scene(cam, n_tracks)
        for i in range(len(sc.track)):
            d = {
                "id": f"{cam_id}-{i}",
                "keypoints_xyc": sc.keypoints[i].tolist(),
                "K": sc.K.tolist(),
                "gt_z_m": float(sc.z_true[i]),
                "camera_id": cam_id,
                "person_id": int(sc.track[i]),
                "frame": int(frame[i]),
                "image_wh": [W, H],
                truth_names[0]: cam[1] + offset,
                truth_names[1]: cam[2] + offset,
                truth_names[2]: cam[0] + offset,
            }
            lines.append(json.dumps(d))
    return lines


def eval_fake() -> FakeDepth:
    fake = FakeDepth()
    for cam, n in ((MAIN, 60), (SECOND, 60), (MAIN, 2)):
        sc, _, z, sigma = scene(cam, n)
        fake.add(sc.keypoints, z, sigma)
    return fake


def run_eval(tmp_path: Path, monkeypatch, lines: list[str], *overrides: str, name: str = "o"):
    import depth_pose.evaluate as ev

    src = tmp_path / f"{name}.jsonl"
    src.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(ev, "load_predictor", lambda *a, **k: eval_fake())
    out = tmp_path / name / "pred.jsonl"
    cfg = compose("eval", [f"keypoints={src}", f"out={out}", "plots=false", "progress=false", *overrides])
    metrics = ev.evaluate(cfg)
    return metrics, [json.loads(s) for s in out.read_text().splitlines()]


def test_dp_eval_calibrates_each_camera_and_fuses(tmp_path, monkeypatch):
    metrics, rows = run_eval(tmp_path, monkeypatch, eval_lines(), "scene.group=camera_id")
    assert metrics["exit_code"] == 0  # a camera that cannot be calibrated is not an error
    m = metrics["scene"]
    cams = {c["camera"]: c for c in m["cameras"]}
    assert set(cams) == {"main", "second", "few"} and (m["n_calibrated"], m["n_failed"]) == (2, 1)
    for name, (height, pitch, roll) in (("main", MAIN), ("second", SECOND)):
        c = cams[name]
        assert c["status"] == CALIBRATED and c["planar"], c
        assert abs(c["pitch_deg"] - pitch) < 2.0 and abs(c["roll_deg"] - roll) < 2.0
        assert abs(c["height_m"] / height - 1.0) < 0.05
        assert c["sigma_pitch_deg"] > 0 and c["sigma_height_m"] > 0 and c["n_up_inliers"] >= 50
        assert c["truth"] == {"pitch_deg": pitch, "roll_deg": roll, "height_m": height}
        assert c["error"]["pitch_deg"] == pytest.approx(c["pitch_deg"] - pitch, abs=1e-3)
        assert c["median_rel_scene"] < 0.7 * c["median_rel_single"]  # ground contact + track scales
        assert c["depth_source"]["ground"] > 100
    few = cams["few"]
    assert few["status"] == FAILED and "person-frames" in few["why"] and few["pitch_deg"] is None
    # predictions: single-frame and scene-aware side by side
    by_cam: dict[str, list[dict]] = {}
    for r in rows:
        by_cam.setdefault(r["scene_camera"], []).append(r)
    for r in by_cam["few"]:
        assert (
            r["z_scene_m"] == r["z_pred_m"] and r["depth_source"] == "model" and r["scene_status"] == FAILED
        )
    main = by_cam["main"]
    gt = np.array([r["gt_z_m"] for r in main])
    assert rel_err([r["z_scene_m"] for r in main], gt) < 0.7 * rel_err([r["z_pred_m"] for r in main], gt)
    assert {r["depth_source"] for r in main} >= {"ground", "model"}
    assert m["scene"]["ale_m"] < m["single"]["ale_m"]
    assert "## Scene self-calibration" in (tmp_path / "o" / "report.md").read_text()


def test_dp_eval_calibrates_a_camera_under_the_up_its_lines_give(tmp_path, monkeypatch):
    """Lines that carry their camera's up direction (``pitch_deg`` / ``roll_deg``, all agreeing within 1 deg)
    calibrate that camera under it, as a given up (its height and floor measured), not under an estimate
    that would disagree with what the model was given; lines that disagree leave the up estimated (found by
    a hostile review: a per-line pitch of 0 under an estimated -29 deg)."""
    lines = []
    for line in eval_lines():
        d = json.loads(line)
        if d["camera_id"] == "main":
            d["pitch_deg"], d["roll_deg"] = MAIN[1], MAIN[2]
        elif d["camera_id"] == "second":  # one up per line, 3 deg apart: no camera-wide up
            d["pitch_deg"], d["roll_deg"] = SECOND[1] + (1.5 if len(lines) % 2 else -1.5), SECOND[2]
        lines.append(json.dumps(d))
    metrics, _ = run_eval(tmp_path, monkeypatch, lines, "scene.group=camera_id")
    cams = {c["camera"]: c for c in metrics["scene"]["cameras"]}
    main, second = cams["main"], cams["second"]
    assert main["origin"] == GIVEN_UP and main["pitch_deg"] == pytest.approx(MAIN[1], abs=1e-3)
    assert main["sigma_pitch_deg"] == 0 and abs(main["height_m"] / MAIN[0] - 1) < 0.05
    assert main["up_to_model"] is None  # the lines' own up, not an estimate
    assert second["origin"] == "estimated" and abs(second["pitch_deg"] - SECOND[1]) < 2.0


class GravityFake(FakeDepth):
    """:class:`FakeDepth` with an up-direction input: records the up each person-frame was last given."""

    uses_gravity = True

    def __init__(self) -> None:
        super().__init__()
        self.ups: dict[tuple, np.ndarray | None] = {}

    def predict(self, kp, K, up=None):
        ups = [None] * len(kp) if up is None else np.broadcast_to(np.asarray(up), (len(kp), 3))
        for k, u in zip(np.asarray(kp), ups):
            self.ups[hip_key(k)] = u if u is not None and np.isfinite(u).all() else None  # NaN: none
        return super().predict(kp, K)


def test_dp_eval_gives_a_gravity_model_only_a_precise_estimated_up(tmp_path, monkeypatch):
    """Grouped by camera, a gravity model is run again with its camera's estimated up only where that up is
    known within MODEL_UP_MAX_SIGMA_DEG (60 people); six people's looser up is reported, not given to the
    model."""
    import depth_pose.evaluate as ev

    loose_cam = (3.0, -30.0, 4.0)  # six people: an up within 5 deg (reported), looser than 1 deg
    lines = [ln for ln in eval_lines() if json.loads(ln)["camera_id"] == "main"]
    sc6, frame6, z6, s6 = scene(loose_cam, 6)
    for i in range(len(sc6.track)):
        d = {"id": f"loose-{i}", "keypoints_xyc": sc6.keypoints[i].tolist(), "K": sc6.K.tolist()}
        d |= {"gt_z_m": float(sc6.z_true[i]), "camera_id": "loose", "person_id": int(sc6.track[i])}
        lines.append(json.dumps(d | {"frame": int(frame6[i]), "image_wh": [W, H]}))
    fake = GravityFake().add(sc6.keypoints, z6, s6)
    sc, _, z, sigma = scene(MAIN, 60)
    fake.add(sc.keypoints, z, sigma)
    src = tmp_path / "g.jsonl"
    src.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(ev, "load_predictor", lambda *a, **k: fake)
    out = tmp_path / "g" / "p.jsonl"
    over = [f"keypoints={src}", f"out={out}", "plots=false", "progress=false", "scene.group=camera_id"]
    m = ev.evaluate(compose("eval", over))["scene"]
    cams = {c["camera"]: c for c in m["cameras"]}
    main, loose = cams["main"], cams["loose"]
    assert main["status"] == CALIBRATED and main["up_to_model"] is True
    assert main["sigma_up_deg"] <= MODEL_UP_MAX_SIGMA_DEG < loose["sigma_up_deg"] <= 5.0
    assert loose["status"] != FAILED and loose["up_to_model"] is False
    for kp in sc.keypoints:
        assert np.allclose(fake.ups[hip_key(kp)], main["up_cam"], atol=1e-5)
    assert all(fake.ups[hip_key(kp)] is None for kp in sc6.keypoints)


def test_reported_camera_values_are_never_input(tmp_path, monkeypatch):
    """The panoptic-style camera_pitch_deg / camera_height_m are reported against, not used: shifting them
    changes nothing but the reported errors; scene.truth_fields names other fields."""
    base, _ = run_eval(tmp_path, monkeypatch, eval_lines(), "scene.group=camera_id", name="a")
    shifted, rows = run_eval(
        tmp_path, monkeypatch, eval_lines(offset=10.0), "scene.calibrate=true", name="b"
    )  # scene.calibrate=true: grouped by camera_id
    for a, b in zip(base["scene"]["cameras"], shifted["scene"]["cameras"]):
        assert a["pitch_deg"] == b["pitch_deg"] and a["height_m"] == b["height_m"]
        if a["status"] == CALIBRATED:
            assert b["error"]["pitch_deg"] == pytest.approx(a["error"]["pitch_deg"] - 10.0, abs=1e-3)
    renamed, _ = run_eval(
        tmp_path,
        monkeypatch,
        eval_lines(("p", "r", "h")),
        "scene.group=camera_id",
        "scene.truth_fields.pitch_deg=p",
        "scene.truth_fields.roll_deg=null",
        "scene.truth_fields.height_m=h",
        name="c",
    )
    cam = renamed["scene"]["cameras"][0]
    assert set(cam["truth"]) == {"pitch_deg", "height_m"}
    assert cam["error"]["pitch_deg"] == pytest.approx(base["scene"]["cameras"][0]["error"]["pitch_deg"])


def test_dp_eval_odd_ids_and_values(tmp_path, monkeypatch):
    """NaN track ids are no track (not one track pooling everybody), NaN camera ids no camera; a truth value
    too long for a float is ignored; scene.truth_fields=null reports none; a line with a number beyond
    Python's integer parsing is left out (exit 3), never a traceback."""
    lines = eval_lines()
    plain, _ = run_eval(tmp_path, monkeypatch, lines, "scene.group=camera_id", name="plain")
    untracked = [json.dumps({**json.loads(s), "person_id": None}) for s in lines]
    ref, _ = run_eval(tmp_path, monkeypatch, untracked, "scene.group=camera_id", name="untracked")
    nan_tracks = [s.replace('"person_id": ', '"person_id": NaN, "x": ') for s in lines]
    got, _ = run_eval(tmp_path, monkeypatch, nan_tracks, "scene.group=camera_id", name="nan_tracks")
    assert got["scene"]["cameras"] == ref["scene"]["cameras"]
    assert got["scene"]["cameras"] != plain["scene"]["cameras"]  # tracks matter: the test can tell
    odd = [json.loads(s) for s in lines]
    for d in odd:
        if d["camera_id"] == "second":
            d["camera_id"] = math.nan
        if d["camera_id"] == "main":
            d["camera_height_m"] = 10**400
    odd_lines = [json.dumps(d) for d in odd] + ['{"id": "big", "gt_z_m": ' + "9" * 5000 + "}"]
    got, _ = run_eval(tmp_path, monkeypatch, odd_lines, "scene.group=camera_id", name="odd")
    cams = {c["camera"]: c for c in got["scene"]["cameras"]}
    assert set(cams) == {"main", "few"} and got["scene"]["n_without_camera"] == sum(
        json.loads(s)["camera_id"] == "second" for s in lines
    )
    assert cams["main"]["truth"].get("height_m") is None and got["exit_code"] == 3
    none, _ = run_eval(
        tmp_path, monkeypatch, lines, "scene.group=camera_id", "scene.truth_fields=null", name="none"
    )
    assert all(not c.get("truth") for c in none["scene"]["cameras"])


def test_camera_ids_that_print_alike_stay_two_cameras(tmp_path, monkeypatch):
    """JSON ids 1 and "1" are two cameras (1 and 1.0 one; 2**53 and 2**53 + 1 two), named with their kind;
    dp-eval keeps them apart."""
    from depth_pose.scene_commands import camera_names, track_codes

    assert camera_names([1, "1", 1.0, None, "main", True, "true", 2.5, math.nan]) == [
        "1 (number)", "1 (str)", "1 (number)", None, "main", "true (bool)", "true (str)", "2.5", None
    ]  # fmt: skip
    assert camera_names([2**53, 2**53 + 1, 10**400])[:2] == ["9007199254740992", "9007199254740993"]
    for ids in (
        [1, "1", '"1"', "1 (str)"],
        [1, "1", "1 (str)", "1 (str) #2"],
        ["1 (str) #2", 1, "1", "1 (str)"],
    ):
        assert len(set(camera_names(ids))) == len(ids), ids  # no derived name is some other camera's
    assert track_codes([1, 1.0, "1", None, True]).tolist() == [0, 0, 1, -1, 2]  # tracks: the same identity
    lines = eval_lines()
    plain, _ = run_eval(tmp_path, monkeypatch, lines, "scene.group=camera_id", name="plain")
    mixed = [json.loads(s) for s in lines]
    for d in mixed:
        if d["camera_id"] == "main":
            d["camera_id"] = 7
        elif d["camera_id"] == "few":
            d["camera_id"] = "7"
    got, _ = run_eval(
        tmp_path, monkeypatch, [json.dumps(d) for d in mixed], "scene.group=camera_id", name="m"
    )
    n = {c["camera"]: c["n"] for c in got["scene"]["cameras"]}
    want = {c["camera"]: c["n"] for c in plain["scene"]["cameras"]}
    assert n == {"7 (number)": want["main"], "7 (str)": want["few"], "second": want["second"]}


def test_dp_eval_names_cameras_it_cannot_calibrate(tmp_path, monkeypatch, caplog):
    """One warning line for the cameras left single-frame; an odd camera name stays one table cell."""
    lines = [s.replace('"camera_id": "few"', '"camera_id": "f|e\\nw"') for s in eval_lines()]
    with caplog.at_level("WARNING", logger="depth_pose.evaluate"):
        run_eval(tmp_path, monkeypatch, lines, "scene.group=camera_id")
    said = [r.getMessage() for r in caplog.records if "keep single-frame depths" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("scene: 1 of 3 cameras") and "failed:" in said[0]
    rows = [r for r in (tmp_path / "o" / "report.md").read_text().splitlines() if r.startswith("| f\\|")]
    assert len(rows) == 1 and rows[0].startswith("| f\\|e w | ")


def test_dp_eval_scene_option_errors(tmp_path, monkeypatch):
    lines = eval_lines()[:3]
    with pytest.raises(InputError, match="no usable line of .* has a 'cam' value"):
        run_eval(tmp_path, monkeypatch, lines, "scene.group=cam")
    with pytest.raises(SceneOptionsError, match="scene.calibrate must be auto, true or false"):
        eval_scene_options({"calibrate": "sometimes"})
    with pytest.raises(SceneOptionsError, match="dp-predict option"):
        eval_scene_options({"save": "x.json"})
    assert not eval_scene_options({"calibrate": "auto"}).enabled
    assert eval_scene_options({"calibrate": True}).group == "camera_id"


# ---- dp-predict --------------------------------------------------------------------------------------------


class SceneDetector:
    """Frame ``f`` of the scene's person-frames (tracked: the track ids) in any image of grey level 20 f."""

    def __init__(self, sc: Scene, frame: np.ndarray) -> None:
        self.sc, self.frame = sc, frame

    def dets(self, image: np.ndarray) -> Detections:
        f = int(round(float(image.mean()) / 20.0))
        sel = np.flatnonzero(self.frame == f)
        kp = self.sc.keypoints[sel].astype(np.float32)
        seen = np.where(kp[..., 2:] > 0, kp[..., :2], np.nan)
        boxes = np.concatenate([np.nanmin(seen, 1), np.nanmax(seen, 1)], 1).astype(np.float32)
        return Detections(boxes, np.full(len(sel), 0.9, np.float32), kp, self.sc.track[sel].astype(np.int64))

    def __call__(self, images, imgsz=None) -> list[Detections]:
        out = []
        for im in images if isinstance(images, list) else [images]:
            d = self.dets(im)
            out.append(Detections(d.boxes, d.scores, d.keypoints))
        return out

    def track(self, image: np.ndarray, tracker: str = "") -> Detections:
        return self.dets(image)


def grey(f: int, size=(W, H)) -> np.ndarray:
    return np.full((size[1], size[0], 3), 20 * f, np.uint8)


def write_video(path: Path, frames: int = FRAMES, size=(W, H)) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    assert vw.isOpened()
    for f in range(frames):
        vw.write(grey(f, size))
    vw.release()
    return path


def k_overrides(K: np.ndarray) -> list[str]:
    return [f"intrinsics.fx={K[0, 0]}", f"intrinsics.fy={K[1, 1]}", f"intrinsics.cx={K[0, 2]}",
            f"intrinsics.cy={K[1, 2]}"]  # fmt: skip


def run_predict(
    tmp_path: Path, source: Path, cam=MAIN, n_tracks: int = 60, *overrides: str, name="out", model=None
):
    from depth_pose.predict.run import predict

    sc, frame, z, sigma = scene(cam, n_tracks)
    out = tmp_path / name
    cfg = compose(
        "predict",
        [f"source={source}", f"out={out}", "progress=false", "save=false", "zoom.enabled=false",
         *k_overrides(sc.K), *overrides],
    )  # fmt: skip
    model = (model or FakeDepth()).add(sc.keypoints, z, sigma)
    summary = predict(cfg, depth_model=model, detector=SceneDetector(sc, frame))
    recs = [json.loads(s) for s in (out / "predictions.jsonl").read_text().splitlines()]
    return summary, recs, sc, frame


def true_depth(recs: list[dict], sc: Scene, frame: np.ndarray) -> np.ndarray:
    """The true mid-hip depth of each record (by frame and track)."""
    where = {(int(f), int(t)): i for i, (f, t) in enumerate(zip(frame, sc.track))}
    return np.array([sc.z_true[where[(r["frame"], r["track_id"])]] for r in recs])


def test_dp_predict_video_save_then_load(tmp_path):
    video = write_video(tmp_path / "cctv.mp4")
    saved = tmp_path / "calib" / "scene.json"
    summary, recs, sc, frame = run_predict(tmp_path, video, MAIN, 60, f"scene.save={saved}")
    cam = summary["scene"]["cameras"][0]
    assert cam["status"] == CALIBRATED and cam["origin"] == "estimated" and summary["scene"]["saved"]
    assert abs(cam["pitch_deg"] - MAIN[1]) < 2.0 and abs(cam["height_m"] / MAIN[0] - 1) < 0.05
    assert cam["n_up_inliers"] > 50 and cam["sigma_height_m"] > 0
    assert summary["counts"]["depth_source"]["ground"] > 100
    assert len(recs) == len(sc.track) and {"z_single_m", "depth_source", "z_raw_m"} <= set(recs[0])
    true = true_depth(recs, sc, frame)
    single = rel_err([r["z_single_m"] for r in recs], true)
    assert rel_err([r["z_raw_m"] for r in recs], true) < 0.7 * single  # fused, before smoothing
    assert rel_err([r["z_m"] for r in recs], true) < 0.8 * single
    assert json.loads(saved.read_text())["format"] == "depth_pose.scene_calibration"
    header = (tmp_path / "out" / "predictions.csv").read_text().splitlines()[0].split(",")
    assert {"z_single_m", "depth_source"} <= set(header)
    # the saved calibration, loaded for the same camera: the same fused depths, nothing estimated
    summary2, recs2, _, _ = run_predict(tmp_path, video, MAIN, 60, f"scene.load={saved}", name="out2")
    cam2 = summary2["scene"]["cameras"][0]
    assert cam2["origin"] == f"loaded:{saved}" and cam2["pitch_deg"] == pytest.approx(cam["pitch_deg"])
    np.testing.assert_allclose([r["z_raw_m"] for r in recs2], [r["z_raw_m"] for r in recs], rtol=1e-9)
    assert [r["depth_source"] for r in recs2] == [r["depth_source"] for r in recs]


def test_dp_predict_video_gives_a_gravity_model_only_a_precise_estimated_up(tmp_path):
    """A video's estimated up reaches a gravity model (its second pass) only when known within
    MODEL_UP_MAX_SIGMA_DEG: 60 people's does; six people's looser one is reported but not given, and the
    console line says so. An up the user gives goes to the model whatever the estimate (``up_to_model``
    null); a model without the gravity input is never asked (null too)."""
    video = write_video(tmp_path / "v.mp4")
    loose = (3.0, -30.0, 4.0)
    for cam, n, given in ((MAIN, 60, True), (loose, 6, False)):
        fake = GravityFake()
        summary, recs, sc, _ = run_predict(tmp_path, video, cam, n, name=f"o{n}", model=fake)
        c = summary["scene"]["cameras"][0]
        assert c["status"] != FAILED and c["up_to_model"] is given
        assert (c["sigma_up_deg"] <= MODEL_UP_MAX_SIGMA_DEG) is given
        assert ("not given to the depth model" in scene_line("v", c)) is not given
        assert all(r["pitch_deg"] == pytest.approx(c["pitch_deg"], abs=1e-3) for r in recs)  # reported
        for kp in sc.keypoints:
            u = fake.ups[hip_key(kp)]
            assert u is None if not given else np.allclose(u, c["up_cam"], atol=1e-5)
    fake = GravityFake()
    sc6, _, _, _ = scene(loose, 6)
    up = "scene.up_cam=[" + ",".join(f"{v:.9f}" for v in sc6.up) + "]"
    summary, _, _, _ = run_predict(tmp_path, video, loose, 6, up, name="given", model=fake)
    c = summary["scene"]["cameras"][0]
    assert c["up_to_model"] is None and "not given" not in scene_line("v", c)
    assert all(np.allclose(fake.ups[hip_key(kp)], sc6.up, atol=1e-6) for kp in sc6.keypoints)
    summary, _, _, _ = run_predict(tmp_path, video, loose, 6, name="plain")
    assert summary["scene"]["cameras"][0]["up_to_model"] is None


def test_dp_predict_images_and_a_loaded_calibration_gate_the_up_alike(tmp_path):
    """Images taken as one camera (``scene.calibrate=true``, no tracks): the estimated up reaches a gravity
    model as from a video when known within MODEL_UP_MAX_SIGMA_DEG. A loaded calibration is gated by its own
    sigma: six people's saved looser up is not given to the model when loaded."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in range(FRAMES):
        cv2.imwrite(str(folder / f"f{f}.png"), grey(f))
    fake = GravityFake()
    summary, _, sc, _ = run_predict(tmp_path, folder, MAIN, 60, "scene.calibrate=true", name="i", model=fake)
    c = summary["scene"]["cameras"][0]
    assert c["sigma_up_deg"] <= MODEL_UP_MAX_SIGMA_DEG and c["up_to_model"] is True
    assert all(np.allclose(fake.ups[hip_key(kp)], c["up_cam"], atol=1e-5) for kp in sc.keypoints)
    video, saved = write_video(tmp_path / "v.mp4"), tmp_path / "loose.json"
    loose = (3.0, -30.0, 4.0)
    run_predict(tmp_path, video, loose, 6, f"scene.save={saved}", name="s")
    assert SceneCalibration.load(saved).sigma_up_deg > MODEL_UP_MAX_SIGMA_DEG
    fake = GravityFake()
    summary, _, sc6, _ = run_predict(tmp_path, video, loose, 6, f"scene.load={saved}", name="l", model=fake)
    c = summary["scene"]["cameras"][0]
    assert c["origin"] == f"loaded:{saved}" and c["up_to_model"] is False
    assert all(fake.ups[hip_key(kp)] is None for kp in sc6.keypoints)


def test_dp_predict_load_refuses_another_camera(tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=1)
    saved = tmp_path / "scene.json"
    sc, _, _, _ = scene(MAIN)
    summary, _, _, _ = run_predict(tmp_path, write_video(tmp_path / "full.mp4"), MAIN, 60,
                                   f"scene.save={saved}", name="calib_src")  # fmt: skip
    assert summary["scene"]["saved"]
    K = sc.K.copy()
    K[0, 0] *= 1.02
    with pytest.raises(CalibrationMismatchError, match="intrinsics") as e:
        run_predict(tmp_path, video, MAIN, 60, f"scene.load={saved}", f"intrinsics.fx={K[0, 0]}", name="o1")
    assert isinstance(user_error(e.value), InputError) and "\n" not in str(e.value)
    big = write_video(tmp_path / "big.mp4", frames=1, size=(1920, 1080))
    with pytest.raises(CalibrationMismatchError, match="1280x720 images, but these are 1920x1080"):
        run_predict(tmp_path, big, MAIN, 60, f"scene.load={saved}", name="o2")
    # scene.save never writes over an input, and needs a camera the run calibrates
    with pytest.raises(InputError, match="scene.save"):
        run_predict(tmp_path, video, MAIN, 60, f"scene.save={video}", name="o3")
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), grey(0))
    with pytest.raises(InputError, match="this run calibrates no camera"):
        run_predict(tmp_path, image, MAIN, 60, f"scene.save={tmp_path / 'new.json'}", name="o4")
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()


def test_dp_predict_stream_calibrates_live_and_saves(tmp_path, monkeypatch):
    """A camera or stream (here a video file opened as one): single-frame depths until
    ``scene.stream_person_frames`` have come, then calibrated, fused and saved."""
    import depth_pose.predict.run as run_mod
    from depth_pose.predict.sources import Item

    video = write_video(tmp_path / "live.mp4")
    monkeypatch.setattr(run_mod, "resolve_source", lambda src: ([Item("stream", str(video), "cam")], [], []))
    sc, frame, _, _ = scene(MAIN)
    every = int((frame < 4).sum())
    saved = tmp_path / "live.json"
    fake = GravityFake()
    summary, recs, _, _ = run_predict(
        tmp_path,
        "rtsp://camera",
        MAIN,
        60,
        f"scene.stream_person_frames={every}",
        f"scene.save={saved}",
        model=fake,
    )
    cam = summary["scene"]["cameras"][0]
    assert cam["status"] == CALIBRATED and cam["calibrated_after_person_frames"] == every
    assert abs(cam["pitch_deg"] - MAIN[1]) < 2.0 and summary["scene"]["saved"]
    assert len(recs) == len(sc.track)
    early = {r["depth_source"] for r in recs if r["frame"] < 3}
    late = {r["depth_source"] for r in recs if r["frame"] >= 4}
    assert early == {"model"} and "ground" in late
    assert SceneCalibration.load(saved).height_m == pytest.approx(cam["height_m"], abs=1e-4)
    # a gravity model: no up before the calibration, the estimated one (known within 1 deg) after it
    assert cam["up_to_model"] is True
    for f, kp in zip(frame, sc.keypoints, strict=True):
        u = fake.ups[hip_key(kp)]
        assert u is None if f < 4 else np.allclose(u, cam["up_cam"], atol=1e-5), (f, u)


def test_dp_predict_stream_with_a_given_mount_saves_it(tmp_path, monkeypatch):
    """A stream whose mount the user gives (up and height) is never fitted; ``scene.save`` still writes that
    calibration, as for a video (found by a hostile review: nothing saved, no warning)."""
    import depth_pose.predict.run as run_mod
    from depth_pose.predict.sources import Item

    video = write_video(tmp_path / "live.mp4")
    monkeypatch.setattr(run_mod, "resolve_source", lambda src: ([Item("stream", str(video), "cam")], [], []))
    saved = tmp_path / "given.json"
    height, pitch = MAIN[0], MAIN[1]
    summary, _, _, _ = run_predict(
        tmp_path, "rtsp://camera", MAIN, 60, f"scene.pitch_deg={pitch}", f"scene.height_m={height}",
        f"scene.save={saved}",
    )  # fmt: skip
    assert summary["scene"]["saved"] and summary["scene"]["cameras"][0]["origin"] == "given"
    calib = SceneCalibration.load(saved)
    assert calib.height_m == pytest.approx(height) and calib.pitch_deg == pytest.approx(pitch, abs=1e-4)


def test_dp_predict_scene_inputs_and_outputs_are_safe(tmp_path):
    """scene.save never lands on the model, an image or video of the run, or under a file; a loaded
    calibration that contradicts the given up direction is refused; a late refusal (another camera's
    calibration) leaves an earlier run's records as they were."""
    from depth_pose.predictor import DEFAULT_MODEL

    video = write_video(tmp_path / "cctv.mp4")
    saved = tmp_path / "scene.json"
    summary, recs, _, _ = run_predict(tmp_path, video, MAIN, 60, f"scene.save={saved}", "save=true")
    assert summary["scene"]["saved"] and (tmp_path / "out" / "cctv_pred.mp4").exists()
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    model_json = DEFAULT_MODEL.with_suffix(".json")
    for target, message in (
        (model_json, "is the input ckpt"),
        (tmp_path / "out" / "cctv_pred.mp4", "ending in .json"),
        (tmp_path / "cctv.json" / "s.json", "which is a file"),
    ):
        if target.name == "s.json":
            (tmp_path / "cctv.json").write_text("{}")
        with pytest.raises(InputError, match=message):
            run_predict(tmp_path, video, MAIN, 60, f"scene.save={target}", name="o_save")
    assert not (tmp_path / "o_save").exists()
    with pytest.raises(InputError, match="disagree by 2[0-9].[0-9] degrees"):
        run_predict(tmp_path, video, MAIN, 60, f"scene.load={saved}", "scene.pitch_deg=0", name="o_up")
    # the same file for another camera: refused once that camera's frames come, the earlier records kept
    K = scene(MAIN)[0].K.copy()
    with pytest.raises(CalibrationMismatchError):
        run_predict(tmp_path, video, MAIN, 60, f"scene.load={saved}", f"intrinsics.fx={K[0, 0] * 1.02}")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_dp_predict_given_up_direction_is_kept_and_the_height_measured_under_it(tmp_path):
    """The user's pitch and roll without a height: the floor and the height are measured under that up
    direction (not a re-estimated one), used and saved as given; a calibration file's up direction that
    contradicts a loaded scene is refused like a scene.* one."""
    video = write_video(tmp_path / "cctv.mp4")
    saved = tmp_path / "given_up.json"
    summary, recs, sc, frame = run_predict(
        tmp_path, video, MAIN, 60, f"scene.pitch_deg={MAIN[1]}", f"scene.roll_deg={MAIN[2]}",
        f"scene.save={saved}",
    )  # fmt: skip
    cam = summary["scene"]["cameras"][0]
    assert cam["origin"] == "given up, estimated height" and cam["status"] == CALIBRATED
    assert cam["pitch_deg"] == pytest.approx(MAIN[1], abs=1e-4) and cam["sigma_pitch_deg"] == 0.0
    assert abs(cam["height_m"] / MAIN[0] - 1) < 0.05 and cam["n_height_inliers"] > 50
    assert SceneCalibration.load(saved).pitch_deg == pytest.approx(MAIN[1], abs=1e-4)
    true = true_depth(recs, sc, frame)
    assert rel_err([r["z_raw_m"] for r in recs], true) < 0.7 * rel_err([r["z_single_m"] for r in recs], true)
    # the same up direction, 10 degrees off: kept as given (the fit does not move it back to the people's)
    summary, _, _, _ = run_predict(
        tmp_path, video, MAIN, 60, f"scene.pitch_deg={MAIN[1] - 10}", f"scene.roll_deg={MAIN[2]}", name="off"
    )
    assert summary["scene"]["cameras"][0]["pitch_deg"] == pytest.approx(MAIN[1] - 10, abs=1e-4)
    calib = tmp_path / "K.json"
    calib.write_text(json.dumps({"K": scene(MAIN)[0].K.tolist(), "pitch_deg": 0.0, "roll_deg": 0.0}))
    with pytest.raises(InputError, match="from calib:.* disagree by 20.0 degrees"):
        run_predict(tmp_path, video, MAIN, 60, f"intrinsics.calib={calib}", f"scene.load={saved}", name="o")
    assert not (tmp_path / "o").exists()


def test_dp_predict_images_of_two_cameras_refuse_one_save(tmp_path):
    """``scene.save`` with images of two sizes (two cameras, known only once read): exit 2, nothing written;
    ``scene.height_m`` that no camera of the run can use is said so."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in range(FRAMES):
        cv2.imwrite(str(folder / f"f{f}.png"), grey(f, (W, H) if f % 2 else (W // 2, H // 2)))
    with pytest.raises(InputError, match="come from 2 cameras"):
        run_predict(tmp_path, folder, MAIN, 60, "scene.calibrate=true", f"scene.save={tmp_path / 's.json'}")
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "out" / "predictions.jsonl").exists()
    with pytest.warns(UserWarning, match="scene.height_m=4 is not used"):
        run_predict(tmp_path, folder, MAIN, 60, "scene.height_m=4", name="o_h")


def test_dp_predict_cli_malformed_calibration_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "scene.json"
    bad.write_text(
        json.dumps({"format": "depth_pose.scene_calibration", "version": 1, "K": [[1, 0], [0, 1]]})
    )
    write_video(tmp_path / "v.mp4", frames=1)
    exe = Path(sys.executable).parent / "dp-predict"
    r = subprocess.run(
        [str(exe), "source=v.mp4", "out=res", f"scene.load={bad}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [s for s in r.stderr.splitlines() if s.strip()]
    assert len(errors) == 1 and errors[0].startswith("dp-predict: error: scene calibration '")
    assert "missing keys" in errors[0] and not (tmp_path / "res").exists()


def test_dp_predict_falls_back_to_single_frame(tmp_path):
    video = write_video(tmp_path / "two.mp4")
    with pytest.warns(UserWarning, match=r"scene two\.mp4: not calibrated .* single-frame depths"):
        summary, recs, _, _ = run_predict(tmp_path, video, MAIN, 2)
    cam = summary["scene"]["cameras"][0]
    assert cam["status"] == FAILED and summary["errors"] == []
    assert all(r["depth_source"] == "model" and r["z_raw_m"] == r["z_single_m"] for r in recs)
    # images of one camera (scene.calibrate=true): pooled, each frame an image, no tracks
    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in range(FRAMES):
        cv2.imwrite(str(folder / f"f{f}.png"), grey(f))
    summary, recs, sc, frame = run_predict(tmp_path, folder, MAIN, 60, "scene.calibrate=true", name="img")
    cam = summary["scene"]["cameras"][0]
    assert cam["source"] == "images" and cam["status"] == CALIBRATED and len(recs) == len(sc.track)
    assert {r["depth_source"] for r in recs} >= {"ground", "model"}
    # ... and without scene.calibrate=true images are not calibrated
    summary, recs, _, _ = run_predict(tmp_path, folder, MAIN, 60, name="img2")
    assert summary["scene"]["cameras"] == [] and all(r["depth_source"] == "model" for r in recs)


def test_predict_scene_options():
    assert predict_scene_options({}).calibrate == "auto"
    assert predict_scene_options({"calibrate": False}).calibrate == "false"
    for block, message in (
        ({"calibrate": "false", "height_m": 3.0}, "scene.calibrate=false .* scene.height_m"),
        ({"height_m": -1.0}, r"scene.height_m must be in \(0, 1000\]"),
        ({"load": "a.json", "save": "b.json"}, "not estimated again"),
        ({"stream_person_frames": 3}, "integer >= 10"),
        ({"group": "camera_id"}, "scene.group is a dp-eval option, not dp-predict's"),
        ({"truth_fields": None}, "scene.truth_fields is a dp-eval option"),
    ):
        with pytest.raises(SceneOptionsError, match=message):
            predict_scene_options(block)
    with pytest.raises(SceneCalibrationError):
        from depth_pose.scene import SceneCalibration

        SceneCalibration.load(Path("/nonexistent/scene.json"))


def test_stream_calibrates_after_the_first_person_frames():
    """Live: single-frame depths until ``every`` person-frames have come, then fused."""
    sc, frame, z, sigma = scene(MAIN)
    every = int((frame < 4).sum())
    live = StreamScene(sc.K, (W, H), every)
    sources, z_out = [], []
    for f in range(FRAMES):
        sel = np.flatnonzero(frame == f)
        fused = live.add(sc.keypoints[sel], z[sel], sigma[sel], sc.track[sel])
        sources.append(set(fused.source))
        z_out.append((sel, fused.z))
    assert all(s == {"model"} for s in sources[:3]) and "ground" in sources[3]
    assert live.calibrated_after == every and live.entry(gravity=False)["status"] == CALIBRATED
    late = np.concatenate([sel for sel, _ in z_out[4:]])
    z_late = np.concatenate([zz for _, zz in z_out[4:]])
    assert rel_err(z_late, sc.z_true[late]) < 0.7 * rel_err(z[late], sc.z_true[late])
    assert abs(live.entry(gravity=False)["pitch_deg"] - MAIN[1]) < 2.0 and math.isfinite(
        live.entry(gravity=False)["height_m"]
    )


def test_scene_keys_are_documented():
    readme = (REPO / "README.md").read_text()
    for key in ("scene.calibrate", "scene.height_m", "scene.save", "scene.load", "scene.group",
                "scene.truth_fields", "z_single_m", "depth_source"):  # fmt: skip
        assert key in readme, key
