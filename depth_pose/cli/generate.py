"""``dp-generate``: a synthetic set (config ``conf/generate.yaml``)
through :func:`generation.pipeline.generate`.

Examples: ``dp-generate pose_sampling=hybrid num_samples=200000``, ``dp-generate camera=kitti noise=none``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

import depth_pose  # noqa: F401  (project-local caches before anny is imported)
from depth_pose.cli.shell import run
from depth_pose.errors import EXIT_OK


def task(cfg: DictConfig) -> tuple[Any, int]:
    """Generate the set; prints its folder."""
    from generation.pipeline import generate

    out = generate(cfg)
    print(out)
    return str(out), EXIT_OK


def main() -> None:
    """Console entry point."""
    import generation.dataset  # noqa: F401  (registers ${dp_dataset_id:} for conf/generate.yaml's out_dir)

    run("dp-generate", "generate", task)


if __name__ == "__main__":
    main()
