"""dp-generate's shard worker processes (generation/pipeline.py ``workers``) and the fused projection the
generator's hot path uses (depth_pose.geometry.world_to_pixels)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import compose

from depth_pose import geometry, shards
from generation import config, dataset, pipeline


def _cfg(tmp: Path, *overrides: str):
    cfg = compose("generate", ["body.n_bodies=64", "progress=false", f"paths.root_dir={tmp}", *overrides])
    cfg.paths.output_dir = str(tmp)
    return config.with_defaults(cfg)


def test_workers_write_the_same_data(tmp_path):
    """2 forked workers write byte-identical shards to the in-process run (each shard has its own seed)."""
    common = ["num_samples=3000", "shard_size=1000", "seed=5"]
    one = _cfg(tmp_path, *common, f"out_dir={tmp_path / 'one'}")
    two = _cfg(tmp_path, *common, f"out_dir={tmp_path / 'two'}")
    one.workers, two.workers = 1, 2
    assert dataset.dataset_id(one) == dataset.dataset_id(two)  # workers do not change the data
    a, b = pipeline.generate(one), pipeline.generate(two)
    ma, mb = shards.load_manifest(a), shards.load_manifest(b)
    assert mb["complete"] and [s["index"] for s in mb["shards"]] == [0, 1, 2]
    assert [s["sha256"] for s in ma["shards"]] == [s["sha256"] for s in mb["shards"]]
    assert len(shards.read_frame(b)) == 3000


def test_bad_workers_rejected(tmp_path):
    cfg = _cfg(tmp_path, "num_samples=10", f"out_dir={tmp_path / 'x'}")
    cfg.workers = -1
    with pytest.raises(config.GenerationConfigError, match="workers"):
        pipeline.generate(cfg)


def test_world_to_pixels_matches_project():
    """The fused projection equals world_to_camera + project (incl. NaN behind the camera)."""
    g = torch.Generator().manual_seed(0)
    B = 500
    pts = torch.randn(B, 17, 3, generator=g) + torch.tensor([0.0, 0.0, 2.0])
    R = torch.linalg.qr(torch.randn(B, 3, 3, generator=g))[0]
    t = torch.randn(B, 3, generator=g) * 0.5
    K = geometry.intrinsics(
        300 + 500 * torch.rand(B, generator=g),
        300 + 500 * torch.rand(B, generator=g),
        640 * torch.rand(B, generator=g),
        480 * torch.rand(B, generator=g),
    )
    K[:, 0, 1] = torch.randn(B, generator=g)  # skew
    cam_ref = geometry.world_to_camera(pts, R, t)
    px_ref = geometry.project(cam_ref, K)
    cam, px = geometry.world_to_pixels(pts, R, t, K)
    assert torch.allclose(cam, cam_ref, atol=1e-5)
    nan = px_ref.isnan()
    assert nan.any() and (~nan).any() and torch.equal(px.isnan(), nan)
    ok = cam_ref[..., 2] > 0.1  # (nearer points project to huge pixels: only round-off differs there)
    assert ok.sum() > 0.5 * B * 17
    assert torch.allclose(px[ok], px_ref[ok], rtol=1e-5, atol=1e-3)


def test_pose_device_is_checked_and_names_its_own_set(tmp_path):
    """pose_device: poses drawn with the device's generator (auto: off the CPU) are other numbers on a GPU, so
    another dataset id; on the CPU the same generator as before (same id, same data); a bad value: one clear
    error."""
    base = _cfg(tmp_path, "num_samples=800", "shard_size=800", "seed=2", f"out_dir={tmp_path / 'a'}")
    dev = _cfg(tmp_path, "num_samples=800", "shard_size=800", "seed=2", "pose_device=device")
    assert config.pose_device(base) == "cpu" and dataset.dataset_id(base) == dataset.dataset_id(dev)
    ids = {}
    for pose in ("auto", "device", "cpu"):
        gpu = base.copy()
        gpu.device, gpu.pose_device = "cuda", pose
        ids[pose] = dataset.dataset_id(gpu)
    assert ids["auto"] == ids["device"] != ids["cpu"] != dataset.dataset_id(base)
    gpu.pose_device = "cpu"  # poses on the CPU: the GPU set's id as before pose_device existed
    assert "pose_device" not in dataset.id_payload(gpu) and dataset.id_payload(gpu)["device"] == "cuda"
    dev.out_dir = str(tmp_path / "b")
    a, b = pipeline.generate(base), pipeline.generate(dev)
    sha = [[s["sha256"] for s in shards.load_manifest(d)["shards"]] for d in (a, b)]
    assert sha[0] == sha[1]
    bad = _cfg(tmp_path, "num_samples=10", "pose_device=gpu", f"out_dir={tmp_path / 'c'}")
    with pytest.raises(config.GenerationConfigError, match="pose_device"):
        pipeline.generate(bad)


def test_batch_size_does_not_change_the_data(tmp_path):
    """``batch_size`` (rows posed per body-model call) is speed only: a shard drawn in batches of 800 rows
    (100 poses, chunks split across batches) equals the one drawn in one batch, column for column."""
    import numpy as np

    from generation.generator import Generator

    gen = Generator(_cfg(tmp_path, "num_samples=2000", "shard_size=2000"))
    one, parts = gen.shard(0, 2000, 0, 0, 7), gen.shard(0, 2000, 0, 0, 7, batch_size=800)
    assert one.keys() == parts.keys()
    for k, v in one.items():
        if isinstance(v, np.ndarray):
            assert np.array_equal(v, parts[k], equal_nan=v.dtype.kind == "f"), k


def test_resuming_a_gpu_set_made_with_cpu_poses_names_the_fix(tmp_path):
    """A GPU set whose poses were drawn on the CPU (pose_device=cpu, the only way before the key existed) is
    refused under the new default (auto: on the GPU), with the override that resumes it in the line."""
    old = _cfg(tmp_path, "num_samples=800", "shard_size=800", "pose_device=cpu")
    new = _cfg(tmp_path, "num_samples=800", "shard_size=800")
    old.device = new.device = "cuda"
    out = tmp_path / "gpu_set"
    out.mkdir()
    shards.write_manifest(out, dataset.new_manifest(old, dataset.dataset_id(old), 1))
    with pytest.raises(config.GenerationConfigError, match="differs in: pose_device.*add pose_device=cpu"):
        dataset.prepare_out_dir(new, out, dataset.dataset_id(new), 1)
    old_id = dataset.dataset_id(old)
    assert dataset.prepare_out_dir(old, out, old_id, 1)["dataset_id"] == old_id  # pose_device=cpu resumes it
