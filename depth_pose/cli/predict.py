"""``dp-predict source=IMAGE|FOLDER|GLOB|VIDEO|CAMERA_INDEX|URL out=DIR [key=value ...]`` (config
``conf/predict.yaml``, :func:`depth_pose.predict.run.predict`).

Exit codes: 0 every source processed (a scene that cannot be calibrated is a warning: single-frame depths); 3
some files failed (listed); 2 unusable input (source, intrinsics, detector weights, config, a scene.load file
that is malformed or made for another K or image size); 130 stopped by Ctrl-C (the records of the frames done
are kept; before the first frame, ``out`` is left as it was).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from omegaconf import DictConfig

import depth_pose  # noqa: F401  (offline env defaults first)
from depth_pose.cli.shell import run
from depth_pose.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, InputError

TRACKERS = ("bytetrack", "botsort")  # ultralytics' trackers (tracking.tracker)


def check_config(cfg: DictConfig) -> None:
    """Config values refused before any model or source is opened (:class:`InputError`, exit 2)."""
    tracker = (cfg.get("tracking") or {}).get("tracker")
    if tracker not in TRACKERS:
        raise InputError(f"tracking.tracker={tracker}: choose one of {', '.join(TRACKERS)}")
    thr = cfg.get("keypoint_threshold")
    if isinstance(thr, bool) or not isinstance(thr, int | float) or not 0 <= thr <= 1:
        raise InputError(f"keypoint_threshold={thr} must be a number in [0, 1] (keypoint confidence)")


def task(cfg: DictConfig) -> tuple[Any, int]:
    """Predict; prints the counts and every source that failed."""
    from depth_pose.predict.run import predict
    from depth_pose.scene_commands import scene_line

    check_config(cfg)
    warnings.formatwarning = lambda msg, *args, **kw: f"dp-predict: warning: {msg}\n"
    summary = predict(cfg)
    c = summary["counts"]
    if summary["interrupted"] and not c["frames"]:
        for e in summary["errors"]:
            print(f"  failed: {e['source']}: {e['error']}", file=sys.stderr)
        print(
            f"dp-predict: interrupted (Ctrl-C) before any frame was written: '{summary['out']}' left as it "
            "was",
            file=sys.stderr,
        )
        return summary["out"], EXIT_INTERRUPTED
    print(
        f"dp-predict: {c['frames']} frames, {c['people']} people, {c['tracks']} tracks, "
        f"{c['zoom_uses']} zoomed, "
        f"{c['failed']} failed, {summary['fps']:.2f} frames/s -> {summary['out']}"
    )
    for cam in summary["scene"]["cameras"]:  # the failed ones were warnings
        if cam["status"] != "failed":
            print(f"dp-predict: {scene_line(cam['source'], cam)}")
    if summary["scene"]["saved"]:
        print(f"dp-predict: scene calibration saved to {summary['scene']['save']}")
    for e in summary["errors"]:
        print(f"  failed: {e['source']}: {e['error']}", file=sys.stderr)
    if summary["interrupted"]:
        print(
            f"dp-predict: interrupted (Ctrl-C): the {c['records']} records of the {c['frames']} frames done "
            f"are in '{summary['out']}'",
            file=sys.stderr,
        )
        return summary["out"], EXIT_INTERRUPTED
    return summary["out"], EXIT_PARTIAL if summary["errors"] else EXIT_OK


def main() -> None:
    """Console entry point (a missing file the user named, e.g. detector weights, is a user error too)."""
    run("dp-predict", "predict", task, kinds=(InputError, FileNotFoundError))


if __name__ == "__main__":
    main()
