"""``dp-eval``: thin Hydra wrapper over :func:`depth_pose.eval.run.evaluate`.

Exit codes: 0 every entry scored; 3 some entries left out (listed on stderr with line numbers / image
names); 2 unusable arguments or files (no mode, missing file, unreadable checkpoint, bad config override).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import depth_pose  # noqa: F401  (offline env before ultralytics/wandb)
from depth_pose.eval.io import EvalInputError
from depth_pose.eval.run import EXIT_OK, EXIT_USAGE

CONF_DIR = str(
    Path(__file__).resolve().parents[2] / "conf"
)  # the repo's conf/ (absolute: works from any cwd)
_state: dict[str, int | bool] = {"code": EXIT_OK, "started": False}


@hydra.main(config_path=CONF_DIR, config_name="eval", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    _state["started"] = True
    from depth_pose.eval.run import evaluate

    try:
        metrics = evaluate(cfg)
    except EvalInputError as e:
        print(f"dp-eval: error: {e}", file=sys.stderr, flush=True)
        _state["code"] = EXIT_USAGE
        return
    where = Path(metrics.get("out", "")).parent
    print(
        f"dp-eval: wrote {metrics.get('out')}, {where / 'metrics.json'}, {where / 'report.md'}",
        file=sys.stderr,
    )
    for s in metrics.get("skipped", []):
        print(f"dp-eval: left out {s['where']}: {s['why']}", file=sys.stderr)
    if metrics.get("skipped"):
        print(
            f"dp-eval: {len(metrics['skipped'])} of {metrics['n_input']} entries left out",
            file=sys.stderr,
            flush=True,
        )
    _state["code"] = int(metrics.get("exit_code", EXIT_OK))


def main() -> None:
    """Console entry point; turns Hydra's config errors (exit 1 before the task starts) into exit 2."""
    try:
        _app()
    except SystemExit as e:
        if not _state["started"] and e.code not in (0, None):
            sys.exit(EXIT_USAGE)
        raise
    sys.exit(int(_state["code"]))


if __name__ == "__main__":
    main()
