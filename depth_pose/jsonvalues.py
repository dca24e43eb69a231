"""Values read from users' JSON (keypoint lines, calibration files), in one place: a number as a float that
never raises (an integer too long for a float, a bool, a string) and a value shortened for a one-line
message."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


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
