"""JSON values in one place: read from users' JSON (keypoint lines, calibration files), a number as a float
that never raises (an integer too long for a float, a bool, a string) and a value shortened for a one-line
message; written by the commands, :func:`json_safe` (strict JSON: no NaN / Infinity tokens)."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

import numpy as np

from depth_pose.errors import InputError


def as_float(value: Any) -> float:
    """``value`` as a float: NaN when it is not a number (bools and strings included), inf for an integer too
    long for a float; callers test ``math.isfinite``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf


def shown(value: Any, n: int = 60) -> str:
    """``repr`` of a value, shortened to ``n`` characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= n else f"{text[: n - 3]}..."


def json_safe(obj: Any) -> Any:
    """Recursively: numpy scalars / arrays as Python values, paths as strings, non-finite floats as None
    (strict JSON parsers refuse NaN and Infinity)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def option_number(
    value: Any,
    name: str,
    lo: float,
    hi: float = math.inf,
    *,
    integer: bool = False,
    allow_inf: bool = False,
    open_lo: bool = False,
    error: type[InputError] = InputError,
) -> float:
    """A command option ``name`` that must be a number (an integer with ``integer``) in [lo, hi] (``open_lo``:
    (lo, hi]), finite unless ``allow_inf``: the value as a float, else ``error`` (an
    :class:`~depth_pose.errors.InputError`: exit 2) naming it."""
    x = as_float(value)
    ok = (math.isfinite(x) or (allow_inf and x == math.inf)) and lo <= x <= hi and not (open_lo and x == lo)
    if not ok or (integer and not float(x).is_integer()):
        kind = "an integer" if integer else "a number"
        top = f"{hi:g}]" if math.isfinite(hi) else ("inf]" if allow_inf else "inf)")
        raise error(f"{name} must be {kind} in {'(' if open_lo else '['}{lo:g}, {top}, got {shown(value)}")
    return x


def option_device(
    value: Any, name: str, *, gpu_indices: bool = False, error: type[InputError] = InputError
) -> str:
    """A command option ``name`` that must name a torch device this machine has (``cpu``, ``cuda``,
    ``cuda:1``, ``mps``; with ``gpu_indices``, ultralytics' GPU indices too: ``0``, ``0,1``): the value as
    given, else ``error`` naming it (torch would fail later with a multi-line trace, or only on the first
    tensor moved there)."""
    import torch

    text = str(value).replace(" ", "")
    if gpu_indices and text.replace(",", "").isdigit():
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if any(not i or int(i) >= count for i in text.split(",")):  # "0,,1" has an empty index
            raise error(f"{name}={shown(value)} but this machine has {count} CUDA device(s)")
        return str(value)
    try:
        dev = torch.device(str(value))
    except (RuntimeError, ValueError):
        raise error(f"{name}={shown(value)} is not a device (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index is not None and dev.index >= count):
            raise error(f"{name}={shown(value)} but this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise error(f"{name}={shown(value)} but MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise error(f"{name}={shown(value)}: use cpu, cuda, cuda:N or mps")
    return str(value)
