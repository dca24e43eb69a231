"""Tilt suite: camera geometry (mid-hip on the optical axis at the asked depth, camera above the hip by
depth x sin|tilt|), and the suite end to end on a tiny configuration with and without a gravity model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import compose

SMALL = [
    "progress=false",
    "invariance.n_bodies=4",
    "invariance.poses=[standing,squat]",
    "invariance.n_per_pose=1",
    "invariance.yaws_deg=[0.0,90.0]",
    "tilt.tilts_deg=[0.0,-45.0,-75.0]",
    "tilt.depths_m=[3.0,20.0]",
]
N_SMALL = 2 * 1 * 3 * 2 * 2  # poses x variants x tilts x depths x yaws


@pytest.fixture(scope="module")
def bodies():
    from generation.body import BodyModel

    return BodyModel(n_bodies=4, seed=917)


@pytest.fixture(scope="module")
def gravity_model(tmp_path_factory):
    """An untrained model that takes the up direction, in the shipped format."""
    from depth_pose.models.module import DepthModule
    from depth_pose.predictor import export_model

    m = DepthModule(features={"name": "normalised", "gravity": True})
    m.set_target_stats(0.0, 1.0, 10.0)
    return export_model(m, tmp_path_factory.mktemp("gmodel") / "gravity.safetensors", {"note": "untrained"})


def test_aimed_cameras_put_the_mid_hip_on_the_optical_axis(bodies):
    from depth_pose import geometry
    from depth_pose.suites.tilt import aimed_cameras
    from generation.project import observe

    posed = bodies.pose(torch.arange(4), bodies.identity_poses(4))
    depth = torch.tensor([3.0, 6.0, 10.0, 20.0])
    tilt = torch.tensor([0.0, -15.0, -45.0, -75.0])
    yaw = torch.tensor([0.0, 90.0, 180.0, 45.0])
    cams = aimed_cameras(posed, depth, yaw, tilt, 60.0, 1280, 720)
    obs = observe(posed, cams)
    # On the optical axis at the asked camera depth, hence at the principal point (the image centre).
    assert torch.allclose(obs.z_m, depth, atol=1e-4)
    assert torch.allclose(obs.hip_cam[:, :2], torch.zeros(4, 2), atol=1e-4)
    hip_px = geometry.project(obs.hip_cam[:, None], cams.K)[:, 0]
    assert torch.allclose(hip_px, torch.tensor([640.0, 360.0]).expand(4, 2), atol=1e-2)
    # The camera centre is depth x sin|tilt| above the mid-hip (and depth away from it), at height_m.
    centre = -torch.einsum("nji,nj->ni", cams.R, cams.t)
    hip = geometry.mid_hip(posed.keypoints)
    above = depth * torch.sin(torch.deg2rad(-tilt))
    assert torch.allclose(centre[:, 2] - hip[:, 2], above, atol=1e-4)
    assert torch.allclose(cams.height_m, hip[:, 2] + above, atol=1e-4)
    assert torch.allclose((hip - centre).norm(dim=1), depth, atol=1e-4)
    # Up in camera coordinates gives back the tilt as pitch (negative = looking down) and no roll.
    pitch, roll = geometry.pitch_roll_from_up(cams.R[:, :, 2])
    assert torch.allclose(pitch, tilt, atol=1e-3) and torch.allclose(roll, torch.zeros(4), atol=1e-3)
    assert torch.equal(cams.tilt_deg, tilt) and torch.equal(cams.roll_deg, torch.zeros(4))


def _finite_numbers(d) -> bool:
    if isinstance(d, dict):
        return all(_finite_numbers(v) for v in d.values())
    if isinstance(d, list):
        return all(_finite_numbers(v) for v in d)
    return not isinstance(d, float) or math.isfinite(d)


def test_tilt_suite_with_a_gravity_model(tmp_path, gravity_model):
    from depth_pose.evaluate import evaluate

    out = tmp_path / "samples.jsonl"
    res = evaluate(compose("eval", ["suite=tilt", f"out={out}", f"ckpt={gravity_model}", *SMALL]))
    assert res["exit_code"] == 0 and res["n_samples"] == N_SMALL and res["uses_gravity"]
    assert res["variants"] == ["no_up", "up"]
    keys = ["0", "-45", "-75"]
    for v in ("no_up", "up"):
        assert list(res["per_tilt"][v]) == keys and all(
            res["per_tilt"][v][k]["n"] == N_SMALL // 3 for k in keys
        )
        for k in keys:
            r = res["per_tilt"][v][k]
            assert {"median", "iqr", "q25_q75", "bias_median", "coverage_1sigma"} <= set(r)
        assert set(res["per_tilt_depth"][v]["-45"]) == {"3", "20"}
        w = res["worst_over_level"][v]
        assert w["level_tilt_deg"] == 0.0 and w["ratio"] >= 1.0 and w["worst_tilt_deg"] in (0.0, -45.0, -75.0)
    assert _finite_numbers({k: res[k] for k in ("per_tilt", "per_tilt_depth", "overall", "worst_over_level")})
    # Pitch from each camera's up direction: negative for the looking-down bins.
    assert res["cameras"]["0"]["pitch_deg_median"] == pytest.approx(0.0, abs=1e-3)
    assert res["cameras"]["-45"]["pitch_deg_median"] == pytest.approx(-45.0, abs=1e-3)
    assert res["cameras"]["-75"]["pitch_deg_median"] < -74.9
    rows = [json.loads(s) for s in out.read_text().splitlines()]
    assert len(rows) == N_SMALL
    assert all(r["pitch_deg"] < 0 for r in rows if r["tilt_deg"] < 0)
    assert all(abs(r["z_true_m"] - r["depth_m"]) < 1e-3 for r in rows)
    assert {"z_pred_m", "z_sigma_m", "z_pred_up_m", "z_sigma_up_m"} <= set(rows[0])
    # The up direction is an input of this model: it changes the predictions.
    assert any(abs(r["z_pred_m"] - r["z_pred_up_m"]) > 1e-4 for r in rows)
    # Camera height = hip height + depth x sin|tilt| (hip height <= 1.3 m for these bodies and poses).
    for r in rows:
        above = r["depth_m"] * math.sin(math.radians(-r["tilt_deg"]))
        assert above <= r["cam_height_m"] <= above + 1.3
    assert (tmp_path / "error_vs_tilt.png").stat().st_size > 5000 and (tmp_path / "report.md").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["suite"] == "tilt" and set(metrics["per_tilt"]) == {"no_up", "up"}
    assert "no_up: median" in (tmp_path / "report.md").read_text()


def test_tilt_suite_plain_model_scores_without_up(tmp_path, tiny_model):
    from depth_pose.evaluate import evaluate

    out = tmp_path / "samples.jsonl"
    res = evaluate(compose("eval", ["suite=tilt", f"out={out}", f"ckpt={tiny_model}", "plots=false", *SMALL]))
    assert not res["uses_gravity"] and res["variants"] == ["no_up"] and list(res["per_tilt"]) == ["no_up"]
    row = json.loads(out.read_text().splitlines()[0])
    assert "z_pred_m" in row and "z_pred_up_m" not in row
    # The same people as the invariance suite: the tilt block interpolates the invariance block.
    cfg = compose("eval", SMALL)
    assert list(cfg.tilt.poses) == list(cfg.invariance.poses) and cfg.tilt.seed == cfg.invariance.seed
    assert cfg.tilt.noise.name == "yolo_like" and cfg.tilt.noise.occluder_prob == 0.0


def test_unknown_suite_names_tilt(tmp_path):
    from depth_pose.eval.io import EvalInputError
    from depth_pose.evaluate import evaluate

    with pytest.raises(EvalInputError, match="invariance, tilt"):
        evaluate(compose("eval", ["suite=nope", f"out={tmp_path / 's.jsonl'}"]))


def test_bin_stats_and_keys():
    from depth_pose.suites.tilt import bin_stats, tilt_key

    z = np.array([10.0, 10.0, 10.0, 10.0])
    st = bin_stats(np.array([11.0, 9.0, 10.5, 10.0]), np.array([0.5, 2.0, 1.0, 0.1]), z)
    assert st["n"] == 4 and st["median"] == pytest.approx(0.075) and st["bias_median"] == pytest.approx(0.025)
    assert st["coverage_1sigma"] == pytest.approx(0.75)
    assert [tilt_key(t) for t in (0.0, -15.0, 2.5)] == ["0", "-15", "2.5"]
