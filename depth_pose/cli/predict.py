"""dp-predict: ``dp-predict source=IMAGE|FOLDER|GLOB|VIDEO|CAMERA_INDEX|URL out=DIR [key=value ...]``."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

import depth_pose  # noqa: F401  (offline env defaults first)
from depth_pose.predict.intrinsics import IntrinsicsError
from depth_pose.predict.run import PredictError, predict
from depth_pose.predict.sources import SourceError

CONF_DIR = str(
    Path(__file__).resolve().parents[2] / "conf"
)  # absolute: works from any cwd and as a console script


@hydra.main(config_path=CONF_DIR, config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    warnings.formatwarning = lambda msg, *args, **kw: f"dp-predict: warning: {msg}\n"
    try:
        summary = predict(cfg)
    except (SourceError, IntrinsicsError, PredictError, FileNotFoundError) as e:
        print(f"dp-predict: error: {e}", file=sys.stderr)
        sys.exit(2)
    c = summary["counts"]
    print(
        f"dp-predict: {c['frames']} frames, {c['people']} people, {c['tracks']} tracks, {c['zoom_uses']} zoomed, "
        f"{c['failed']} failed, {summary['fps']:.2f} frames/s -> {summary['out']}"
    )
    for e in summary["errors"]:
        print(f"  failed: {e['source']}: {e['error']}", file=sys.stderr)


if __name__ == "__main__":
    main()
