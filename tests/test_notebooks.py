"""The analysis notebooks run top to bottom (jupytext -> nbclient) on small fresh synthetic sets and
sweeps."""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import pytest
from helpers import REPO
from nbclient import NotebookClient


@pytest.mark.slow
def test_analyse_checkpoint_notebook_runs(tmp_path: Path) -> None:
    nb = execute("analyse_checkpoint.py", {"N_SAMPLES": "4000", "NB_OUT": str(tmp_path / "nb")})
    png = tmp_path / "nb" / "analysis.png"
    assert png.is_file() and png.stat().st_size > 10_000
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "ale_m" in outputs and "4000 samples" in outputs


def execute(name: str, env: dict[str, str]):
    """Run ``notebooks/<name>`` top to bottom with ``env`` set; returns the executed notebook."""
    nb = jupytext.read(REPO / "notebooks" / name)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


@pytest.mark.slow
def test_sweep_ablation_script_read_sweep_and_compare_notebook(tmp_path: Path) -> None:
    """A tiny real pose-sampling sweep through experiments/ablation.py (dp-train -m, held-out
    sets, dp-eval per pose, summary), then read_sweep on it and the comparison notebook."""
    import json
    import shutil
    import subprocess
    import sys

    from omegaconf import OmegaConf

    from depth_pose.eval.sweep import read_sweep, varied

    out = tmp_path / "abl"
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "ablation.py"),
            "pose_sampling=uniform,hybrid",
            "--seeds",
            "0",
            "1",
            "--test-sampling",
            "uniform",
            "hybrid",
            "--samples",
            "4000",
            "--epochs",
            "1",
            "--heldout",
            "2000",
            "--out",
            str(out),
            "--real",
            str(tmp_path / "no_real_data"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [(j["variant"], j["seed"]) for j in summary] == [
        (f"pose_sampling={s}", seed) for s in ("uniform", "hybrid") for seed in (0, 1)
    ]
    for j in summary:
        held = j["scores"]["heldout"]
        assert set(held) == {"uniform", "hybrid"} and all(0 < h["ale_m"] < 60 for h in held.values())
        assert "crouch" in held["hybrid"]["by_pose"] and "uniform" in held["uniform"]["by_pose"]
        assert 0 < j["scores"]["invariance"]["non_standing_median"] < 1
    text = (out / "summary.md").read_text()
    assert "| pose_sampling=uniform | 0,1 |" in text and "| crouch |" in text
    assert (out / "per_pose.png").stat().st_size > 10_000
    # Seed analysis: the two seeds of each variant on every scored set, ensemble beside them.
    seeds = json.loads((out / "seeds.json").read_text())
    assert set(seeds) == {"pose_sampling=uniform", "pose_sampling=hybrid"}
    for sets in seeds.values():
        assert set(sets) == {"held-out uniform", "held-out hybrid", "suite (non-standing)"}
        for s in sets.values():
            assert s["seeds"] == 2 and s["n"] > 0 and 0 < s["seed_share"] < 1 and -1 <= s["corr"] <= 1
            assert 0 < s["ensemble"]["ale_m"] < 60
    assert "| pose_sampling=hybrid | suite (non-standing) | 2 |" in text
    # W&B (offline): one run per job and one summary run, all in the sweep folder's group.
    from wandb_offline import runs_under

    runs = runs_under(out)
    jobs_w = [r for r, _, _ in runs if r["job_type"] == "train"]
    (summary_run,) = [(r, s) for r, _, s in runs if r["job_type"] == "ablation"]
    assert len(jobs_w) == 4 and len({r["id"] for r in jobs_w}) == 4
    assert {r["group"] for r in jobs_w} == {summary_run[0]["group"]} == {"sweep"}
    assert sorted(r["name"] for r in jobs_w)[0].startswith("pose_sampling=hybrid seed=0")
    logged = summary_run[1]
    assert logged["summary._type"] == logged["per_pose._type"] == "table-file"
    # rows: job x set (2 held-out sets + the suite); job x set x pose
    assert logged["summary.nrows"] == 4 * 3 and logged["per_pose.nrows"] > 4 * 10
    assert logged["per_pose_figure._type"] == "image-file"

    jobs = read_sweep(out / "sweep")
    assert [(j.overrides["pose_sampling"], j.overrides["seed"]) for j in jobs] == [
        (s, seed) for s in ("uniform", "hybrid") for seed in ("0", "1")
    ]
    assert varied(jobs) == ["pose_sampling", "seed"]
    assert all(j.finished and j.epochs_done == 1 and j.best_ckpt.is_file() for j in jobs)
    # A job that has not reached max_epochs (killed, or still running) is left out unless asked for.
    unfinished = out / "sweep" / "4"
    shutil.copytree(out / "sweep" / "3", unfinished)
    cfg = OmegaConf.load(unfinished / ".hydra" / "config.yaml")
    cfg.trainer.max_epochs = 5
    OmegaConf.save(cfg, unfinished / ".hydra" / "config.yaml")
    assert len(read_sweep(out / "sweep")) == 4
    assert [j.finished for j in read_sweep(out / "sweep", only_finished=False)] == [True] * 4 + [False]
    shutil.rmtree(unfinished)

    nb = execute(
        "compare_sweep.py",
        {"SWEEP_DIR": str(out / "sweep"), "N_SAMPLES": "3000", "NB_OUT": str(tmp_path / "nb")},
    )
    assert (tmp_path / "nb" / "sweep_comparison.png").stat().st_size > 20_000
    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert (
        "pose_sampling=uniform" in printed
        and "pose_sampling=hybrid" in printed
        and "3000 held-out samples" in printed
    )
