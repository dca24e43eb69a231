"""The jobs of a ``dp-train -m`` sweep folder, for scripts and notebooks that compare the models of an
ablation.

A Hydra multirun folder holds one numbered sub-folder per job with ``.hydra/config.yaml`` (the resolved
config), ``.hydra/overrides.yaml`` (what the sweep varied) and ``checkpoints/`` (the best ``epoch_*.ckpt`` and
``last.ckpt``, see ``conf/callbacks/default.yaml``). :func:`read_sweep` turns that into :class:`SweepJob`
rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depth_pose.errors import InputError


@dataclass
class SweepJob:
    """One job of a sweep: its number, the overrides it ran with, its resolved config and checkpoints."""

    num: int
    dir: Path
    overrides: dict[str, str]
    config: Any  # omegaconf DictConfig (resolved config as saved by Hydra)
    best_ckpt: Path | None
    last_ckpt: Path | None
    epochs_done: int
    finished: bool

    @property
    def label(self) -> str:
        """``pose_sampling=uniform seed=0``: the overrides that differ between jobs are set by the caller."""
        return " ".join(f"{k}={v}" for k, v in self.overrides.items())


def _overrides(path: Path) -> dict[str, str]:
    from omegaconf import OmegaConf

    if not path.is_file():
        return {}
    out = {}
    for item in OmegaConf.to_container(OmegaConf.load(path)) or []:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def read_sweep(sweep_dir: str | Path, only_finished: bool = True) -> list[SweepJob]:
    """Jobs of a ``dp-train -m`` folder in job order. A job is finished when its ``last.ckpt`` reached
    ``trainer.max_epochs``; unfinished ones (killed, still running) are left out unless
    ``only_finished=False``."""
    import torch
    from omegaconf import OmegaConf

    root = Path(sweep_dir)
    if not root.is_dir():
        raise InputError(f"sweep folder '{root}' does not exist")
    jobs = []
    for d in sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    ):
        cfg_path = d / ".hydra" / "config.yaml"
        if not cfg_path.is_file():
            continue
        cfg = OmegaConf.load(cfg_path)
        ck = d / "checkpoints"
        best = sorted(ck.glob("epoch_*.ckpt"))
        last = ck / "last.ckpt"
        epochs = 0
        if last.is_file():
            epochs = int(torch.load(last, map_location="cpu", weights_only=True).get("epoch", -1)) + 1
        max_epochs = int(OmegaConf.select(cfg, "trainer.max_epochs", default=0) or 0)
        finished = bool(best) and epochs >= max_epochs > 0
        if finished or not only_finished:
            jobs.append(
                SweepJob(
                    int(d.name),
                    d,
                    _overrides(d / ".hydra" / "overrides.yaml"),
                    cfg,
                    best[-1] if best else None,
                    last if last.is_file() else None,
                    epochs,
                    finished,
                )
            )
    if not jobs:
        raise InputError(
            f"no {'finished ' if only_finished else ''}dp-train jobs in '{root}' "
            "(a folder made by dp-train -m, with numbered job folders)"
        )
    return jobs


def varied(jobs: list[SweepJob]) -> list[str]:
    """The override keys whose values differ between jobs (what the sweep compared)."""
    keys = sorted({k for j in jobs for k in j.overrides})
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
