"""Optional fused kernels for the generator's pure tensor math (``torch.compile``, Inductor).

The analytic stages are long chains of element-wise ops over (B, 17) planes; in eager mode every op is a pass
over memory plus an allocation. Functions decorated with :func:`kernel` hold only deterministic math (random
numbers are drawn by the caller, in eager mode, from the caller's ``torch.Generator``), so compiling them
fuses each chain into a few C++ loops without changing the random stream. Same formulas: compiled and eager
results agree to float round-off (tested), so a set's dataset id does not depend on the mode.

Off by default in the library; :func:`configure` switches it on (``dp-generate``'s ``compile`` key: ``auto`` =
on for CPU sets of at least ``AUTO_MIN_SAMPLES`` rows, where the one-off compile pays off; its cost with
an empty and with a warm project-local on-disk cache ``.cache/inductor`` is in docs/bench_generation.md). If
compiling fails (no C++ compiler, unsupported platform) the generator warns once and stays in eager mode.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

AUTO_MIN_SAMPLES = 1_000_000  # compile: auto switches on from this many rows (CPU)
_STATE = {"enabled": False, "failed": False}


def enabled() -> bool:
    """Whether decorated kernels currently run compiled."""
    return _STATE["enabled"] and not _STATE["failed"]


def resolve(mode: bool | str | None, num_samples: int = 0, device: str = "cpu") -> bool:
    """``compile`` config value -> on/off: true/false, or ``auto`` (on for CPU sets >= AUTO_MIN_SAMPLES)."""
    if isinstance(mode, bool):
        return mode
    if mode is None or str(mode).lower() in ("false", "off", "no", "0"):
        return False
    if str(mode).lower() in ("true", "on", "yes", "1"):
        return True
    if str(mode).lower() == "auto":
        return str(device) == "cpu" and int(num_samples) >= AUTO_MIN_SAMPLES
    raise ValueError(f"compile must be true, false or auto, got {mode!r}")


def configure(on: bool) -> bool:
    """Switch the kernels on/off for this process; returns whether they are on. Compiles in this process only
    (``compile_threads=1``: no helper pool, safe before forking workers, which inherit the compiled code)."""
    if on and not _STATE["enabled"]:
        from depth_pose.env import cache_root

        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "inductor"))
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = 1
    _STATE["enabled"] = bool(on)
    return enabled()


def kernel(fn: F) -> F:
    """Run ``fn`` compiled (dynamic shapes) when :func:`enabled`, else as written. ``fn`` must be pure tensor
    math without random draws or data-dependent shapes."""
    compiled: list[Callable[..., Any]] = []

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not enabled():
            return fn(*args, **kwargs)
        if not compiled:
            compiled.append(torch.compile(fn, dynamic=True, fullgraph=True))
        try:
            return compiled[0](*args, **kwargs)
        except Exception as e:  # noqa: BLE001  (no compiler, unsupported op: fall back, once, loudly)
            _STATE["failed"] = True
            log.warning("compiled generator kernels unavailable (%s: %s); running eager", type(e).__name__, e)
            return fn(*args, **kwargs)

    wrapper.eager = fn  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def nan_to(x: torch.Tensor, value: float) -> torch.Tensor:
    """``x`` with NaN replaced by ``value``: ``nan_to_num`` in eager mode, a vectorisable compare under
    ``torch.compile`` (Inductor turns ``isnan`` into a scalar loop, much slower there:
    docs/bench_generation.md)."""
    if torch.compiler.is_compiling():
        return torch.where(x == x, x, value)
    return torch.nan_to_num(x, nan=value)


def take_last(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x.index_select(-1, idx)`` for planar (..., B) tensors, through a 2-D view (faster on CPU:
    docs/bench_generation.md)."""
    return x.reshape(-1, x.shape[-1]).index_select(1, idx).view(*x.shape[:-1], idx.numel())
