"""The scene suite's ``scenes:`` block (``conf/eval.yaml``), checked before any scene is built: a bad override
(``scenes.n_scenes=0``, ``scenes.seed=x``, shares that add up to more than one, ...) is one line naming the
key and the value, exit 2, not a traceback from deep inside the scene builder."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from depth_pose.errors import InputError
from depth_pose.jsonvalues import option_number

FLOORS = ("flat", "step", "ramp")


class SceneSuiteConfigError(InputError):
    """A ``scenes.*`` value the suite cannot use (exit 2)."""


def _int(cfg: Mapping, key: str, lo: int) -> int:
    v = cfg.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise SceneSuiteConfigError(f"scenes.{key} must be an integer >= {lo}, got {v!r}")
    return v


def _num(v: Any, name: str, lo: float, hi: float = math.inf, open_lo: bool = False) -> float:
    return option_number(v, name, lo, hi, open_lo=open_lo, error=SceneSuiteConfigError)


def _range(cfg: Mapping, key: str, lo: float, hi: float = math.inf, open_lo: bool = True) -> None:
    v = cfg.get(key)
    if isinstance(v, str) or not isinstance(v, Sequence) or len(v) != 2:
        raise SceneSuiteConfigError(f"scenes.{key} must be [low, high], got {v!r}")
    a, b = (_num(x, f"scenes.{key}", lo, hi, open_lo=open_lo) for x in v)
    if a > b:
        raise SceneSuiteConfigError(f"scenes.{key} must be [low, high] with low <= high, got {list(v)}")


def _int_list(cfg: Mapping, key: str) -> None:
    v = cfg.get(key)
    bad = isinstance(v, str) or not isinstance(v, Sequence) or not v
    if bad or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in v):
        raise SceneSuiteConfigError(f"scenes.{key} must be a list of positive integers, got {v!r}")


def check_scene_suite(cfg: Mapping) -> None:
    """Raise :class:`SceneSuiteConfigError` for the first ``scenes.*`` value the suite cannot use."""
    _int(cfg, "seed", 0)
    for key in ("n_scenes", "n_people", "n_frames", "n_bodies", "fusion_every_frames"):
        _int(cfg, key, 1)
    for key in ("img_w", "img_h"):
        _int(cfg, key, 16)
    _int(cfg, "warmup_person_frames", 0)
    if _int(cfg, "min_children", 0) > cfg["n_people"]:
        raise SceneSuiteConfigError(
            f"scenes.min_children={cfg['min_children']} is more than scenes.n_people={cfg['n_people']}"
        )
    if not 1 <= _int(cfg, "min_joints", 1) <= 17:
        raise SceneSuiteConfigError(f"scenes.min_joints must be in [1, 17], got {cfg['min_joints']}")
    floors = cfg.get("floors")
    if isinstance(floors, str) or not isinstance(floors, Sequence) or not floors:
        raise SceneSuiteConfigError(f"scenes.floors must be a list of {', '.join(FLOORS)}, got {floors!r}")
    unknown = [f for f in floors if f not in FLOORS]
    if unknown:
        known = ", ".join(FLOORS)
        raise SceneSuiteConfigError(f"scenes.floors: unknown floor {unknown[0]!r} (known: {known})")
    mounts = cfg.get("mounts")
    if not isinstance(mounts, Mapping) or not mounts:
        raise SceneSuiteConfigError(f"scenes.mounts must map mount names to cameras, got {mounts!r}")
    for name, m in mounts.items():
        if not isinstance(m, Mapping):
            raise SceneSuiteConfigError(f"scenes.mounts.{name} must be a mapping, got {m!r}")
        _num(m.get("height_m"), f"scenes.mounts.{name}.height_m", 0.0, 1000.0, open_lo=True)
        _num(m.get("pitch_deg"), f"scenes.mounts.{name}.pitch_deg", -90.0, 90.0)
        _num(m.get("roll_deg_max"), f"scenes.mounts.{name}.roll_deg_max", 0.0, 180.0)
    _range(cfg, "hfov_deg", 0.0, 179.0)
    _range(cfg, "depth_range_m", 0.0)
    _range(cfg, "walk_speed_mps", 0.0)
    _range(cfg, "turn_rate_dps", 0.0, open_lo=False)
    _range(cfg, "cadence_hz", 0.0, open_lo=False)
    fps = _num(cfg.get("fps"), "scenes.fps", 0.0, open_lo=True)
    if max(cfg["cadence_hz"]) >= fps / 2:
        raise SceneSuiteConfigError(
            f"scenes.cadence_hz must stay below half of scenes.fps ({fps / 2:g}: the gait would alias), got "
            f"{list(cfg['cadence_hz'])}"
        )
    _num(cfg.get("edge_margin"), "scenes.edge_margin", 0.0, 0.45)
    for key in ("step_m", "ramp_m", "jitter_deg"):
        _num(cfg.get(key), f"scenes.{key}", 0.0)
    for key in ("turn_share", "stand_share", "sit_share", "child_share"):
        _num(cfg.get(key), f"scenes.{key}", 0.0, 1.0)
    if cfg["stand_share"] + cfg["sit_share"] > 1.0:
        raise SceneSuiteConfigError(
            f"scenes.stand_share + scenes.sit_share = {cfg['stand_share'] + cfg['sit_share']:g}: more than "
            "all of a person's frames"
        )
    for key in ("calib_at", "seen_bins"):
        _int_list(cfg, key)
    if not cfg.get("body_bank") and cfg["n_bodies"] < cfg["n_people"]:
        raise SceneSuiteConfigError(
            f"scenes.n_bodies={cfg['n_bodies']} is fewer than scenes.n_people={cfg['n_people']} (each person "
            "of a scene is another body)"
        )
    sit = cfg.get("sit_poses")
    if (
        isinstance(sit, str)
        or not isinstance(sit, Sequence)
        or not sit
        or not all(isinstance(x, str) for x in sit)
    ):
        raise SceneSuiteConfigError(f"scenes.sit_poses must be a non-empty list of pose names, got {sit!r}")
    targets = cfg.get("targets")
    if not isinstance(targets, Mapping):
        raise SceneSuiteConfigError(f"scenes.targets must be a mapping, got {targets!r}")
    for key, v in targets.items():
        _num(v, f"scenes.targets.{key}", 0.0, open_lo=True)
    if not isinstance(cfg.get("per_frame_samples"), bool):
        raise SceneSuiteConfigError(
            f"scenes.per_frame_samples must be true or false, got {cfg.get('per_frame_samples')!r}"
        )
