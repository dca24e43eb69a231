"""Issue 18: inputs outside what a model knows are flagged (``status`` per person, sigma widened, the
``ok``-only ALE beside the headline one) and bad intrinsics are refused wherever they enter, in one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import write_toy_set
from helpers import compose
from test_eval_cli import K, line, person

from depth_pose.detect import Detections
from depth_pose.eval.images import read_image_set
from depth_pose.eval.io import EvalInputError, read_keypoints_jsonl
from depth_pose.evaluate import evaluate
from depth_pose.geometry import check_intrinsics, intrinsics, intrinsics_from_hfov
from depth_pose.models.module import DepthModule
from depth_pose.predict.intrinsics import IntrinsicsError, IntrinsicsResolver
from depth_pose.predict.run import predict
from depth_pose.predictor import DepthPredictor, export_model
from depth_pose.ranges import DEFAULT_RANGES, RANGE_MARGIN
from depth_pose.ranges import main as ranges_main

KA = np.array(K, np.float32)  # 1242 x 375 (KITTI-like): hfov 80 degrees


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """An untrained model (stored ranges: none) whose depths for ``person(z)`` land ~1.8 z, inside 1-60 m."""
    torch.manual_seed(0)
    m = DepthModule()
    m.set_target_stats(0.0, 1.0, 12.0)
    return export_model(m, tmp_path_factory.mktemp("status_model") / "m.safetensors", {"note": "test"})


@pytest.fixture(scope="module")
def pred(model_path) -> DepthPredictor:
    return DepthPredictor.load(model_path)


def scaled(kp: list, size_px: float) -> np.ndarray:
    """``kp`` shrunk about its centre to a keypoint box of ``size_px`` on its larger side."""
    a = np.array(kp, np.float32)
    c = a[:, :2].mean(0)
    side = np.ptp(a[:, :2], axis=0).max()
    a[:, :2] = c + (a[:, :2] - c) * (size_px / side)
    return a


def test_reported_cases_get_their_status(pred):
    one_px = np.array(person(10.0), np.float32)
    one_px[:, :2] = [600.0, 150.0]
    all_nan = np.array(person(10.0), np.float32)
    all_nan[:, :2] = np.nan
    cases = {  # name: (keypoints, K, expected status)
        "control": (person(10.0), KA, "ok"),
        "5-px person": (scaled(person(10.0), 5.0), KA, "out_of_range"),
        "all joints at one pixel": (one_px, KA, "degenerate"),
        "fx = 1e12": (person(10.0), intrinsics(1e12, 1e12, 609.6, 172.9).numpy(), "out_of_range"),
        "hfov 0.001": (person(10.0), intrinsics_from_hfov(0.001, 1242, 375).numpy(), "out_of_range"),
        "hfov 179.9": (person(10.0), intrinsics_from_hfov(179.9, 1242, 375).numpy(), "out_of_range"),
        "all 17 joints NaN": (all_nan, KA, "no_joints"),
        "3 joints seen": (np.where(np.arange(17)[:, None] < 3, person(10.0), np.nan), KA, "too_few_joints"),
    }
    kp = np.stack([np.asarray(c[0], np.float32) for c in cases.values()])
    Ks = np.stack([np.asarray(c[1], np.float32) for c in cases.values()])
    out = pred.predict(kp, Ks)
    assert dict(zip(cases, out.status)) == {name: c[2] for name, c in cases.items()}
    nan = list(cases).index("all 17 joints NaN")
    assert np.isnan(out.z_m[nan]) and np.isnan(out.sigma_m[nan])  # not the training mean
    rest = np.arange(len(cases)) != nan
    assert np.isfinite(out.z_m[rest]).all() and (out.sigma_m[rest] > 0).all()
    # Non-ok people: at least 30% of z (the degenerate one at least z).
    assert (out.sigma_m[rest][1:] >= 0.3 * out.z_m[rest][1:] - 1e-4).all()
    deg = list(cases).index("all joints at one pixel")
    assert out.sigma_m[deg] >= out.z_m[deg] - 1e-4


@pytest.mark.parametrize(
    "k, message",
    [
        (KA.T, "looks transposed"),
        (np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 2.0]], np.float32), "bottom row must be"),
        (np.array([[721.5, 0, 609.6], [5.0, 721.5, 172.9], [0, 0, 1]], np.float32), r"K\[1\]\[0\] must be 0"),
        (np.array([[-721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]], np.float32), "non-positive focal"),
    ],
)
def test_python_api_refuses_bad_K_in_one_line(pred, k, message):
    with pytest.raises(ValueError, match=message) as e:
        pred.predict(np.array([person(10.0)], np.float32), k)
    assert "\n" not in str(e.value) and str(e.value).startswith("bad intrinsics K")


def test_check_intrinsics_fov_when_the_image_size_is_known():
    good = intrinsics(721.5, 721.5, 609.6, 172.9)
    assert check_intrinsics(good) is None and check_intrinsics(good, (1242, 375)) is None
    huge = intrinsics(1e12, 1e12, 609.6, 172.9)
    assert check_intrinsics(huge) is None  # a valid matrix: flagged per person, not refused
    assert "field of view" in check_intrinsics(huge, (1242, 375))
    for hfov in (0.001, 179.9):
        assert "field of view" in check_intrinsics(intrinsics_from_hfov(hfov, 1242, 375), (1242, 375))
    batch = torch.stack([good, good.T])
    assert check_intrinsics(batch).startswith("K[1] looks transposed")


def test_sigma_widened_and_stored_ranges_used_defaults_without(tmp_path, model_path, pred):
    assert pred.ranges == DEFAULT_RANGES  # no training_ranges in its JSON
    kp = np.array([person(10.0)], np.float32)
    base = pred.predict(kp, KA)
    assert base.status[0] == "ok"
    z = float(base.z_m[0])
    # The same weights with stored ranges that put this depth beyond them.
    for ext in (".safetensors", ".json"):
        (tmp_path / f"m{ext}").write_bytes(model_path.with_suffix(ext).read_bytes())
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["training_ranges"] = {"z_m": [3 * z, 4 * z], "person_px": [1.0, None], "focal_px": [None, None],
                               "hfov_deg": [10.0, 170.0], "data_id": "hand-made"}  # fmt: skip
    (tmp_path / "m.json").write_text(json.dumps(meta))
    other = DepthPredictor.load(tmp_path / "m.safetensors")  # the sha256 covers the weights only
    assert other.ranges.z_m == (3 * z, 4 * z) and other.ranges.source == "hand-made"
    out = other.predict(kp, KA)
    assert out.status[0] == "out_of_range" and out.z_m[0] == pytest.approx(z, rel=1e-5)
    assert out.sigma_m[0] == pytest.approx(max(3 * base.sigma_m[0], 0.3 * z), rel=1e-4)
    # Just inside the margin: ok again.
    meta["training_ranges"]["z_m"] = [z * RANGE_MARGIN * 0.99, 4 * z]
    (tmp_path / "m.json").write_text(json.dumps(meta))
    assert DepthPredictor.load(tmp_path / "m.safetensors").predict(kp, KA).status[0] == "ok"
    meta["training_ranges"]["z_m"] = [5.0, "far"]
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="training_ranges.z_m"):
        DepthPredictor.load(tmp_path / "m.safetensors")


def test_ranges_from_a_training_set_into_an_exported_model(tmp_path, model_path, capsys):
    data = write_toy_set(tmp_path / "set", 2000, seed=3)  # z 3-40 m, fx 600-1400 px, cx 620
    for ext in (".safetensors", ".json"):
        (tmp_path / f"m{ext}").write_bytes(model_path.with_suffix(ext).read_bytes())
    ranges_main([str(tmp_path / "m.safetensors"), str(data)])
    stored = json.loads((tmp_path / "m.json").read_text())["training_ranges"]
    assert json.loads(capsys.readouterr().out) == stored
    assert 3.0 <= stored["z_m"][0] < 4.0 and 35.0 < stored["z_m"][1] <= 40.0
    assert 600 <= stored["focal_px"][0] < 650 and 1350 < stored["focal_px"][1] <= 1400
    assert 47 < stored["hfov_deg"][0] < 50 and 88 < stored["hfov_deg"][1] < 92  # 2 atan(620 / fx)
    assert 0 < stored["person_px"][0] < stored["person_px"][1]
    loaded = DepthPredictor.load(tmp_path / "m.safetensors")
    assert loaded.ranges.source == stored["data_id"] and loaded.ranges.z_m == tuple(stored["z_m"])
    with pytest.raises(SystemExit) as e:
        ranges_main([str(tmp_path / "m.safetensors"), str(tmp_path / "no_such_set")])
    assert e.value.code == 2 and "error" in capsys.readouterr().err


def test_dp_eval_status_per_row_and_ok_only_ale(tmp_path, model_path):
    one_px = np.array(person(10.0), np.float32)
    one_px[:, :2] = [600.0, 150.0]
    nan = [[None, None, 0.0]] * 17
    lines = [
        line("a", person(5.0), gt=5.0),
        line("b", person(10.0), gt=10.0),
        line("c", person(20.0), gt=20.0),
        line("tiny", scaled(person(10.0), 5.0).tolist(), gt=10.0),
        line("blob", one_px.tolist(), gt=10.0),
        line("nojoints", nan, gt=10.0),
        line("transposed", person(10.0), k=KA.T.tolist()),
        line("k22", person(10.0), k=[[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 2]]),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    where = dict(read_keypoints_jsonl(tmp_path / "in.jsonl").skipped)
    assert "looks transposed" in where["line 7"] and "bottom row must be [0, 0, 1]" in where["line 8"]
    out = tmp_path / "o" / "pred.jsonl"
    cfg = compose(
        "eval", [f"keypoints={tmp_path / 'in.jsonl'}", f"out={out}", f"ckpt={model_path}", "progress=false"]
    )
    m = evaluate(cfg)
    assert m["exit_code"] == 3 and m["n_scored"] == 6
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    status = {k: r["status"] for k, r in rows.items()}
    assert status == {"a": "ok", "b": "ok", "c": "ok", "tiny": "out_of_range", "blob": "degenerate",
                      "nojoints": "no_joints"}  # fmt: skip
    assert rows["nojoints"]["z_pred_m"] is None and rows["nojoints"]["z_sigma_m"] is None
    assert m["status_counts"] == {
        "ok": 3, "out_of_range": 1, "degenerate": 1, "too_few_joints": 0, "no_joints": 1
    }  # fmt: skip
    err = {k: abs(r["z_pred_m"] - r["gt_z_m"]) for k, r in rows.items() if r["z_pred_m"] is not None}
    head, ok = m["methods"]["model"], m["model_ok_only"]
    assert (head["n"], head["n_total"], ok["n"]) == (5, 6, 3)  # everyone with a joint; the ok ones
    assert head["ale_m"] == pytest.approx(np.mean(list(err.values())), abs=1e-3)
    assert ok["ale_m"] == pytest.approx(np.mean([err[k] for k in "abc"]), abs=1e-3)
    report = (tmp_path / "o" / "report.md").read_text()
    assert "status ok only (3 people)" in report and "out_of_range 1" in report


def test_image_set_gt_json_with_a_transposed_K_is_refused(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps({"samples": [{"image": "a.jpg", "K": KA.T.tolist()}]}))
    with pytest.raises(EvalInputError, match=r"samples\[0\].*looks transposed"):
        read_image_set(tmp_path)


def test_dp_predict_intrinsics_refused_in_one_line(tmp_path):
    for hfov in (0.001, 179.9):
        with pytest.raises(IntrinsicsError, match=r"hfov_deg must be a number in \[1, 175\]"):
            IntrinsicsResolver(hfov_deg=hfov)
    with pytest.raises(IntrinsicsError, match="field of view") as e:
        IntrinsicsResolver(fx=1e12)(1280, 720, "x.jpg")
    assert "fx/fy/cx/cy" in str(e.value) and "x.jpg" in str(e.value)
    (tmp_path / "t.json").write_text(json.dumps({"K": KA.T.tolist()}))
    with pytest.raises(IntrinsicsError, match="t.json.*looks transposed"):
        IntrinsicsResolver(calib=str(tmp_path / "t.json"))
    (tmp_path / "k.json").write_text(json.dumps({"K": [[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 2]]}))
    with pytest.raises(IntrinsicsError, match="k.json.*bottom row"):
        IntrinsicsResolver(calib=str(tmp_path / "k.json"))


class FakeDetector:
    """Three people on a 1242 x 375 frame: a normal one, a 5-px one and one with every joint on one pixel."""

    def __call__(self, image):
        kp = np.stack([np.array(person(10.0), np.float32), scaled(person(10.0), 5.0), np.array(person(10.0))])
        kp[2, :, :2] = [900.0, 200.0]
        lo, hi = np.nanmin(kp[..., :2], 1), np.nanmax(kp[..., :2], 1)
        boxes = np.concatenate([lo - 2, hi + 2], 1).astype(np.float32)
        return [Detections(boxes, np.full(3, 0.9, np.float32), kp.astype(np.float32))]


def test_dp_predict_records_and_summary_carry_status(tmp_path, pred):
    cv2.imwrite(str(tmp_path / "frame.png"), np.zeros((375, 1242, 3), np.uint8))
    cfg = compose(
        "predict",
        [f"source={tmp_path / 'frame.png'}", f"out={tmp_path / 'o'}", "progress=false", "zoom.enabled=false",
         "intrinsics.fx=721.5", "intrinsics.cx=609.6", "intrinsics.cy=172.9"],
    )  # fmt: skip
    summary = predict(cfg, depth_model=pred, detector=FakeDetector())
    recs = [json.loads(s) for s in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    assert [r["status"] for r in recs] == ["ok", "out_of_range", "degenerate"]
    assert summary["counts"]["status"] == {
        "ok": 1, "out_of_range": 1, "degenerate": 1, "too_few_joints": 0, "no_joints": 0
    }  # fmt: skip
    assert "status" in (tmp_path / "o" / "predictions.csv").read_text().splitlines()[0].split(",")
