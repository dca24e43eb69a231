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


def real_data_dir() -> Path:
    """Where the real evaluation data is read from (never copied into the repository):
    ``DEPTH_POSE_REAL_DATA`` when set, else ``shared/data/real`` beside the checkout."""
    env = os.environ.get("DEPTH_POSE_REAL_DATA")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data" / "real"


def launch_root() -> str:
    """``paths.root_dir`` of the configs (the ``dp_root`` resolver): ``DEPTH_POSE_ROOT`` when set, else the
    directory the command was launched from (Hydra's ``runtime.cwd`` inside a job; the working directory
    before one exists, as when a multirun resolves its sweep folder: ``${hydra:runtime.cwd}`` fails there)."""
    root = os.environ.get("DEPTH_POSE_ROOT")
    if root:
        return root
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.cwd)
    return os.getcwd()


def register_resolvers() -> None:
    """The config resolvers the project's YAML uses (``${dp_root:}``, ``${dp_real_data:}``), registered once
    per process."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("dp_root"):
        OmegaConf.register_new_resolver("dp_root", launch_root)
    if not OmegaConf.has_resolver("dp_real_data"):
        OmegaConf.register_new_resolver("dp_real_data", lambda: str(real_data_dir()))


def apply_defaults() -> None:
    """Set the project-local cache and offline defaults (values already in the environment win) and register
    the config resolvers."""
    register_resolvers()
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
