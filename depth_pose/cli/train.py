"""``dp-train``: train a depth model (config ``conf/train.yaml``); returns the optimised metric for sweeps.

Unusable input (a ``data.dir`` that is not a dataset, a ``ckpt_path`` that is missing, no checkpoint, or a
checkpoint of another run, ``trainer.max_epochs`` < 1, a set too large for the device, a bad generation
config): one ``dp-train: error: ...`` line and exit code 2 (:mod:`depth_pose.cli.shell`).
"""

from __future__ import annotations

import logging
import math

from omegaconf import DictConfig

import depth_pose  # noqa: F401  (environment defaults before lightning/wandb)
from depth_pose.cli.shell import run
from depth_pose.errors import EXIT_OK

log = logging.getLogger(__name__)


def task(cfg: DictConfig) -> tuple[float, int]:
    """Train; the value is ``optimized_metric`` (the best checkpoint's score when it is the monitored one)."""
    from depth_pose.train import train

    metrics, objs = train(cfg)
    name = cfg.get("optimized_metric", "val/ale")
    cb = objs["trainer"].checkpoint_callback
    value = metrics.get("best_val") if cb is not None and name == cb.monitor else None
    value = metrics.get(name, math.nan) if value is None else value
    log.info("%s = %.4f (best checkpoint: %s)", name, value, objs.get("best_ckpt"))
    return float(value), EXIT_OK


def main() -> None:
    """Console entry point."""
    run("dp-train", "train", task)


if __name__ == "__main__":
    main()
