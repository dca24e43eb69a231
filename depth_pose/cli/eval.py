"""``dp-eval``: depth errors of a model on keypoint sets, image sets, generated sets or a suite
(:func:`depth_pose.evaluate.evaluate`, config ``conf/eval.yaml``).

Exit codes: 0 every entry scored; 3 some entries left out (listed on stderr with line numbers / image
names); 2 unusable arguments or files (no mode, missing file, unreadable checkpoint, bad config override).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

import depth_pose  # noqa: F401  (offline env before ultralytics/wandb)
from depth_pose.cli.shell import run
from depth_pose.errors import EXIT_OK


def task(cfg: DictConfig) -> tuple[Any, int]:
    """Evaluate; lists what was written and every entry left out."""
    from depth_pose.evaluate import evaluate

    metrics = evaluate(cfg)
    where = Path(metrics.get("out", "")).parent
    print(
        f"dp-eval: wrote {metrics.get('out')}, {where / 'metrics.json'}, {where / 'report.md'}",
        file=sys.stderr,
    )
    for s in metrics.get("skipped", []):
        print(f"dp-eval: left out {s['where']}: {s['why']}", file=sys.stderr)
    if metrics.get("skipped"):
        n_left, n_in = len(metrics["skipped"]), metrics["n_input"]
        print(f"dp-eval: {n_left} of {n_in} entries left out", file=sys.stderr, flush=True)
    return None, int(metrics.get("exit_code", EXIT_OK))


def main() -> None:
    """Console entry point."""
    run("dp-eval", "eval", task)


if __name__ == "__main__":
    main()
