"""MLP trunk, LightningModule loss/metrics wiring, and the DepthPredictor inference API."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from depth_pose import geometry
from depth_pose.features import Normaliser
from depth_pose.models import MLP, DepthModule, count_parameters
from depth_pose.predictor import DepthPrediction, DepthPredictor, export_model


def test_mlp_presets_shapes_and_residual():
    x = torch.randn(8, 54)
    small = MLP(54, 2, width=128, depth=2)
    large = MLP(54, 2, width=1024, depth=4, residual=True, norm="layer", dropout=0.1, activation="gelu")
    assert small(x).shape == (8, 2) and large(x).shape == (8, 2)
    assert count_parameters(small) == 54 * 128 + 128 + 128 * 128 + 128 + 128 * 2 + 2
    assert count_parameters(large) > 3_000_000
    with pytest.raises(ValueError, match="activation"):
        MLP(54, 2, activation="nope")


def _batch(n: int = 512, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    template = torch.randn(17, 3, generator=torch.Generator().manual_seed(42)) * torch.tensor([0.2, 0.5, 0.1])
    body = template + 0.01 * torch.randn(n, 17, 3, generator=g)
    z = 3 + 30 * torch.rand(n, generator=g)
    pts = body + torch.stack([torch.zeros(n), torch.full((n,), 0.5), z], -1)[:, None]
    K = geometry.intrinsics(720.0, 720.0, 610.0, 175.0)
    px = geometry.project(pts, K)
    kp = torch.cat([px, torch.full_like(px[..., :1], 0.9)], -1)
    intr = torch.tensor([720.0, 720.0, 610.0, 175.0, 0.0]).expand(n, 5)
    return {
        "kp": kp,
        "intr": intr,
        "z": pts[:, 11:13, 2].mean(1),
        "special": torch.rand(n, generator=g) < 0.3,
    }


@pytest.mark.parametrize("loss", ["laplace", "l1"])
def test_module_learns_depth_from_size(loss):
    torch.manual_seed(0)
    m = DepthModule(net={"width": 64, "depth": 2}, loss=loss)
    b = _batch()
    m.set_target_stats(0.0, 0.3, float(b["z"].mean()))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        feats, log_ref, _ = m.features(b, train=True)
        loss_v = m._loss(*m(feats, log_ref), b["z"].log())
        opt.zero_grad()
        loss_v.backward()
        opt.step()
        first = float(loss_v.detach()) if first is None else first
    assert float(loss_v.detach()) < first - 0.3
    with torch.no_grad():
        mu, log_b = m(*m.features(_batch(seed=1), train=False)[:2])
    rel = ((mu.exp() - _batch(seed=1)["z"]).abs() / _batch(seed=1)["z"]).mean()
    assert rel < 0.05  # pinhole prior + learned correction on a rigid-ish body


def test_bf16_autocast_keeps_the_depth_in_float32():
    """trainer.precision=bf16-mixed: the MLP runs in bf16, but log z = log_ref + correction stays fp32 and
    close to the fp32 result (bf16 rounding of log z itself would be ~0.4% of depth)."""
    torch.manual_seed(0)
    m = DepthModule(net={"width": 64, "depth": 2})
    b = _batch()
    m.set_target_stats(0.3, 0.3, float(b["z"].mean()))
    feats, log_ref, _ = m.features(b, train=False)
    with torch.no_grad():
        mu32, _ = m(feats, log_ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mu16, log_b16 = m(feats, log_ref)
    assert mu16.dtype == torch.float32 and log_b16.dtype == torch.float32
    assert m.net(feats).dtype == torch.float32  # (autocast off again)
    assert (mu16 - mu32).abs().max() < 0.02 and (mu16 - mu32).abs().max() > 0  # bf16 did run, fp32 head
    assert (mu16.exp() / b["z"]).isfinite().all()


def _export(tmp_path, features=None, sigma_scale: float = 1.0) -> DepthPredictor:
    m = DepthModule(net={"width": 32, "depth": 2}, features=features)
    m.set_target_stats(0.5, 0.2, 12.0)
    m.sigma_scale.fill_(sigma_scale)
    path = export_model(m, tmp_path / "m.safetensors", {"data_id": "toy"})
    return path


def test_predictor_roundtrip_numpy_torch_and_broadcast_K(tmp_path):
    path = _export(tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["normalisation"]["name"] == "normalised" and meta["data_id"] == "toy"
    pred = DepthPredictor.load(path)
    b = _batch(20)
    K = geometry.intrinsics(720.0, 720.0, 610.0, 175.0)
    out_t = pred.predict(b["kp"], K)
    out_n = pred.predict(b["kp"].numpy(), K.expand(20, 3, 3).numpy())
    assert isinstance(out_t, DepthPrediction) and out_t.z_m.shape == (20,) and out_t.sigma_m.shape == (20,)
    np.testing.assert_allclose(out_t.z_m, out_n.z_m, rtol=1e-5)
    assert (out_t.sigma_m > 0).all()
    with pytest.raises(ValueError, match="K"):
        pred.predict(b["kp"], torch.zeros(3, 3))
    with pytest.raises(ValueError, match="keypoints_xyc"):
        pred.predict(np.zeros((3, 12, 3)), K)


def test_predictor_finite_with_wider_sigma_when_unseen_and_nan_without_joints(tmp_path):
    pred = DepthPredictor.load(_export(tmp_path))
    kp = _batch(5)["kp"].clone()
    kp[1, :, 2] = 0.01  # all joints below threshold (forced-complete detector): guessed positions
    kp[2, :, :2] = float("nan")  # nothing at all
    kp[3, 2:, 2] = 0.0  # two joints seen
    kp[4, 1:, :2] = float("nan")  # one finite joint: the training mean depth, sigma = z
    out = pred.predict(kp, geometry.intrinsics(720.0, 720.0, 610.0, 175.0))
    has = np.array([True, True, False, True, True])
    assert np.isfinite(out.z_m[has]).all() and np.isfinite(out.sigma_m[has]).all()
    assert np.isnan(out.z_m[2]) and np.isnan(out.sigma_m[2])  # no joint: no depth (not the training mean)
    assert list(out.status[1:]) == ["too_few_joints", "no_joints", "too_few_joints", "too_few_joints"]
    assert out.sigma_m[1] >= 0.3 * out.z_m[1] and out.sigma_m[3] >= 0.3 * out.z_m[3]
    assert out.z_m[4] == pytest.approx(12.0) and out.sigma_m[4] == pytest.approx(out.z_m[4])
    assert pred.predict(np.zeros((0, 17, 3)), np.eye(3)).z_m.shape == (0,)


def test_predictor_refuses_other_normalisation(tmp_path):
    path = _export(tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["normalisation"]["version"] = 0
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="normalisation"):
        DepthPredictor.load(path)
    with pytest.raises(FileNotFoundError):
        DepthPredictor.load(tmp_path / "nope.safetensors")


def test_sigma_is_calibrated_laplace_std_in_metres(tmp_path):
    pred = DepthPredictor.load(_export(tmp_path, features=Normaliser().to_dict(), sigma_scale=0.8))
    assert float(pred.module.sigma_scale) == pytest.approx(0.8)  # the calibration travels with the weights
    b = _batch(8)
    feats, log_ref, _ = pred.normaliser(b["kp"], geometry.intrinsics(720.0, 720.0, 610.0, 175.0))
    with torch.no_grad():
        mu, log_b = pred.module(feats, log_ref)
    out = pred.predict(b["kp"], geometry.intrinsics(720.0, 720.0, 610.0, 175.0), flip_tta=False)
    raw = (0.8 * mu.exp() * math.sqrt(2) * log_b.exp()).numpy()
    ok = out.status == "ok"  # the untrained net puts some people beyond its depth range: widened sigma
    assert ok.sum() >= 4
    np.testing.assert_allclose(out.sigma_m[ok], raw[ok], rtol=1e-4)
    wide = np.maximum(3 * raw, 0.3 * out.z_m)
    np.testing.assert_allclose(out.sigma_m[~ok], wide[~ok], rtol=1e-4)


def test_model_files_without_sigma_scale_still_load(tmp_path):
    """Models exported before calibration existed load with their raw Laplace std (scale 1)."""
    from safetensors.torch import load_file, save_file

    path = _export(tmp_path, sigma_scale=0.5)
    state = load_file(str(path))
    del state["sigma_scale"]
    save_file(state, str(path))
    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["sha256"]  # such old exports carry no checksum either: they load with a warning
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="no sha256"):
        assert float(DepthPredictor.load(path).module.sigma_scale) == 1.0


def test_histogram_quantile_matches_numpy():
    from depth_pose.models.module import histogram_quantile

    x = np.random.default_rng(0).lognormal(0.0, 0.8, 200_000)
    lo, hi, bins = -12.0, 6.0, 3600
    counts = torch.histc(torch.tensor(np.log(x), dtype=torch.float32), bins=bins, min=lo, max=hi)
    for q in (0.1, 0.5, 0.6827, 0.95):
        assert histogram_quantile(counts, q, lo, hi) == pytest.approx(np.quantile(x, q), rel=3e-3)
    assert histogram_quantile(torch.zeros(bins), 0.5, lo, hi) == 1.0


@pytest.mark.real
def test_shipped_default_model_on_kitti_dev(real_dir):
    """The shipped model: finite depth for all 178 real KITTI pedestrians, ALE below the shoulder-hip rule."""
    rows = [json.loads(line) for line in (real_dir / "kitti_pedestrians_dev.jsonl").read_text().splitlines()]
    kp = np.array([r["keypoints_xyc"] for r in rows], dtype=np.float32)
    K = np.array([r["K"] for r in rows], dtype=np.float32)
    z = np.array([r["gt_z_m"] for r in rows], dtype=np.float32)
    pred = DepthPredictor.load()
    assert pred.metadata["normalisation"]["name"] == "normalised" and "data_id" in pred.metadata
    out = pred.predict(kp, K)
    assert len(z) == 178 and np.isfinite(out.z_m).all() and np.isfinite(out.sigma_m).all()
    ale = float(np.abs(out.z_m - z).mean())
    assert ale < 1.15, f"KITTI dev ALE {ale:.3f} m is not below the shoulder-hip rule's 1.15 m"


def test_gravity_model_masked_up_equals_no_up_and_trains_with_it(tmp_path):
    feats = Normaliser(gravity=True).to_dict()
    path = _export(tmp_path, features=feats)
    pred = DepthPredictor.load(path)
    assert pred.uses_gravity and not DepthPredictor.load(_export(tmp_path / "plain")).uses_gravity
    b = _batch(16)
    K = geometry.intrinsics(720.0, 720.0, 610.0, 175.0)
    up = geometry.up_from_pitch_roll(torch.linspace(-60, 10, 16), torch.zeros(16))
    none = pred.predict(b["kp"], K)
    nan = pred.predict(b["kp"], K, up=torch.full((16, 3), float("nan")))
    np.testing.assert_array_equal(none.z_m, nan.z_m)
    np.testing.assert_array_equal(none.sigma_m, nan.sigma_m)
    given = pred.predict(b["kp"], K, up=up)
    assert not np.allclose(given.z_m, none.z_m)  # the (random) network does read it
    # One up for all rows broadcasts; a mix of known and unknown rows equals predicting them separately.
    one = pred.predict(b["kp"], K, up=up[3])
    np.testing.assert_allclose(one.z_m[3], given.z_m[3], rtol=1e-6)
    mixed = up.clone()
    mixed[::2] = float("nan")
    mix = pred.predict(b["kp"], K, up=mixed)
    np.testing.assert_allclose(mix.z_m[::2], none.z_m[::2], rtol=1e-6)
    np.testing.assert_allclose(mix.z_m[1::2], given.z_m[1::2], rtol=1e-6)
    with pytest.raises(ValueError, match="up must have shape"):
        pred.predict(b["kp"], K, up=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="unit vector"):
        pred.predict(b["kp"], K, up=np.array([0.0, -5.0, 0.0]))
    # A training step reads batch["up"] (NaN rows = unknown) and the loss is finite.
    m = DepthModule(net={"width": 32, "depth": 2}, features=feats, augment={"p_hide_up": 0.5})
    batch = {**_batch(64), "up": geometry.up_from_pitch_roll(torch.full((64,), -40.0), torch.zeros(64))}
    f, _, _ = m.features(batch, train=False)
    assert f.shape == (64, 59) and (f[:, 58] == 1).all()
    loss = m.training_step(batch, 0)
    assert torch.isfinite(loss)
