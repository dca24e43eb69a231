"""LightningDataModule over a synthetic set held on the training device (see :mod:`.device_data`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from depth_pose.data.device_data import (
    DeviceBatches,
    HostSet,
    check_fits,
    load_host_set,
    n_batches_for,
    rank_slice,
    split_indices,
)
from depth_pose.errors import InputError

log = logging.getLogger(__name__)


class DeviceDataModule(L.LightningDataModule):
    """Loads ``dir`` once, splits by pose with ``split_seed``, keeps this rank's slice of each split on its
    device.

    ``dir``: a dataset directory (Parquet shards + manifest.json), or pass ``host_set`` directly (tests,
    benchmarks).
    ``max_samples``: optional cap (first rows) for quick runs. ``device``: override (default: the trainer's).
    ``verify``: check the shards against the manifest's sha256 while reading (default; ``False`` only for a
    trusted set in a hot loop).
    ``extra_dir``: a second set (e.g. YOLO on renders, :mod:`generation.render.pairs_set`) whose rows join the
    training split only, ``extra_repeat`` times each (validation and test stay on ``dir``'s split, so runs
    with and without it are scored on the same rows); verified like ``dir``.
    """

    def __init__(
        self,
        dir: str | Path | None = None,
        batch_size: int = 4096,
        eval_batch_size: int = 65536,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        max_samples: int | None = None,
        memory_margin: float = 0.8,
        host_set: HostSet | None = None,
        device: str | None = None,
        verify: bool = True,
        extra_dir: str | Path | None = None,
        extra_repeat: int = 1,
    ) -> None:
        super().__init__()
        if dir is None and host_set is None:
            raise InputError("DeviceDataModule needs a dataset directory (data.dir) or a host_set")
        self.dir = Path(dir) if dir is not None else None
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.fractions = (float(val_fraction), float(test_fraction))
        self.split_seed = int(split_seed)
        self.shuffle_seed = int(shuffle_seed)
        self.max_samples = max_samples
        self.memory_margin = memory_margin
        self._host = host_set
        self._device = torch.device(device) if device else None
        self.verify = bool(verify)
        self.extra_dir = Path(extra_dir) if extra_dir else None
        self.extra_repeat = int(extra_repeat)
        if self.extra_repeat < 1:
            raise InputError(f"data.extra_repeat must be >= 1, got {extra_repeat}")
        self.splits: dict[str, dict[str, Tensor]] = {}
        self.split_sizes: dict[str, int] = {}
        self.rank, self.world = 0, 1

    # --- placement ---------------------------------------------------------------------------------
    def _placement(self) -> tuple[torch.device, int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            dev = self._device or trainer.strategy.root_device
            return dev, trainer.global_rank, trainer.world_size
        return self._device or torch.device("cpu"), 0, 1

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        device, self.rank, self.world = self._placement()
        host = (
            self._host
            if self._host is not None
            else load_host_set(
                self.dir,
                max_rows=None if self.max_samples is None else int(self.max_samples),
                verify=self.verify,
            )
        )
        if self.max_samples is not None and len(host) > int(self.max_samples):
            m = int(self.max_samples)
            host = host.head(m)
        idx = split_indices(host.pose_id, self.fractions, self.split_seed)
        per_rank = sum(
            rank_slice(len(v), self.rank, self.world)[1] - rank_slice(len(v), self.rank, self.world)[0]
            for v in idx.values()
        )
        extra = load_host_set(self.extra_dir, verify=self.verify) if self.extra_dir is not None else None
        if extra is not None:
            ea, eb = rank_slice(len(extra), self.rank, self.world)
            per_rank += (eb - ea) * self.extra_repeat
        check_fits(per_rank, device, self.memory_margin)
        for name, rows in idx.items():
            self.split_sizes[name] = int(rows.numel())
            a, b = rank_slice(rows.numel(), self.rank, self.world)
            r = rows[a:b]
            self.splits[name] = {
                "kp": host.kp[r].to(device),
                "intr": host.intr[r].to(device),
                "z": host.z[r].to(device),
                "special": host.special[r].to(device),
                "row": r.to(device),
            }
            if host.up is not None:
                up = host.up[r].clone()
                if name != "train":  # evaluation splits: the up direction known on every other row
                    up[1::2] = float("nan")
                self.splits[name]["up"] = up.to(device)
            if host.image_wh is not None:
                wh = host.image_wh[r].clone()
                if name != "train":  # evaluation splits: the image size unknown on rows i % 4 >= 2 (half,
                    # independent of the rows without up), so metrics and calibration cover both
                    wh[(torch.arange(wh.shape[0]) % 4) >= 2] = float("nan")
                self.splits[name]["image_wh"] = wh.to(device)
        if extra is not None:
            self._add_extra(extra, device)
        self._host = None  # the host copy is not needed any more
        log.info("data on %s (rank %d/%d): %s", device, self.rank, self.world, self.split_sizes)

    def _add_extra(self, extra: HostSet, device: torch.device) -> None:
        """Append this rank's share of ``extra`` (``extra_repeat`` times) to the training split; its rows
        carry ``row`` = -1 (not rows of ``dir``)."""
        a, b = rank_slice(len(extra), self.rank, self.world)
        r = torch.arange(a, b).repeat(self.extra_repeat)
        t = self.splits["train"]
        add = {"kp": extra.kp, "intr": extra.intr, "z": extra.z, "special": extra.special}
        if "up" in t:
            add["up"] = extra.up if extra.up is not None else torch.full((len(extra), 3), float("nan"))
        if "image_wh" in t:
            add["image_wh"] = (
                extra.image_wh if extra.image_wh is not None else torch.full((len(extra), 2), float("nan"))
            )
        for k, v in add.items():
            t[k] = torch.cat([t[k], v[r].to(device, t[k].dtype)])
        t["row"] = torch.cat([t["row"], torch.full((r.numel(),), -1, dtype=t["row"].dtype, device=device)])
        self.split_sizes["train"] += len(extra) * self.extra_repeat
        log.info("training split + %d rows of %s x %d", len(extra), self.extra_dir, self.extra_repeat)

    # --- loaders -----------------------------------------------------------------------------------
    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def _batches(self, name: str, train: bool) -> DeviceBatches:
        if not self.splits:
            self.setup()
        n = self.split_sizes[name]
        if n == 0:
            raise InputError(
                f"the {name} split is empty; adjust data.val_fraction/test_fraction or the set size"
            )
        bs = self.batch_size if train else self.eval_batch_size
        return DeviceBatches(
            self.splits[name],
            bs,
            n_batches_for(n, self.world, bs),
            shuffle=train,
            seed=self.shuffle_seed,
            epoch_fn=self._epoch if train else None,
        )

    def train_dataloader(self) -> DeviceBatches:
        return self._batches("train", True)

    def val_dataloader(self) -> DeviceBatches:
        return self._batches("val", False)

    def test_dataloader(self) -> DeviceBatches:
        return self._batches("test", False)

    # --- statistics for the model's target standardisation --------------------------------------------
    @torch.no_grad()
    def target_stats(self, normaliser: Any, strategy: Any = None) -> tuple[float, float, float]:
        """Mean/std of ``log z - log_ref`` and mean depth over the whole train split (summed over ranks)."""
        from depth_pose.features import K_from_columns

        t = self.splits["train"]
        sums = torch.zeros(4, dtype=torch.float64, device=t["z"].device)
        for a in range(0, t["z"].shape[0], 262144):
            sl = slice(a, a + 262144)
            obs = normaliser.observe(t["kp"][sl], K_from_columns(*t["intr"][sl].unbind(1)))
            _, log_ref = normaliser.encode(obs)
            v = (t["z"][sl].log() - log_ref).double()
            sums += torch.stack(
                [
                    torch.tensor(float(v.numel()), device=v.device, dtype=torch.float64),
                    v.sum(),
                    v.square().sum(),
                    t["z"][sl].double().sum(),
                ]
            )
        if strategy is not None:
            sums = strategy.reduce(sums, reduce_op="sum")
        n = sums[0].clamp_min(1)
        mean = sums[1] / n
        std = (sums[2] / n - mean.square()).clamp_min(1e-12).sqrt()
        return float(mean), float(std), float(sums[3] / n)
