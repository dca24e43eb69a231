"""Anny itself: the model and its COCO keypoint regressor (loaded once per process), the generator's data
files (joint limits, pose presets) and the Anny bones the joint-limit spec poses. Shared by the body bank and
the pose samplers, so neither imports the other."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import torch

import depth_pose  # noqa: F401  (sets ANNY_CACHE_DIR etc. before anny is imported)

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_LIMITS = DATA_DIR / "joint_limits.yaml"
DEFAULT_PRESETS = DATA_DIR / "presets"
# Rest reference axes of every Anny bone, saved from Anny (write_bone_axes) so that the pose samplers need no
# Anny: tests/test_bank.py checks the file still equals what the installed Anny gives.
BONE_AXES = DATA_DIR / "bone_axes.json"

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
        cache = Path(os.environ.get("ANNY_CACHE_DIR", ""))
        if not cache.is_dir() or not any(p.is_file() for p in cache.rglob("*")):  # Anny builds it on import
            print(f"anny: building the body model's cache in {cache} (once, about a minute)", file=sys.stderr)
        import anny

        model = anny.Anny().to(torch.float32)
        _ANNY_CACHE["model"] = model
        _ANNY_CACHE["regressor"] = anny.KeypointsRegressor.coco(model)
    return _ANNY_CACHE["model"], _ANNY_CACHE["regressor"]


def bone_axes_from_anny() -> dict[str, list[list[float]]]:
    """Anny's rest reference axes of every bone: name -> 3x3 (columns = bone x, y, z in world), float32
    values (as Python floats, exact)."""
    model, _ = load_anny()
    axes = model.reference_bone_orientations.float()
    return {name: axes[i].tolist() for i, name in enumerate(model.bone_labels)}


def write_bone_axes(path: str | Path = BONE_AXES) -> Path:
    """Save :func:`bone_axes_from_anny` as JSON (regenerate :data:`BONE_AXES` after an Anny upgrade:
    ``python -c "from generation.anny_model import write_bone_axes; write_bone_axes()"``)."""
    from importlib.metadata import version

    from depth_pose.fileio import atomic_write_text

    bones = ",\n".join(f"  {json.dumps(b)}: {json.dumps(v)}" for b, v in bone_axes_from_anny().items())
    head = json.dumps({"anny_version": version("anny")})[:-1]  # one bone a line
    return atomic_write_text(path, f'{head}, "bones": {{\n{bones}\n}}}}\n')


@functools.cache
def _saved_bone_axes() -> dict[str, list[list[float]]]:
    return json.loads(BONE_AXES.read_text())["bones"] if BONE_AXES.exists() else {}


def bone_axes(bone: str) -> torch.Tensor:
    """Rest reference axes (3x3 float32, columns = bone x, y, z in world) of an Anny bone: from
    :data:`BONE_AXES` (no Anny needed), else from Anny itself."""
    saved = _saved_bone_axes()
    if bone in saved:
        return torch.tensor(saved[bone], dtype=torch.float32)
    try:
        model, _ = load_anny()
    except ImportError as e:
        raise ImportError(
            f"rest axes of bone {bone!r} are not in {BONE_AXES} and Anny is not installed to give them"
        ) from e
    labels = list(model.bone_labels)
    if bone not in labels:
        raise ValueError(f"{bone!r} is not a bone of Anny's rig")
    return model.reference_bone_orientations[labels.index(bone)].float()
