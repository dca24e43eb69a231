"""The shard worker pool: shards written in-process or by forked workers that share the parent's body bank
copy-on-write; each shard depends only on its own seed, so the data does not depend on the number of workers.
Also :func:`keep_freed_memory`, the glibc allocator setting dp-generate's own processes use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from omegaconf import DictConfig

from depth_pose import shards
from generation.config import GenerationConfigError
from generation.generator import Generator
from generation.lifetime import die_with_parent

_WORKER_GEN: Generator | None = None  # the Generator a forked shard worker inherits


def n_workers(cfg: DictConfig, n_tasks: int) -> int:
    """Worker processes for ``n_tasks`` shards: ``cfg.workers`` (0: one per CPU core), at most one per shard;
    1 (in-process) on CUDA or where ``fork`` is unavailable."""
    import multiprocessing as mp
    import os

    w = int(cfg.get("workers", 1))
    if w < 0:
        raise GenerationConfigError(f"workers must be >= 0, got {w}")
    if w == 0:
        w = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if str(cfg.device) != "cpu" or "fork" not in mp.get_all_start_methods():
        return 1
    return max(1, min(w, n_tasks))


def write_one(gen: Generator, task: tuple) -> dict:
    i, rows, row_off, pose_off, seed, batch, out_dir = task
    cols = gen.shard(i, rows, row_off, pose_off, seed, batch)
    return shards.write_shard(out_dir, i, shards.to_table(cols))


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process (no mmap for blocks below 1 GiB, no trimming).

    The generator allocates and frees dozens of tensors of several MB per batch; by default each comes from a
    fresh ``mmap`` and is page-faulted in again (the noise stage is slower and erratic without this:
    ``keep_heap`` in docs/bench_generation.md). Process-wide and irreversible (the heap stays at its peak
    size), so only dp-generate's own processes call it. Returns False where it does not apply (not glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
            libc.mallopt(m_trim_threshold, 2**31 - 1)
        )
    except (OSError, AttributeError):
        return False


def worker_init(threads: int, keep_heap: bool = True, parent_pid: int | None = None) -> None:
    if parent_pid is not None:
        die_with_parent(parent_pid)
    torch.set_num_threads(max(1, threads))
    if keep_heap:
        keep_freed_memory()


def worker_task(task: tuple) -> dict:
    assert _WORKER_GEN is not None
    return write_one(_WORKER_GEN, task)


def run_shards(gen: Generator, tasks: list[tuple], workers: int) -> Iterator[dict]:
    """Write the shards of ``tasks``, yielding manifest entries as they finish. ``workers`` > 1: forked
    processes (one per core, each torch with ``gen.threads`` threads) share the parent's body bank
    copy-on-write; each shard depends only on its own seed, so the data is identical to a
    single-process run."""
    if workers <= 1:
        for t in tasks:
            yield write_one(gen, t)
        return
    import multiprocessing as mp

    global _WORKER_GEN
    _WORKER_GEN = gen
    gen.warm_up()  # compile once here; the forked workers inherit the compiled kernels
    try:
        init = (gen.threads or 1, bool(gen.cfg.get("keep_heap", True)), os.getpid())
        with mp.get_context("fork").Pool(workers, initializer=worker_init, initargs=init) as pool:
            yield from pool.imap_unordered(worker_task, tasks)
    finally:
        _WORKER_GEN = None
