"""The camera's up direction as users give it, checked once for every entry point.

Where it comes from: per line of a ``dp-eval keypoints=`` file, the run-wide ``scene.*`` block of
``conf/eval.yaml`` / ``conf/predict.yaml``, top-level keys of a ``dp-predict`` calibration file. Each gives
``up_cam`` (3 numbers, any non-zero length: normalised here) or ``pitch_deg`` (+ optional ``roll_deg``,
default 0), or both when they agree within :data:`AGREE_DEG`. The conventions and the two conversions are
:mod:`depth_pose.geometry`'s (``up_cam`` in camera coordinates x right, y down, z forward; pitch negative =
looking down; roll positive = the scene appears rotated clockwise in the image); nothing is re-derived here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depth_pose.errors import InputError
from depth_pose.geometry import pitch_roll_from_up, up_from_pitch_roll
from depth_pose.jsonvalues import as_float, shown

AGREE_DEG = 1.0  # up_cam and pitch_deg/roll_deg given together must point within this angle of each other
MIN_UP_NORM = 1e-6  # a shorter up_cam has no direction
PITCH_RANGE = (-90.0, 90.0)
ROLL_RANGE = (-180.0, 180.0)
KEYS = ("pitch_deg", "roll_deg", "up_cam")
# The other keys of a command's ``scene`` block: scene self-calibration (read by depth_pose.scene_commands).
CALIBRATION_KEYS = (
    "calibrate",
    "height_m",
    "save",
    "load",
    "group",
    "track_fields",
    "truth_fields",
    "stream_person_frames",
)


class GravityInputError(InputError):
    """A run-wide up direction (``scene.*``, a calibration file) that cannot be used: exit 2."""


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {shown(value)}")
    x = as_float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {shown(value)}")
    return x


def _angle(name: str, value: Any, lo: float, hi: float) -> float:
    x = _number(value, name)
    if not lo <= x <= hi:
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}] degrees, got {x:g}")
    return x


def _vector(value: Any, name: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, Mapping) or isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        raise ValueError(f"{name} must be 3 numbers [x, y, z], got {shown(value)}")
    items = list(value)
    if len(items) != 3:
        raise ValueError(f"{name} must be 3 numbers [x, y, z], got {len(items)}: {shown(value)}")
    try:
        return np.array([_number(v, name) for v in items], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{name} must be 3 finite numbers [x, y, z], got {shown(value)}") from None


def describe(up: np.ndarray) -> str:
    """``[x, y, z] (pitch P, roll R)`` of a unit up vector, for messages."""
    pitch, roll = pitch_roll_from_up(torch.as_tensor(up, dtype=torch.float64))
    xyz = ", ".join(f"{v:.3g}" for v in up)
    return f"[{xyz}] (pitch {float(pitch):.1f}, roll {float(roll):.1f})"


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Degrees between two unit vectors (accurate near 0, unlike acos of the dot product)."""
    return math.degrees(math.atan2(float(np.linalg.norm(np.cross(a, b))), float(np.dot(a, b))))


def parse_up(
    pitch_deg: Any = None, roll_deg: Any = None, up_cam: Any = None, prefix: str = ""
) -> np.ndarray | None:
    """The unit up vector (3,) from the fields given (``None`` = not given), or None when none is.

    ValueError, naming the fields as ``prefix + key`` with their values, when a value is not a number (or
    3 finite numbers for ``up_cam``), ``up_cam`` has (near) zero length, an angle is out of range (pitch
    [-90, 90], roll [-180, 180]), ``roll_deg`` comes without ``pitch_deg``, or ``up_cam`` and the pitch/roll
    disagree by more than :data:`AGREE_DEG` degrees. When both agree, ``up_cam`` is used."""
    if pitch_deg is None and roll_deg is None and up_cam is None:
        return None
    if roll_deg is not None and pitch_deg is None:
        raise ValueError(f"{prefix}roll_deg={shown(roll_deg)} given without {prefix}pitch_deg")
    up = None
    if up_cam is not None:
        v = _vector(up_cam, f"{prefix}up_cam")
        big = float(np.abs(v).max())
        unit = v / big if big > 0 else v  # scaled first: entries near 1e308 would overflow the length
        norm = float(np.linalg.norm(unit))
        if big * norm < MIN_UP_NORM:
            raise ValueError(f"{prefix}up_cam {shown(up_cam)} has (near) zero length: no direction")
        up = unit / norm
    if pitch_deg is None:
        return up
    pitch = _angle(f"{prefix}pitch_deg", pitch_deg, *PITCH_RANGE)
    roll = 0.0 if roll_deg is None else _angle(f"{prefix}roll_deg", roll_deg, *ROLL_RANGE)
    from_angles = up_from_pitch_roll(torch.tensor(pitch, dtype=torch.float64), roll).double().numpy()
    from_angles /= np.linalg.norm(from_angles)
    if up is None:
        return from_angles
    off = angle_between(up, from_angles)
    if off > AGREE_DEG:
        raise ValueError(
            f"{prefix}up_cam {describe(up)} and {prefix}pitch_deg={pitch:g}, {prefix}roll_deg={roll:g} "
            f"disagree by {off:.1f} degrees (more than {AGREE_DEG:g}): give one of them, or make them agree"
        )
    return up


def up_from_mapping(d: Mapping | None, prefix: str = "") -> np.ndarray | None:
    """:func:`parse_up` of the ``pitch_deg`` / ``roll_deg`` / ``up_cam`` entries of a mapping (a JSON
    line, a config block, a calibration file); null entries count as not given."""
    if d is None:
        return None
    return parse_up(*(d.get(k) for k in KEYS), prefix=prefix)


def scene_up(scene: Any, name: str = "scene") -> np.ndarray | None:
    """The run-wide up direction of a ``scene`` config block (``pitch_deg``, ``roll_deg``, ``up_cam``; all
    null = not known), or None. :class:`GravityInputError` (exit 2, one line naming the key) when unusable.
    The block's scene-calibration keys (:data:`CALIBRATION_KEYS`) are :mod:`depth_pose.scene_commands`'."""
    if scene is None:
        return None
    if hasattr(scene, "items") and not isinstance(scene, dict):  # an OmegaConf node: plain containers
        from omegaconf import OmegaConf

        scene = OmegaConf.to_container(scene, resolve=True)
    if not isinstance(scene, Mapping):
        raise GravityInputError(
            f"{name} must be a mapping of pitch_deg, roll_deg, up_cam, got {shown(scene)}"
        )
    unknown = sorted(set(scene) - set(KEYS) - set(CALIBRATION_KEYS))
    if unknown:
        known = ", ".join(KEYS + CALIBRATION_KEYS)
        raise GravityInputError(f"{name}: unknown keys {unknown} (known: {known})")
    try:
        return up_from_mapping(scene, prefix=f"{name}.")
    except ValueError as e:
        raise GravityInputError(str(e)) from None


def pitch_roll_rows(up: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pitch and roll in degrees (n,) of up directions (n, 3) (or (3,) for all); NaN where unknown."""
    if up is None:
        nan = np.full(n, np.nan)
        return nan, nan.copy()
    u = np.broadcast_to(np.asarray(up, np.float64), (n, 3))
    known = np.isfinite(u).all(1) & (np.linalg.norm(np.nan_to_num(u), axis=1) >= MIN_UP_NORM)
    pitch, roll = np.full(n, np.nan), np.full(n, np.nan)
    if known.any():
        p, r = pitch_roll_from_up(torch.as_tensor(u[known], dtype=torch.float64))
        pitch[known], roll[known] = p.numpy(), r.numpy()
    return pitch, roll
