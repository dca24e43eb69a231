"""``dp-predict source=IMAGE|FOLDER|GLOB|VIDEO|CAMERA_INDEX|URL out=DIR [key=value ...]`` (config
``conf/predict.yaml``, :func:`depth_pose.predict.run.predict`).

Exit codes: 0 every source processed; 3 some files failed (listed); 2 unusable input (source, intrinsics,
detector weights, config).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from omegaconf import DictConfig

import depth_pose  # noqa: F401  (offline env defaults first)
from depth_pose.cli.shell import run
from depth_pose.errors import EXIT_OK, EXIT_PARTIAL, InputError


def task(cfg: DictConfig) -> tuple[Any, int]:
    """Predict; prints the counts and every source that failed."""
    from depth_pose.predict.run import predict

    warnings.formatwarning = lambda msg, *args, **kw: f"dp-predict: warning: {msg}\n"
    summary = predict(cfg)
    c = summary["counts"]
    print(
        f"dp-predict: {c['frames']} frames, {c['people']} people, {c['tracks']} tracks, "
        f"{c['zoom_uses']} zoomed, "
        f"{c['failed']} failed, {summary['fps']:.2f} frames/s -> {summary['out']}"
    )
    for e in summary["errors"]:
        print(f"  failed: {e['source']}: {e['error']}", file=sys.stderr)
    return summary["out"], EXIT_PARTIAL if summary["errors"] else EXIT_OK


def main() -> None:
    """Console entry point (a missing file the user named, e.g. detector weights, is a user error too)."""
    run("dp-predict", "predict", task, kinds=(InputError, FileNotFoundError))


if __name__ == "__main__":
    main()
