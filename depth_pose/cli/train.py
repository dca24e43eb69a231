"""``dp-train``: train a depth model (config ``conf/train.yaml``); returns the optimised metric for sweeps.

Unusable input (a ``data.dir`` that is not a dataset, a missing ``ckpt_path``, a set too large for the device,
a bad generation config): one ``dp-train: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import depth_pose  # noqa: F401  (environment defaults before lightning/wandb)
from depth_pose.errors import InputError

log = logging.getLogger(__name__)
CONF_DIR = str(
    Path(__file__).resolve().parents[2] / "conf"
)  # absolute: works from any cwd and as a console script


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from depth_pose.train import train

    try:
        metrics, objs = train(cfg)
    except InputError as e:
        print(f"dp-train: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    name = cfg.get("optimized_metric", "val/ale")
    cb = objs["trainer"].checkpoint_callback
    value = metrics.get("best_val") if cb is not None and name == cb.monitor else None
    value = metrics.get(name, math.nan) if value is None else value
    log.info("%s = %.4f (best checkpoint: %s)", name, value, objs.get("best_ckpt"))
    return float(value)


if __name__ == "__main__":
    main()
