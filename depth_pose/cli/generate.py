"""``dp-generate``: thin Hydra wrapper over :func:`generation.pipeline.generate` (config ``conf/generate.yaml``).

Examples: ``dp-generate pose_sampling=hybrid num_samples=200000``, ``dp-generate camera=kitti noise=none``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import depth_pose  # noqa: F401  (project-local caches before anny is imported)
from generation.pipeline import GenerationConfigError, generate

CONF_DIR = str(
    Path(__file__).resolve().parents[1] / "conf"
)  # absolute: works from any cwd and as a console script


@hydra.main(config_path=CONF_DIR, config_name="generate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        out = generate(cfg)
    except GenerationConfigError as e:
        print(f"dp-generate: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(out)


if __name__ == "__main__":
    main()
