"""Project-local defaults for caches and offline behaviour, set before anny/ultralytics/wandb are imported.

Anny reads ``ANNY_CACHE_DIR`` at import time and its first build is slow (docs/bench_body.md), so the cache
must be persistent and project-local; ultralytics and W&B must never reach for the network. Values already in
the environment win.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_root() -> Path:
    """``<repo>/.cache`` for a source checkout, else ``~/.cache/depth_pose``."""
    if (REPO_ROOT / "pyproject.toml").exists():
        return REPO_ROOT / ".cache"
    return Path.home() / ".cache" / "depth_pose"


def config_dir() -> Path:
    """The Hydra config tree: ``<repo>/conf`` in a source checkout, else the copy an installed wheel carries
    in ``depth_pose/conf`` (see ``setup.py``)."""
    if (REPO_ROOT / "pyproject.toml").exists() and (REPO_ROOT / "conf").is_dir():
        return REPO_ROOT / "conf"
    return Path(__file__).resolve().parent / "conf"


def apply_defaults() -> None:
    """Set the project-local cache and offline defaults (values already in the environment win)."""
    root = cache_root()
    defaults = {
        "ANNY_CACHE_DIR": root / "anny",
        "WARP_CACHE_PATH": root / "warp",
        "WANDB_MODE": "offline",
        "WANDB_DIR": root / "wandb",
        "WANDB_CACHE_DIR": root / "wandb-cache",
        "WANDB_CONFIG_DIR": root / "wandb-config",
        "YOLO_CONFIG_DIR": root / "ultralytics",
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "false",
        "MPLCONFIGDIR": root / "matplotlib",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, str(value))
