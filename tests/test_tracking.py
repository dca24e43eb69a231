"""One W&B run per job (depth_pose/tracking.py): distinct, grouped by the sweep folder, named by the job's
overrides, with flat config keys and the end-of-job scores as summary metrics, read back from the offline
run files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from wandb_offline import runs_under

from depth_pose.tracking import fill_identity, flat_config, folder_name, git_commit, run_name


def test_run_name_keeps_what_the_job_is() -> None:
    overrides = ["pose_sampling=uniform", "seed=1", "paths.log_dir=/x", "logger=wandb", "hydra.job.num=3"]
    assert run_name(overrides, "train") == "pose_sampling=uniform seed=1"
    assert run_name(["+model.net.width=64", "progress=false"], "train") == "model.net.width=64"
    assert run_name([], "train") == "train"
    assert folder_name("pose_sampling=uniform seed=1") == "pose_sampling=uniform_seed=1"
    assert folder_name("a/b c") == "a_b_c"


def test_flat_config_and_identity_outside_a_sweep(monkeypatch) -> None:
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # no Hydra job (other tests set one)
    cfg = OmegaConf.create(
        {
            "task_name": "train",
            "model": {"net": {"width": 256, "depth": 3}, "name": "mlp_base"},
            "data": {"sizes": [1, 2]},
            "hydra": {"x": 1},
            "logger": {
                "wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger", "name": None, "group": None},
                "csv": {"_target_": "lightning.pytorch.loggers.CSVLogger", "version": None},
                "mine": {"_target_": "lightning.pytorch.loggers.CSVLogger", "version": "v7"},
            },
        }
    )
    flat = flat_config(cfg)
    assert flat["model.net.width"] == 256 and flat["model.name"] == "mlp_base"
    assert flat["data.sizes"] == "[1, 2]" and not any(k.startswith("hydra") for k in flat)
    ids = fill_identity(cfg)  # no Hydra job here: named after the task, no group
    assert ids.wandb.name == "train" and ids.wandb.group is None
    assert ids.csv.version == "train" and ids.mine.version == "v7"
    commit = git_commit()
    assert commit is None or len(commit.split("-")[0]) == 40


def _console(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@pytest.mark.slow
def test_two_job_sweep_gives_two_grouped_named_runs_with_summaries(toy_set_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "my_sweep"
    common = [
        f"data.dir={toy_set_dir}",
        "model=mlp_small",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "data.batch_size=512",
        "logger=wandb",
        "progress=false",
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={sweep}",
        "final_eval.suite=false",
        "final_eval.phone=false",
        "final_eval.kitti=false",
        "final_eval.heldout.overrides=['num_samples=1000','seed=99','body.n_bodies=64']",
        "final_eval.heldout.max_rows=1000",
    ]
    res = subprocess.run(
        [_console("dp-train"), "-m", "seed=0,1", *common], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    runs = runs_under(sweep)
    assert len(runs) == 2, [r for r, _, _ in runs]
    (r0, c0, s0), (r1, c1, s1) = runs
    assert r0["id"] != r1["id"]
    assert r0["group"] == r1["group"] == "my_sweep"
    assert r0["name"].startswith("seed=0") and r1["name"].startswith("seed=1")
    assert "data.dir" in r0["name"] and r0["job_type"] == "train"
    for c, seed in ((c0, 0), (c1, 1)):
        assert c["seed"] == seed and c["model.net.width"] == 128 and c["data_id"] and "git_commit" in c
    for s in (s0, s1):
        assert 0 < s["final/heldout/ale_m"] < 60 and "final/heldout/median/standing" in s
        assert 0 < s["val/ale"] < 60
    assert s0["final/heldout/n"] == s1["final/heldout/n"] == 1000  # the same held-out people for both jobs


@pytest.mark.slow
def test_optuna_sweep_with_wandb_logger_gives_one_run_per_trial(toy_set_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "optuna_sweep"
    res = subprocess.run(
        [
            _console("dp-train"),
            "-m",
            "hparams_search=optuna",
            "logger=wandb",  # the user's logger wins over the preset's csv
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            f"data.dir={toy_set_dir}",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "data.batch_size=512",
            "progress=false",
            "final_eval.enabled=false",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    runs = runs_under(sweep)
    assert len(runs) == 2
    assert len({r["id"] for r, _, _ in runs}) == 2 and {r["group"] for r, _, _ in runs} == {"optuna_sweep"}
    for r, c, s in runs:
        assert "model.net.width=" in r["name"] and f"model.net.width={c['model.net.width']}" in r["name"]
        assert 0 < s["val/ale"] < 60


@pytest.mark.slow  # a dp-eval start-up with W&B
def test_dp_eval_with_wandb_logs_one_closed_run(tmp_path: Path, tiny_model: Path) -> None:
    """dp-eval logger=wandb: one offline run named by its overrides, flat metrics, closed at the end."""
    from test_eval_cli import line, person

    kp = tmp_path / "people.jsonl"
    kp.write_text("\n".join(line(f"p{i}", person(8.0 + i)) for i in range(3)) + "\n")
    res = subprocess.run(
        [_console("dp-eval"), f"keypoints={kp}", f"out={tmp_path / 'o' / 'p.jsonl'}",
         f"ckpt={tiny_model}", "logger=wandb", "plots=false", "progress=false",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    ((run, _, summary),) = runs_under(tmp_path / "run")
    assert run["name"].startswith("keypoints=") and run["job_type"] == "eval" and run["group"] == ""
    assert summary["eval/methods/model/n"] == 3 and summary["eval/methods/model/ale_m"] > 0
