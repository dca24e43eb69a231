"""Where the camera's up direction enters (depth_pose/gravity.py): dp-eval's per-line JSONL fields and
``scene.*`` (keypoints= and images=), dp-predict's ``scene.*`` and calibration files. What reaches the model
is checked against ``DepthPredictor.predict(kp, K, up=...)`` called directly; the sign convention (a camera
tilted down 30 degrees, rolled +10) is followed through every entry point to the pitch/roll each records."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import compose
from test_eval_cli import K, line, person, run_cli

from depth_pose import geometry
from depth_pose.cli.shell import user_error
from depth_pose.detect import Detections
from depth_pose.eval.io import EvalInputError, read_keypoints_jsonl
from depth_pose.gravity import GravityInputError
from depth_pose.predict.intrinsics import IntrinsicsError

PITCH, ROLL = -30.0, 10.0  # looking down 30 degrees, the scene rotated clockwise 10 degrees in the image


def tilted_up() -> np.ndarray:
    """up_cam of the tilted camera: column 2 of its world->camera rotation (the generator's convention)."""
    R = geometry.camera_rotation(torch.tensor(math.radians(PITCH)), torch.tensor(math.radians(ROLL)))
    return R[:, 2].double().numpy()


def up_of(pitch: float, roll: float) -> np.ndarray:
    return geometry.up_from_pitch_roll(pitch, roll).double().numpy()


def as_override(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.9g}" for x in v) + "]"


@pytest.fixture(scope="module")
def gravity_model(tmp_path_factory) -> Path:
    """An untrained model with the gravity input (random weights: the contract, not the accuracy)."""
    from depth_pose.models.module import DepthModule
    from depth_pose.predictor import export_model

    torch.manual_seed(0)
    m = DepthModule(features={"name": "normalised", "gravity": True})
    m.set_target_stats(0.0, 1.0, 10.0)
    return export_model(m, tmp_path_factory.mktemp("gmodel") / "gravity.safetensors", {"note": "test"})


@pytest.fixture(scope="module")
def gpred(gravity_model):
    from depth_pose.predictor import DepthPredictor

    p = DepthPredictor.load(gravity_model)
    assert p.uses_gravity
    return p


def run_eval(tmp_path: Path, ckpt, *overrides: str, name: str = "o") -> tuple[dict, list[dict]]:
    """dp-eval's plain function on ``overrides`` (a mode among them); its metrics and prediction rows."""
    from depth_pose.evaluate import evaluate

    out = tmp_path / name / "pred.jsonl"
    cfg = compose("eval", [f"out={out}", f"ckpt={ckpt}", "progress=false", "plots=false", *overrides])
    metrics = evaluate(cfg)
    return metrics, [json.loads(s) for s in out.read_text().splitlines()]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


DEPTHS = (8.0, 12.0, 6.0, 20.0, 15.0)


def kp_array() -> np.ndarray:
    return np.asarray([person(z) for z in DEPTHS], np.float32)


def mixed_file(path: Path) -> Path:
    """Five people: up_cam, pitch+roll, pitch only, nothing, up_cam + pitch/roll agreeing within 1 degree."""
    u = tilted_up().tolist()
    fields = [
        {"up_cam": u},
        {"pitch_deg": PITCH, "roll_deg": ROLL},
        {"pitch_deg": 15},
        {},
        {"up_cam": u, "pitch_deg": PITCH - 0.5, "roll_deg": ROLL, "roll_note": "extra fields are ignored"},
    ]
    return write_lines(path, [line(f"p{i}", person(z), **f) for i, (z, f) in enumerate(zip(DEPTHS, fields))])


def test_jsonl_fields_reach_the_predictor(tmp_path, gravity_model, gpred):
    metrics, rows = run_eval(tmp_path, gravity_model, f"keypoints={mixed_file(tmp_path / 'in.jsonl')}")
    assert metrics["exit_code"] == 0 and [r["id"] for r in rows] == [f"p{i}" for i in range(5)]
    expected = np.stack([tilted_up(), up_of(PITCH, ROLL), up_of(15, 0), np.full(3, np.nan), tilted_up()])
    direct = gpred.predict(kp_array(), np.asarray(K, np.float32), up=expected.astype(np.float32)).z_m
    np.testing.assert_allclose([r["z_pred_m"] for r in rows], direct, atol=2e-4)
    blind = gpred.predict(kp_array(), np.asarray(K, np.float32)).z_m
    assert (np.abs(direct - blind)[[0, 1, 2, 4]] > 1e-3).all()  # the up direction changes this model's answer
    assert direct[3] == pytest.approx(blind[3], abs=1e-6)  # the person without one: as if none was given
    got = [(r["pitch_deg"], r["roll_deg"]) for r in rows]
    for (p, r), (ep, er) in zip(
        got, [(PITCH, ROLL), (PITCH, ROLL), (15.0, 0.0), (None, None), (PITCH, ROLL)]
    ):
        if ep is None:
            assert p is None and r is None
        else:
            assert p == pytest.approx(ep, abs=0.01) and r == pytest.approx(er, abs=0.01)
    g = metrics["gravity"]
    assert g["model_uses_gravity"] is True and (g["n_with_up"], g["n_without_up"]) == (4, 1)
    assert (g["n_up_from_input"], g["n_up_from_scene"]) == (4, 0) and g["scene"] is None
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert saved["gravity"] == g


def test_model_without_gravity_ignores_the_fields_and_says_so(tmp_path, tiny_model, caplog):
    with_fields = mixed_file(tmp_path / "with.jsonl")
    without = write_lines(
        tmp_path / "without.jsonl", [line(f"p{i}", person(z)) for i, z in enumerate(DEPTHS)]
    )
    with caplog.at_level(logging.WARNING, logger="depth_pose.evaluate"):
        m_plain, rows_plain = run_eval(tmp_path, tiny_model, f"keypoints={without}", name="a")
    assert "does not use it" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="depth_pose.evaluate"):
        m_up, rows_up = run_eval(tmp_path, tiny_model, f"keypoints={with_fields}", name="b")
    assert caplog.text.count("does not use it") == 1
    assert [r["z_pred_m"] for r in rows_up] == [r["z_pred_m"] for r in rows_plain]
    assert m_up["gravity"]["model_uses_gravity"] is False and m_up["gravity"]["n_with_up"] == 4
    assert all(r["pitch_deg"] is None for r in rows_plain) and rows_up[0]["pitch_deg"] == pytest.approx(PITCH)


def test_masked_up_equals_no_up(tmp_path, gravity_model, gpred):
    kp, Km = kp_array(), np.asarray(K, np.float32)
    none = gpred.predict(kp, Km)
    nan = gpred.predict(kp, Km, up=np.full((len(kp), 3), np.nan, np.float32))
    np.testing.assert_array_equal(none.z_m, nan.z_m)
    np.testing.assert_array_equal(none.sigma_m, nan.sigma_m)
    half = np.full((len(kp), 3), np.nan, np.float32)
    half[::2] = tilted_up()
    mixed = gpred.predict(kp, Km, up=half)  # unknown rows of a batch with known ones: as if none was given
    np.testing.assert_allclose(mixed.z_m[1::2], none.z_m[1::2], rtol=1e-6)
    without = write_lines(tmp_path / "x.jsonl", [line(f"p{i}", person(z)) for i, z in enumerate(DEPTHS)])
    _, rows = run_eval(tmp_path, gravity_model, f"keypoints={without}")
    np.testing.assert_allclose([r["z_pred_m"] for r in rows], none.z_m, atol=1e-4)


def test_line_errors_name_the_line_and_the_values(tmp_path):
    good = person(10.0)
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            line("ok", good, up_cam=[0, -1, 0]),  # 1
            line("conflict", good, up_cam=[0, -1, 0], pitch_deg=-20),  # 2
            line("roll-only", good, roll_deg=5),  # 3
            line("zero", good, up_cam=[0, 0, 0]),  # 4
            line("nan", good, up_cam=[0, None, 1]),  # 5
            line("steep", good, pitch_deg=95),  # 6
            line("two", good, up_cam=[0, -1]),  # 7
            line("nulls", good, up_cam=None, pitch_deg=None, roll_deg=None),  # 8: null = not given
            line("huge", good, up_cam=[1e308, -1e308, 0]),  # 9: its length overflows, its direction not
        ],
    )
    people = read_keypoints_jsonl(path)
    assert people.ids == ["ok", "nulls", "huge"]
    assert np.isfinite(people.up[0]).all() and np.isnan(people.up[1]).all()
    np.testing.assert_allclose(people.up[2], [0.5**0.5, -(0.5**0.5), 0.0], atol=1e-6)
    why = dict(people.skipped)
    assert set(why) == {f"line {n}" for n in range(2, 8)}
    assert "up_cam [0, -1, 0]" in why["line 2"] and "pitch_deg=-20" in why["line 2"]
    assert "disagree by 20.0 degrees" in why["line 2"]
    assert "roll_deg=5 given without pitch_deg" in why["line 3"]
    assert "zero length" in why["line 4"] and "finite numbers" in why["line 5"]
    assert "[-90, 90]" in why["line 6"] and "3 numbers" in why["line 7"]


def test_cli_conflicting_line_is_left_out_exit_3(tmp_path, tiny_model):
    write_lines(
        tmp_path / "in.jsonl",
        [line("a", person(10.0), pitch_deg=-10), line("b", person(9.0), up_cam=[0, -1, 0], pitch_deg=-20)],
    )
    r = run_cli(["keypoints=in.jsonl", "out=res/pred.jsonl", f"ckpt={tiny_model}"], cwd=tmp_path)
    assert r.returncode == 3, r.stderr[-2000:]
    left = [s for s in r.stderr.splitlines() if s.startswith("dp-eval: left out")]
    assert len(left) == 1 and left[0].startswith("dp-eval: left out line 2: up_cam [0, -1, 0]")
    assert "pitch_deg=-20" in left[0] and "disagree by 20.0 degrees" in left[0]
    rows = [json.loads(s) for s in (tmp_path / "res" / "pred.jsonl").read_text().splitlines()]
    assert [x["id"] for x in rows] == ["a"] and rows[0]["pitch_deg"] == pytest.approx(-10.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["scene.pitch_deg=120"], r"scene\.pitch_deg must be in \[-90, 90\] degrees, got 120"),
        (["scene.pitch_deg=0", "scene.roll_deg=200"], r"scene\.roll_deg must be in \[-180, 180\]"),
        (["scene.roll_deg=5"], r"scene\.roll_deg=5 given without scene\.pitch_deg"),
        (["scene.up_cam=[0,0,0]"], r"scene\.up_cam \[0, 0, 0\] has \(near\) zero length"),
        (["scene.up_cam=[0,-1]"], r"scene\.up_cam must be 3 numbers"),
        (["scene.up_cam=[0,nan,1]"], r"scene\.up_cam must be 3 finite numbers"),
        (["scene.pitch_deg=abc"], r"scene\.pitch_deg must be a number, got 'abc'"),
        (["scene.up_cam=[0,-1,0]", "scene.pitch_deg=-20"], r"disagree by 20\.0 degrees"),
    ],
)
def test_bad_scene_values_are_refused(tmp_path, tiny_model, overrides, message):
    src = write_lines(tmp_path / "in.jsonl", [line("a", person())])
    with pytest.raises(GravityInputError, match=message):
        run_eval(tmp_path, tiny_model, f"keypoints={src}", *overrides)
    assert not (tmp_path / "o").exists()


def test_scene_is_refused_where_it_does_not_apply(tmp_path, tiny_model):
    with pytest.raises(EvalInputError, match="keypoints= and images= only, not suite="):
        run_eval(tmp_path, tiny_model, "suite=invariance", "scene.pitch_deg=-10")


def test_cli_bad_scene_is_one_line_exit_2(tmp_path, tiny_model):
    write_lines(tmp_path / "in.jsonl", [line("a", person())])
    r = run_cli(
        ["keypoints=in.jsonl", "out=p.jsonl", f"ckpt={tiny_model}", "scene.pitch_deg=-100"], cwd=tmp_path
    )
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [s for s in r.stderr.splitlines() if "error" in s.lower()]
    assert errors == ["dp-eval: error: scene.pitch_deg must be in [-90, 90] degrees, got -100"]
    assert not (tmp_path / "p.jsonl").exists()


# ---------------------------------------------------------- the sign convention, entry point by entry point


def check_tilted(rows: list[dict], z: np.ndarray) -> None:
    """Every row records pitch -30 / roll +10 and the depth the predictor gives for the tilted camera's up."""
    for r in rows:
        assert r["pitch_deg"] == pytest.approx(PITCH, abs=0.01) and r["roll_deg"] == pytest.approx(
            ROLL, abs=0.01
        )
    np.testing.assert_allclose(
        [r["z_pred_m"] if "z_pred_m" in r else r["z_raw_m"] for r in rows], z, atol=2e-4
    )


@pytest.mark.parametrize(
    "how",
    ["line up_cam", "line pitch/roll", "scene.up_cam", "scene.pitch_deg/roll_deg", "line wins over scene"],
)
def test_sign_convention_through_dp_eval_keypoints(tmp_path, gravity_model, gpred, how):
    u = tilted_up()
    fields: dict = {}
    overrides: list[str] = []
    if how == "line up_cam":
        fields = {"up_cam": u.tolist()}
    elif how == "line pitch/roll":
        fields = {"pitch_deg": PITCH, "roll_deg": ROLL}
    elif how == "scene.up_cam":
        overrides = [f"scene.up_cam={as_override(u)}"]
    elif how == "scene.pitch_deg/roll_deg":
        overrides = [f"scene.pitch_deg={PITCH}", f"scene.roll_deg={ROLL}"]
    else:  # the line's own direction, not the scene's (a level camera)
        fields, overrides = {"up_cam": u.tolist()}, ["scene.pitch_deg=0"]
    src = write_lines(
        tmp_path / "in.jsonl", [line(f"p{i}", person(z), **fields) for i, z in enumerate(DEPTHS)]
    )
    metrics, rows = run_eval(tmp_path, gravity_model, f"keypoints={src}", *overrides)
    check_tilted(rows, gpred.predict(kp_array(), np.asarray(K, np.float32), up=u.astype(np.float32)).z_m)
    from_scene = 0 if fields else len(DEPTHS)
    assert metrics["gravity"]["n_up_from_scene"] == from_scene


class FixedDetector:
    """A pose detector that finds the same people in every image (the up direction is what is tested)."""

    def __init__(self, *args, **kwargs) -> None:
        kp = kp_array()
        self.dets = Detections(
            boxes=np.concatenate([kp[..., :2].min(1) - 5, kp[..., :2].max(1) + 5], 1).astype(np.float32),
            scores=np.full(len(kp), 0.9, np.float32),
            keypoints=kp,
        )

    def __call__(self, images, imgsz=None) -> list[Detections]:
        return [self.dets for _ in (images if isinstance(images, list) else [images])]


def write_image(path: Path, size=(1242, 375)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), 90, np.uint8))
    return path


def test_sign_convention_through_dp_eval_images(tmp_path, gravity_model, gpred):
    folder = tmp_path / "set"
    write_image(folder / "a.png")
    (folder / "gt.json").write_text(json.dumps({"image": "a.png", "K": K, "people": [{"gt_z_m": 8.0}]}))
    _, rows = run_eval(
        tmp_path,
        gravity_model,
        f"images={folder}",
        f"detector._target_={__name__}.FixedDetector",
        f"scene.pitch_deg={PITCH}",
        f"scene.roll_deg={ROLL}",
    )
    assert len(rows) == 1  # the largest detection is the labelled person: the nearest, 6 m
    z = gpred.predict(kp_array()[2:3], np.asarray(K, np.float32), up=tilted_up().astype(np.float32)).z_m
    check_tilted(rows, z)


def run_predict(tmp_path: Path, ckpt, *overrides: str) -> tuple[dict, list[dict]]:
    """dp-predict's plain function on one image seen by :class:`FixedDetector`; its summary and records."""
    from depth_pose.predict.run import predict

    src = write_image(tmp_path / "img" / "a.png")
    out = tmp_path / "out"
    cfg = compose(
        "predict",
        [f"source={src}", f"out={out}", f"ckpt={ckpt}", "progress=false", "save=false", "zoom.enabled=false",
         *overrides],
    )  # fmt: skip
    summary = predict(cfg, detector=FixedDetector())
    return summary, [json.loads(s) for s in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "how", ["calib json up_cam", "calib yaml pitch/roll", "scene.pitch_deg/roll_deg", "scene.up_cam", "both"]
)
def test_sign_convention_through_dp_predict(tmp_path, gravity_model, gpred, how):
    u = tilted_up()
    calib: dict = {"K": K, "width": 1242, "height": 375}
    overrides = []
    if how == "calib json up_cam":
        calib["up_cam"] = u.tolist()
    elif how == "calib yaml pitch/roll":
        calib |= {"pitch_deg": PITCH, "roll_deg": ROLL}
    elif how == "scene.pitch_deg/roll_deg":
        overrides = [f"scene.pitch_deg={PITCH}", f"scene.roll_deg={ROLL}"]
    elif how == "scene.up_cam":
        overrides = [f"scene.up_cam={as_override(u)}"]
    else:  # agreeing within a degree
        calib["up_cam"] = u.tolist()
        overrides = [f"scene.pitch_deg={PITCH + 0.4}", f"scene.roll_deg={ROLL}"]
    path = tmp_path / ("calib.yaml" if "yaml" in how else "calib.json")
    if path.suffix == ".yaml":
        path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in calib.items()))
    else:
        path.write_text(json.dumps(calib))
    summary, recs = run_predict(tmp_path, gravity_model, f"intrinsics.calib={path}", *overrides)
    assert len(recs) == len(DEPTHS)
    z = gpred.predict(kp_array(), np.asarray(K, np.float32), up=u.astype(np.float32)).z_m
    check_tilted(recs, z)
    g = summary["gravity"]
    assert g["model_uses_gravity"] is True and g["pitch_deg"] == pytest.approx(PITCH, abs=0.01)
    assert g["from"] == {"both": f"scene+calib:{path}"}.get(
        how, "scene" if "scene" in how else f"calib:{path}"
    )
    header, *lines = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    col = header.split(",").index("pitch_deg")
    assert float(lines[0].split(",")[col]) == pytest.approx(PITCH, abs=0.01)


def test_dp_predict_without_up_and_with_a_plain_model(tmp_path, gravity_model, gpred, tiny_model):
    summary, recs = run_predict(tmp_path, gravity_model, "intrinsics.fx=721.5", "intrinsics.cx=609.6",
                                "intrinsics.cy=172.9")  # fmt: skip
    assert all(r["pitch_deg"] is None and r["roll_deg"] is None for r in recs)
    assert summary["gravity"]["from"] is None
    np.testing.assert_allclose(
        [r["z_raw_m"] for r in recs], gpred.predict(kp_array(), np.asarray(K, np.float32)).z_m, rtol=1e-5
    )
    with pytest.warns(UserWarning, match="does not use it"):
        summary, recs = run_predict(tmp_path, tiny_model, "intrinsics.hfov_deg=60", "scene.pitch_deg=-30")
    assert summary["gravity"]["model_uses_gravity"] is False and recs[0]["pitch_deg"] == pytest.approx(-30.0)


def test_dp_predict_refuses_bad_or_conflicting_up(tmp_path, gravity_model):
    with pytest.raises(GravityInputError, match=r"scene\.roll_deg=3 given without scene\.pitch_deg"):
        run_predict(tmp_path, gravity_model, "intrinsics.hfov_deg=60", "scene.roll_deg=3")
    assert not (tmp_path / "out").exists()  # refused before any work
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"K": K, "up_cam": [0, -1, 0], "pitch_deg": -20}))
    with pytest.raises(Exception) as e:  # noqa: PT011  (Hydra's instantiate wraps it; the shell unwraps it)
        run_predict(tmp_path, gravity_model, f"intrinsics.calib={bad}")
    err = user_error(e.value)
    assert isinstance(err, IntrinsicsError), e.value
    assert "bad.json" in str(err) and "disagree by 20.0 degrees" in str(err)
    level = tmp_path / "level.json"
    level.write_text(json.dumps({"K": K, "up_cam": [0, -1, 0]}))
    with pytest.raises(GravityInputError, match=r"scene\.\* gives .* calibration file .* disagree by 30\.0"):
        run_predict(tmp_path, gravity_model, f"intrinsics.calib={level}", "scene.pitch_deg=-30")


def test_opencv_calibration_carries_the_up_direction(tmp_path):
    from depth_pose.predict.intrinsics import load_calibration

    for name, fields in (
        ("angles.yaml", {"pitch_deg": PITCH, "roll_deg": ROLL}),
        ("up.xml", {"up_cam": tilted_up()[None]}),  # a 1 x 3 opencv-matrix
    ):
        fs = cv2.FileStorage(str(tmp_path / name), cv2.FILE_STORAGE_WRITE)
        fs.write("cameraMatrix", np.asarray(K))
        for key, value in fields.items():
            fs.write(key, value)
        fs.release()
        up = load_calibration(tmp_path / name).up
        np.testing.assert_allclose(up, tilted_up(), atol=1e-6, err_msg=name)
