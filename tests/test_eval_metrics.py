"""Evaluation metrics and geometric baselines against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from depth_pose.detect import Detections
from depth_pose.eval import baselines as bl
from depth_pose.eval.images import box_iou, match_person
from depth_pose.eval.metrics import (
    PERSON_PX_BANDS,
    calibration_curve,
    depth_metrics,
    gaussian_coverage,
    median_iqr,
    per_band,
    per_group,
    seed_spread,
)
from depth_pose.jsonvalues import json_safe
from depth_pose.keypoints import pixel_height

PRED = np.array([10.0, 22.0, 27.0, 52.0, np.nan])
TRUE = np.array([9.0, 20.0, 30.0, 40.0, 15.0])
SIGMA = np.array([2.0, 1.0, 3.0, 5.0, 1.0])


def test_depth_metrics_hand_computed():
    m = depth_metrics(PRED, TRUE, SIGMA)
    # |err| = 1, 2, 3, 12 on the 4 people with a prediction (the NaN one is left out, still counted in
    # n_total).
    assert (m["n"], m["n_total"]) == (4, 5)
    assert m["ale_m"] == pytest.approx(4.5)
    assert m["median_abs_m"] == pytest.approx(2.5)
    assert m["rel_err"] == pytest.approx((1 / 9 + 2 / 20 + 3 / 30 + 12 / 40) / 4)
    assert m["median_rel"] == pytest.approx((1 / 9 + 2 / 20) / 2)  # sorted 0.1, 0.1, 0.111, 0.3
    assert m["bias_rel"] == pytest.approx((1 / 9 + 2 / 20 - 3 / 30 + 12 / 40) / 4)
    assert m["delta_1.25"] == pytest.approx(0.75)  # 52/40 = 1.3 fails, 10/9, 22/20, 30/27 pass
    assert (m["alp_0.5m"], m["alp_1m"], m["alp_2m"]) == (0.0, 0.0, 0.25)  # strict: |err| = 1 is not < 1
    assert m["cov_1sigma"] == pytest.approx(0.5)  # 1<=2 yes, 2<=1 no, 3<=3 yes, 12<=5 no
    assert m["cov_2sigma"] == pytest.approx(0.75)
    assert m["rmse_m"] == pytest.approx(math.sqrt((1 + 4 + 9 + 144) / 4))


def test_per_band_and_empty_band():
    b = per_band(PRED, TRUE)
    assert list(b) == ["0-10", "10-20", "20-30", ">30"]
    assert b["0-10"]["ale_m"] == pytest.approx(1.0) and b["0-10"]["n"] == 1
    assert (
        b["10-20"]["n"] == 0 and b["10-20"]["n_total"] == 1 and b["10-20"]["ale_m"] is None
    )  # only the NaN one
    assert b["20-30"]["ale_m"] == pytest.approx(2.0)  # true 20 (30 belongs to >30)
    assert b[">30"]["ale_m"] == pytest.approx(7.5)


def test_per_group_order_and_counts():
    labels = np.array(["squat", "walk", "squat", "lying", "walk"])
    g = per_group(PRED, TRUE, SIGMA, labels, order=["standing", "walk"])
    assert list(g) == ["walk", "squat", "lying"]  # "standing" absent: left out; the rest by count
    assert (g["walk"]["n"], g["walk"]["n_total"]) == (1, 2)  # walk = people 2 and 5 (5 has no prediction)
    assert g["walk"]["ale_m"] == pytest.approx(2.0)
    assert g["squat"]["ale_m"] == pytest.approx(2.0) and g["squat"]["cov_1sigma"] == pytest.approx(
        1.0
    )  # |err| 1, 3
    assert g["lying"]["bias_rel"] == pytest.approx(12 / 40)
    assert per_group(PRED, TRUE, None, labels)["squat"].get("cov_1sigma") is None


def test_pixel_height_and_metrics_per_person_size():
    kp = np.zeros((4, 17, 3))
    kp[..., 0] = 50.0
    kp[..., 1] = np.linspace(100.0, 300.0, 17)  # head at 100 px, ankles at 300 px
    kp[..., 2] = 0.9
    kp[1, 15:, 2] = 0.05  # ankles unseen: extent of the confident joints only
    kp[2, :, 2] = 0.01  # nothing confident (a forced-complete guess): every finite joint counts
    kp[2, 0, 1] = 80.0
    kp[3, 1:, :2] = np.nan  # one finite joint: no height
    h = pixel_height(kp)
    assert h[0] == pytest.approx(200.0) and h[1] == pytest.approx(300.0 - 100.0 - 2 * 12.5)
    assert h[2] == pytest.approx(220.0) and np.isnan(h[3])
    # Grouped by pixel height instead of true depth: hand-computed ALE per group; NaN heights fall in no
    # group.
    pred, true = np.array([10.0, 21.0, 33.0, 40.0]), np.array([11.0, 20.0, 30.0, 50.0])
    out = per_band(pred, true, bands=PERSON_PX_BANDS, by=np.array([30.0, 150.0, 35.0, np.nan]))
    assert out["0-40"]["n"] == 2 and out["0-40"]["ale_m"] == pytest.approx((1.0 + 3.0) / 2)
    assert out["100-200"]["n"] == 1 and out["100-200"]["ale_m"] == pytest.approx(1.0)
    assert out[">200"]["n"] == 0 and out[">200"]["ale_m"] is None
    assert sum(b["n"] for b in out.values()) == 3


def test_calibration_curve_and_gaussian():
    assert gaussian_coverage(1.0) == pytest.approx(0.6827, abs=1e-4)
    assert gaussian_coverage(2.0) == pytest.approx(0.9545, abs=1e-4)
    c = calibration_curve(PRED, TRUE, SIGMA, levels=(0.5, 1.0, 2.0, 3.0))
    # |err|/sigma = 0.5, 2, 1, 2.4
    assert c["observed"] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # A calibrated Gaussian sample lands near the ideal.
    rng = np.random.default_rng(0)
    t = rng.uniform(5, 40, 20000)
    s = 0.05 * t
    c = calibration_curve(t + rng.normal(0, 1, t.size) * s, t, s, levels=(1.0, 2.0))
    assert c["observed"] == pytest.approx(c["ideal"], abs=0.01)


def test_seed_spread_hand_computed():
    """Two seeds with log errors [0, .2, -.2] and [.1, .1, -.2]: variance over people 0.02667 / 0.02 (mean
    0.02333), over seeds (ddof 1) .005 / .005 / 0 (mean .00333) -> share 1/7, correlation sqrt(3)/2."""
    true = np.array([10.0, 10.0, 10.0, 5.0])
    e = np.array(
        [[0.0, 0.2, -0.2, 0.0], [0.1, 0.1, -0.2, np.nan]]
    )  # the last person is not finite for seed 1
    r = seed_spread(true * np.exp(e), true)
    assert r["n"] == 3 and r["seeds"] == 2
    assert r["total_var"] == pytest.approx(0.07 / 3) and r["seed_var"] == pytest.approx(0.01 / 3)
    assert r["seed_share"] == pytest.approx(1 / 7) and r["corr"] == pytest.approx(math.sqrt(3) / 2)
    # The ensemble is the geometric mean: log errors .05 / .15 / -.2.
    assert r["ensemble"]["median_rel"] == pytest.approx(math.exp(0.15) - 1)
    assert r["ensemble"]["ale_m"] == pytest.approx(
        10 * (math.exp(0.05) - 1 + math.exp(0.15) - 1 + 1 - math.exp(-0.2)) / 3
    )
    assert r["single"]["ale_m"] == pytest.approx(10 * np.mean(np.abs(np.exp(e[:, :3]) - 1)))
    # Identical seeds: no seed variance, correlation 1, the ensemble is each seed.
    same = seed_spread(np.stack([true * np.exp(e[0])] * 3), true)
    assert same["seed_share"] == pytest.approx(0.0) and same["corr"] == pytest.approx(1.0)
    assert same["ensemble"]["ale_m"] == pytest.approx(same["single"]["ale_m"])
    with pytest.raises(ValueError, match="S >= 2"):
        seed_spread(true[None], true)


def test_median_iqr():
    assert median_iqr(np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan])) == pytest.approx((3.0, 2.0))
    assert all(math.isnan(v) for v in median_iqr(np.array([np.nan])))


def _person(K_f: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
    kp = np.zeros((1, 17, 3))
    kp[..., 0], kp[..., 1], kp[..., 2] = 500.0, 200.0, 0.9
    kp[0, 1] = [500.0, 100.0, 0.9]  # left eye: top
    kp[0, 15] = [500.0, 300.0, 0.9]  # left ankle: bottom
    kp[0, 5], kp[0, 11] = [480.0, 130.0, 0.9], [480.0, 250.0, 0.9]  # left shoulder-hip: 120 px
    kp[0, 6], kp[0, 12] = [520.0, 130.0, 0.2], [520.0, 230.0, 0.9]  # right side: shoulder below 0.3
    K = np.array([[K_f, 0.0, 600.0], [0.0, K_f, 180.0], [0.0, 0.0, 1.0]])
    return kp, K


def test_box_height_baseline():
    kp, K = _person()
    z = bl.box_height_depth(kp, K)
    assert z[0] == pytest.approx(1.71 * 0.88 * 1000.0 / 200.0)
    # Unseen (conf < 0.1) joints do not count: hide the ankles -> no full body -> not applicable.
    kp2 = kp.copy()
    kp2[0, [15, 16], 2] = 0.05
    assert np.isnan(bl.box_height_depth(kp2, K)[0])
    assert bl.box_height_depth(kp2, K, require_full_body=False)[0] == pytest.approx(
        1.71 * 0.88 * 1000.0 / 150.0
    )  # eye 100 -> hip 250


def test_shoulder_hip_baseline():
    kp, K = _person()
    assert bl.shoulder_hip_depth(kp, K)[0] == pytest.approx(0.48 * 1000.0 / 120.0)  # left side only
    kp[0, 6, 2] = 0.9  # right side now qualifies: length 100 px -> mean 110 px
    assert bl.shoulder_hip_depth(kp, K)[0] == pytest.approx(0.48 * 1000.0 / 110.0)
    kp[0, [5, 6], 2] = 0.1
    assert np.isnan(bl.shoulder_hip_depth(kp, K)[0])
    assert bl.floor_depth(np.array([10.0]))[0] == pytest.approx(10.46)


def test_box_iou_and_matching():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    b = np.array([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert box_iou(a, b) == pytest.approx([50 / 150, 0.0])
    det = Detections(b.astype(np.float32), np.ones(2, np.float32), np.zeros((2, 17, 3), np.float32))
    assert match_person(det, a, 0.3)[0] == 0
    assert match_person(det, a, 0.4)[0] is None
    big = Detections(
        np.array([[0, 0, 5, 5], [0, 0, 50, 60]], np.float32),
        np.ones(2, np.float32),
        np.zeros((2, 17, 3), np.float32),
    )
    assert match_person(big, None)[0] == 1  # no box: the largest detection


def test_json_safe():
    assert json_safe(
        {"a": np.float32(1.5), "b": [float("nan"), np.int64(3)], "c": np.array([1.0, np.inf])}
    ) == {"a": 1.5, "b": [None, 3], "c": [1.0, None]}


def test_dp_predicts_json_outputs_are_strict(tmp_path):
    """summary.json echoes the config (a user's ``nan`` included) and the records carry NaN where a
    value is unknown: both are written as strict JSON (null), never as NaN / Infinity tokens."""
    from depth_pose.predict.outputs import write_json_atomic

    path = tmp_path / "summary.json"
    write_json_atomic(path, {"min_box_px": float("nan"), "z": np.float32(np.inf), "p": tmp_path, "n": 2})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "min_box_px": None, "z": None, "p": str(tmp_path), "n": 2,
    }  # fmt: skip
