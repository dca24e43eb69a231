"""Anny itself: the model and its COCO keypoint regressor (loaded once per process), the generator's data
files (joint limits, pose presets) and the Anny bones the joint-limit spec poses. Shared by the body bank and
the pose samplers, so neither imports the other."""

from __future__ import annotations

from pathlib import Path

import torch

import depth_pose  # noqa: F401  (sets ANNY_CACHE_DIR etc. before anny is imported)

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_LIMITS = DATA_DIR / "joint_limits.yaml"
DEFAULT_PRESETS = DATA_DIR / "presets"

_ANNY_CACHE: dict[str, object] = {}


def limits_bones(path: str | Path | None = None) -> list[str]:
    """The Anny bones posed by the joints of ``joint_limits.yaml`` (the default posable set)."""
    import yaml

    spec = yaml.safe_load(Path(path or DEFAULT_LIMITS).read_text())["joints"]
    return [
        j["bone"] if not j.get("sides") else f"{j['bone']}.{s}"
        for j in spec.values()
        for s in j.get("sides") or [None]
    ]


def load_anny():
    """Anny model (float32, CPU) and its COCO regressor, loaded once per process."""
    if "model" not in _ANNY_CACHE:
        import anny

        model = anny.Anny().to(torch.float32)
        _ANNY_CACHE["model"] = model
        _ANNY_CACHE["regressor"] = anny.KeypointsRegressor.coco(model)
    return _ANNY_CACHE["model"], _ANNY_CACHE["regressor"]
