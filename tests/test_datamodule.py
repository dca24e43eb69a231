"""Device-resident datamodule: pose-grouped splits, per-epoch permutations, rank slices, memory check."""

from __future__ import annotations

import pytest
import torch

from depth_pose.data import DeviceBatches, DeviceDataModule, load_host_set, rank_slice, split_indices
from depth_pose.data.device_data import check_fits, n_batches_for


def test_load_host_set_reads_the_shards(toy_set_dir):
    h = load_host_set(toy_set_dir)
    assert len(h) == 24000 and h.kp.shape == (24000, 17, 3) and h.intr.shape == (24000, 5)
    assert h.kp.dtype == torch.float32 and 2.9 < float(h.z.min()) and float(h.z.max()) < 40.5
    assert 0.15 < float(h.special.float().mean()) < 0.25  # the fixture's hands-up share (20%)


def test_split_is_by_pose_disjoint_and_complete():
    pose_id = torch.arange(1000).repeat_interleave(8)
    sp = split_indices(pose_id, (0.1, 0.05), seed=3)
    allrows = torch.cat(list(sp.values()))
    assert allrows.numel() == 8000 and allrows.unique().numel() == 8000
    poses = {k: set(pose_id[v].tolist()) for k, v in sp.items()}
    assert not (poses["train"] & poses["val"]) and not (poses["train"] & poses["test"])
    assert abs(len(poses["val"]) - 100) <= 1 and abs(len(poses["test"]) - 50) <= 1
    again = split_indices(pose_id, (0.1, 0.05), seed=3)
    assert all(torch.equal(sp[k], again[k]) for k in sp)  # stored seed -> same split
    assert not torch.equal(split_indices(pose_id, (0.1, 0.05), seed=4)["val"].sort()[0], sp["val"].sort()[0])


def test_batches_cover_each_row_once_per_epoch_with_new_order():
    rows = torch.arange(10_001)
    epoch = {"e": 0}
    it = DeviceBatches(
        {"row": rows, "z": rows.float()},
        batch_size=512,
        n_batches=n_batches_for(10_001, 1, 512),
        shuffle=True,
        seed=1,
        epoch_fn=lambda: epoch["e"],
    )
    seen = [torch.cat([b["row"] for b in it])]
    epoch["e"] = 1
    seen.append(torch.cat([b["row"] for b in it]))
    for s in seen:
        assert torch.equal(s.sort()[0], rows)
    assert not torch.equal(seen[0], seen[1])
    assert len(it) == 20 and max(b["row"].numel() for b in it) <= 512


@pytest.mark.parametrize("n,world", [(10, 3), (1001, 4), (7, 7)])
def test_rank_slices_partition(n, world):
    parts = [rank_slice(n, r, world) for r in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts[:-1], parts[1:]))
    sizes = [b - a for a, b in parts]
    assert max(sizes) - min(sizes) <= 1


def test_memory_check_refuses_before_oom():
    check_fits(1000, torch.device("cpu"))
    with pytest.raises(MemoryError, match="samples need"):
        check_fits(10**12, torch.device("cpu"))


def test_datamodule_holds_splits_as_tensors(toy_set_dir):
    dm = DeviceDataModule(dir=toy_set_dir, batch_size=1000, val_fraction=0.1, test_fraction=0.1, split_seed=0)
    dm.setup("fit")
    sizes = dm.split_sizes
    assert sum(sizes.values()) == 24000 and 2000 < sizes["val"] < 2800
    tr = dm.splits["train"]
    assert tr["kp"].shape == (sizes["train"], 17, 3) and tr["row"].dtype == torch.int64
    batches = list(dm.train_dataloader())
    assert len(batches) == -(-sizes["train"] // 1000)
    b = batches[0]
    assert set(b) == {"kp", "intr", "z", "special", "row", "up", "image_wh"} and b["kp"].device.type == "cpu"
    assert (b["image_wh"] == torch.tensor([1242.0, 375.0])).all()  # the shards' img_w, img_h (border input)
    # The camera's up direction from the shards' tilt/roll columns: known on every training row, on every
    # other row of the evaluation splits (their metrics and the sigma calibration cover both cases).
    import pandas as pd

    from depth_pose import geometry
    from depth_pose.shards import read_table

    cols = read_table(toy_set_dir, columns=["tilt_deg", "roll_deg"]).to_pandas()
    want = geometry.up_from_pitch_roll(
        torch.tensor(cols.tilt_deg.to_numpy()), torch.tensor(cols.roll_deg.to_numpy())
    )
    torch.testing.assert_close(b["up"], want[b["row"]])
    assert torch.isfinite(tr["up"]).all() and (b["up"][:, 1] < -0.5).all()  # the toy cameras: roughly level
    val_up = dm.splits["val"]["up"]
    assert torch.isnan(val_up[1::2]).all() and torch.isfinite(val_up[::2]).all()
    assert isinstance(cols, pd.DataFrame)
    assert torch.cat([b["row"] for b in batches]).unique().numel() == sizes["train"]
    val_rows = torch.cat([b["row"] for b in dm.val_dataloader()])
    assert not set(val_rows.tolist()) & set(tr["row"].tolist())
    with pytest.raises(ValueError, match="data.dir"):
        DeviceDataModule()
