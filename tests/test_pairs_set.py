"""Render pairs as a training set (issue 20): the converter and the datamodule's extra training rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depth_pose.data import DeviceDataModule
from depth_pose.data.device_data import HostSet, load_host_set
from depth_pose.errors import InputError
from depth_pose.shards import CorruptSetError
from generation.render.pairs_set import POSE_ID_OFFSET, build


def pair_line(i: int, rng: np.random.Generator, missed: bool = False) -> dict:
    gt = rng.uniform(100, 500, (17, 2))
    kp = np.concatenate([gt + rng.normal(0, 3, (17, 2)), rng.uniform(0.2, 1, (17, 1))], 1).round(2).tolist()
    kp[3] = [None, None, 0.0]  # an unreported joint
    return {
        "id": f"r{i}",
        "group": "full",
        "pose": ["walk", "kneel", "uniform"][i % 3],
        "keypoints_xyc": [[None] * 3] * 17 if missed else kp,
        "gt_xy": gt.round(2).tolist(),
        "K": [[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]],
        "image_wh": [640, 480],
        "gt_z_m": float(rng.uniform(2, 20)),
        "pitch_deg": 10.0,
        "roll_deg": 0.0,
        "missed": missed,
    }


def write_parts(root, n_parts: int = 4, per: int = 5):
    rng = np.random.default_rng(0)
    (root / "parts").mkdir(parents=True)
    for k in range(n_parts):
        lines = [pair_line(k * per + i, rng, missed=i == 0) for i in range(per)]
        (root / "parts" / f"part_{k:05d}.jsonl").write_text("\n".join(json.dumps(o) for o in lines) + "\n")
    return root


def test_build_leaves_out_held_out_parts_and_missed_people(tmp_path):
    pairs = write_parts(tmp_path / "pairs")
    m = build(tmp_path / "set", [pairs], exclude_mod=2)
    assert m["num_samples"] == 2 * 4 and m["missed_people"] == 2 and len(m["pairs"]) == 2
    h = load_host_set(tmp_path / "set")
    assert len(h) == 8 and (h.pose_id >= POSE_ID_OFFSET).all()
    assert (h.kp[:, 3, 2] == 0).all() and (h.kp[:, 0, 2] > 0).all()
    assert torch.allclose(h.intr[0], torch.tensor([600.0, 600.0, 320.0, 240.0, 0.0]))
    assert torch.equal(h.image_wh[0], torch.tensor([640.0, 480.0])) and torch.isfinite(h.up).all()
    kept = [i for k in (1, 3) for i in range(5 * k + 1, 5 * k + 5)]  # parts 1 and 3, first person missed
    assert h.special.tolist() == [i % 3 == 1 for i in kept]  # kneel: special; walk, uniform: ordinary
    with pytest.raises(InputError, match="not empty"):
        build(tmp_path / "set", [pairs])


def test_extra_rows_join_the_training_split_only_and_are_verified(tmp_path):
    pairs = write_parts(tmp_path / "pairs")
    build(tmp_path / "set", [pairs], exclude_mod=0)
    n = 400
    g = torch.Generator().manual_seed(0)
    main = HostSet(
        kp=torch.rand(n, 17, 3, generator=g) * 300,
        intr=torch.tensor([[600.0, 600.0, 320.0, 240.0, 0.0]]).repeat(n, 1),
        z=torch.rand(n, generator=g) * 10 + 1,
        special=torch.zeros(n, dtype=torch.bool),
        pose_id=torch.arange(n) // 4,
        up=torch.full((n, 3), float("nan")),
        image_wh=torch.full((n, 2), float("nan")),
    )
    plain = DeviceDataModule(host_set=main, batch_size=64, device="cpu")
    plain.setup()
    dm = DeviceDataModule(
        host_set=main, batch_size=64, device="cpu", extra_dir=tmp_path / "set", extra_repeat=3
    )
    dm.setup()
    assert dm.split_sizes["train"] == plain.split_sizes["train"] + 16 * 3
    for s in ("val", "test"):
        assert torch.equal(dm.splits[s]["z"], plain.splits[s]["z"])
    t = dm.splits["train"]
    assert (t["row"] == -1).sum() == 48 and torch.isfinite(t["image_wh"][t["row"] == -1]).all()
    assert sum(int(b["z"].numel()) for b in dm.train_dataloader()) == dm.split_sizes["train"]
    shard = next((tmp_path / "set").glob("shard-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-9] + b"corrupted")
    with pytest.raises(CorruptSetError):
        DeviceDataModule(host_set=main, device="cpu", extra_dir=tmp_path / "set").setup()
    with pytest.raises(InputError, match="extra_repeat"):
        DeviceDataModule(host_set=main, extra_dir=tmp_path / "set", extra_repeat=0)
