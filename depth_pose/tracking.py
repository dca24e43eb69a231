"""One tracking run per job: its name, group and version, the config it stores, its summary, its end.

A Hydra multirun runs its jobs one after another in one process; a W&B run left open would swallow the next
job's metrics. So every job: names its run after its own overrides (``pose_sampling=uniform seed=1``), groups
it by the sweep folder (``hydra.sweep.dir``'s name), stores the resolved config as flat keys
(``model.net.width``) with the dataset id and the git commit, writes its final scores as summary metrics and
closes every logger at its end, also when it fails (:func:`close_loggers`). CSV and TensorBoard loggers get
one version folder per job, named the same way.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from depth_pose.env import REPO_ROOT

log = logging.getLogger(__name__)
# Override prefixes that say where things go, not what the job is (left out of run names).
_NOT_IN_NAME = ("hydra.", "hydra/", "paths.", "logger", "progress", "trainer.enable_progress_bar")


def hydra_job() -> tuple[list[str], str | None]:
    """The running Hydra job's task overrides and, in a multirun, its sweep folder's name (else None)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [], None
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    group = Path(str(hc.sweep.dir)).name if hc.mode == RunMode.MULTIRUN else None
    return overrides, group


def run_name(overrides: Iterable[str], default: str) -> str:
    """``"k=v k2=v2"`` from the job's overrides (paths, logger and hydra keys left out), else ``default``."""
    keep = [o.lstrip("+~") for o in overrides if not o.lstrip("+~").startswith(_NOT_IN_NAME)]
    return " ".join(keep) or default


def folder_name(name: str) -> str:
    """``name`` as a single folder name (``pose_sampling=uniform_seed=1``)."""
    return re.sub(r"[^A-Za-z0-9=.,_+-]+", "_", name).strip("_") or "run"


def fill_identity(cfg: DictConfig) -> DictConfig:
    """``cfg.logger`` with each run's name / group / version filled in where the config leaves them null."""
    node = cfg.get("logger")
    loggers = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})
    overrides, group = hydra_job()
    name = run_name(overrides, str(cfg.get("task_name", "train")))
    for key, node in loggers.items():
        if not isinstance(node, dict) or "_target_" not in node:
            continue
        target = str(node["_target_"])
        if target.endswith("WandbLogger"):
            node["name"] = node.get("name") or name
            node["group"] = node.get("group") or group
        elif target.endswith(("CSVLogger", "TensorBoardLogger")) and node.get("version") is None:
            node["version"] = folder_name(name)
        loggers[key] = node
    return OmegaConf.create(loggers)


def flat_config(cfg: DictConfig | dict, sep: str = ".") -> dict[str, Any]:
    """The resolved config as ``{"model.net.width": 256, ...}`` (Hydra's own node left out), so trackers can
    sort and filter runs by each key."""
    tree = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if not (prefix == "" and k == "hydra"):
                    walk(v, f"{prefix}{k}{sep}")
        else:
            out[prefix[: -len(sep)]] = (
                node if isinstance(node, int | float | str | bool) or node is None else str(node)
            )

    walk(tree, "")
    return out


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The checkout's commit (with ``-dirty`` when it has changes), or None outside a git checkout."""
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def log_summary(loggers: list, scores: dict[str, float]) -> None:
    """Final scores of the job: the W&B run summary (what its runs table and parallel-coordinates plot show);
    the other loggers, which keep every logged value anyway, get the ``final/*`` scores as one last row."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            if scores:
                lg.experiment.summary.update(scores)
        else:
            final = {k: v for k, v in scores.items() if k.startswith("final/")}
            if final:
                lg.log_metrics(final)


def close_loggers(loggers: list, ok: bool) -> None:
    """End every logger of the job (W&B: finish its run, so the next job of a sweep starts its own)."""
    status = "success" if ok else "failed"
    for lg in loggers:
        try:
            lg.finalize(status)
        except Exception as err:  # noqa: BLE001  (closing must reach the W&B run below)
            log.warning("logger %s did not finalize: %s", type(lg).__name__, err)
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=0 if ok else 1)
