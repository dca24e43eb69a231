"""Torch intra-op thread caps for the generator's many small, memory-bound ops (see docs/bench_generation.md:
on a busy 2-core machine one thread beats two)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n: int):
    """Temporarily cap torch's intra-op threads at ``n`` (0: unchanged). Sampling and posing are many small,
    memory-bound ops where thread synchronisation costs more than it gains (docs/bench_generation.md)."""
    old = torch.get_num_threads()
    change = 0 < n < old
    if change:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(old)
