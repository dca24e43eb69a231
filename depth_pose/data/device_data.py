"""The whole synthetic set as a few tensors on the training device, sliced into batches there.

No per-sample ``Dataset.__getitem__``, no workers, no host->device copy per batch: the shards are read once
(:func:`depth_pose.shards.read_table`), split train/val/test by pose (a stored seed, so cameras of one pose
never straddle two splits), moved to the device once (GPU when the trainer has one), and each epoch draws a
permutation on the device and yields index slices. Under DDP each rank keeps only its own contiguous slice of
each split (sizes differ by at most one) and every rank yields the same number of batches, so one epoch
covers the split exactly once over all ranks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from depth_pose.errors import InputError, SetTooLargeError
from depth_pose.geometry import up_from_pitch_roll
from depth_pose.schema import IMAGE_COLS, INTRINSIC_COLS, KP_COLS, TARGET_COL

COLUMNS: list[str] = [
    *KP_COLS,
    *INTRINSIC_COLS,
    *IMAGE_COLS,
    TARGET_COL,
    "pose_id",
    "preset",
    "hands_up",
    "tilt_deg",
    "roll_deg",
]
BYTES_PER_SAMPLE = 51 * 4 + 5 * 4 + 4 + 1 + 8 + 3 * 4 + 2 * 4  # kp, intr, z, special, row, up, image_wh
SPLITS = ("train", "val", "test")
# Presets counted as ordinary upright poses by the pose-invariance metric (everything else is "special").
STANDARD_PRESETS = frozenset({"", "standing", "stand", "walk", "walking"})


@dataclass
class HostSet:
    """A dataset in host memory (torch CPU tensors): what :func:`load_host_set` returns."""

    kp: Tensor  # (N, 17, 3) float32 pixels + confidence
    intr: Tensor  # (N, 5) float32 fx, fy, cx, cy, skew
    z: Tensor  # (N,) float32 metres
    special: Tensor  # (N,) bool: an unusual preset pose (crouch, kneel, sit, lying, ...) or hands up
    pose_id: Tensor  # (N,) int64
    up: Tensor | None = None  # (N, 3) float32 camera up direction (from the tilt/roll columns), NaN = unknown
    image_wh: Tensor | None = None  # (N, 2) float32 image width, height in pixels (img_w, img_h); NaN unknown

    def head(self, m: int) -> HostSet:
        """The first ``m`` rows."""
        return HostSet(
            self.kp[:m],
            self.intr[:m],
            self.z[:m],
            self.special[:m],
            self.pose_id[:m],
            None if self.up is None else self.up[:m],
            None if self.image_wh is None else self.image_wh[:m],
        )

    def __len__(self) -> int:
        return int(self.z.shape[0])


def load_host_set(path: str | Path, max_rows: int | None = None, verify: bool = True) -> HostSet:
    """Read the needed columns of a dataset directory (Parquet shards + manifest) into host tensors (the first
    ``max_rows`` rows only, when given). ``verify``: check each shard read against the manifest's sha256
    (:class:`depth_pose.shards.CorruptSetError` when one does not match); row counts are always checked."""
    from depth_pose.shards import read_table_deferred

    # The shards' sha256 is computed in a thread while the columns below are converted; check() waits for it
    # before anything is returned or validated (a corrupt set is refused as corrupt, naming the shard).
    table, check = read_table_deferred(path, columns=COLUMNS, max_rows=max_rows, verify=verify)

    def col(name: str, dtype=np.float32) -> np.ndarray:  # writable (torch.from_numpy warns on Arrow's views)
        return np.require(
            table.column(name).to_numpy(zero_copy_only=False).astype(dtype, copy=False), requirements="W"
        )

    kp = np.stack([col(c) for c in KP_COLS], axis=1).reshape(-1, 17, 3)
    intr = np.stack([col(c) for c in INTRINSIC_COLS], axis=1)
    preset = np.asarray(table.column("preset").to_pylist(), dtype=object)
    unusual = np.array([p is not None and p not in STANDARD_PRESETS for p in preset], dtype=bool)
    special = unusual | col("hands_up", bool)
    z = col(TARGET_COL)
    up = up_from_pitch_roll(torch.from_numpy(col("tilt_deg")), torch.from_numpy(col("roll_deg")))
    image_wh = np.stack([col(c) for c in IMAGE_COLS], axis=1)
    check()
    if table.num_rows == 0:
        raise InputError(f"dataset {path} has no rows")
    if not np.isfinite(z).all() or (z <= 0).any():
        raise InputError(f"dataset {path}: target {TARGET_COL} has non-finite or non-positive values")
    return HostSet(
        torch.from_numpy(kp),
        torch.from_numpy(np.nan_to_num(intr)),
        torch.from_numpy(z),
        torch.from_numpy(special.astype(bool)),
        torch.from_numpy(col("pose_id", np.int64)),
        up,
        torch.from_numpy(image_wh),
    )


def split_indices(pose_id: Tensor, fractions: tuple[float, float], seed: int) -> dict[str, Tensor]:
    """Row indices of train/val/test, split by pose (groups of rows with the same ``pose_id``), seeded."""
    val_frac, test_frac = fractions
    if val_frac < 0 or test_frac < 0 or val_frac + test_frac >= 1:
        raise InputError(f"bad split fractions data.val_fraction={val_frac} data.test_fraction={test_frac}")
    _, inv = torch.unique(pose_id, return_inverse=True)
    n_groups = int(inv.max()) + 1
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n_groups, generator=g)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n_groups)
    u = (rank[inv].double() + 0.5) / n_groups  # position of each row's group in the shuffled group list
    split = torch.where(u < val_frac, 1, torch.where(u < val_frac + test_frac, 2, 0))
    out = {}
    for i, name in enumerate(SPLITS):
        idx = torch.nonzero(split == i).squeeze(1)
        out[name] = idx[torch.randperm(idx.numel(), generator=g)]  # rows in random order
    return out


def rank_slice(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, end)`` of rank ``rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device`` (CUDA: ``mem_get_info``; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_fits(n: int, device: torch.device, margin: float = 0.8) -> None:
    """Raise a clear :class:`SetTooLargeError` (a MemoryError) before moving ``n`` samples to ``device`` if
    they would not fit."""
    need = n * BYTES_PER_SAMPLE
    free = available_memory(device)
    if need > margin * free:
        raise SetTooLargeError(
            f"{n:,} samples need {need / 2**30:.2f} GiB on {device}, but only {free / 2**30:.2f} GiB is free "
            f"(limit {margin:.0%}); use fewer samples (data.num_samples / data.max_samples) "
            "or more devices (DDP)"
        )


class DeviceBatches:
    """Iterable of batches (dicts of device tensors) over one split slice; a fresh permutation per epoch."""

    def __init__(
        self,
        tensors: dict[str, Tensor],
        batch_size: int,
        n_batches: int,
        shuffle: bool,
        seed: int = 0,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        self.tensors = tensors
        self.n = int(next(iter(tensors.values())).shape[0])
        self.batch_size = batch_size
        self.n_batches = n_batches
        self.shuffle = shuffle
        self.seed = seed
        self.epoch_fn = epoch_fn
        self._epoch = 0
        if self.n < n_batches:
            raise ValueError(f"a rank holds {self.n} samples, fewer than the {n_batches} batches needed")

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else self._epoch
        self._epoch += 1
        dev = next(iter(self.tensors.values())).device
        if self.shuffle:
            g = torch.Generator(device=dev).manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.n, generator=g, device=dev)
        else:
            order = None
        # n_batches near-equal slices (identical count on every rank, none empty).
        bounds = [round(i * self.n / self.n_batches) for i in range(self.n_batches + 1)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            if order is None:
                yield {k: v[a:b] for k, v in self.tensors.items()}
            else:
                idx = order[a:b]
                yield {k: v.index_select(0, idx) for k, v in self.tensors.items()}


def n_batches_for(n_split: int, world: int, batch_size: int) -> int:
    """Batches per rank so that every rank yields the same count: ceil(ceil(n / world) / batch_size)."""
    return max(1, math.ceil(math.ceil(n_split / world) / batch_size))
