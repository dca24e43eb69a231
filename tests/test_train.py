"""End-to-end training: a small model beats the trivial predictor; CLI, raw-pixel ablation, resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, compose
from hydra.core.hydra_config import HydraConfig

from depth_pose.errors import InputError
from depth_pose.predictor import DepthPredictor
from depth_pose.train import train


def _compose(overrides: list[str]):
    cfg = compose("train", overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_logger_none_trains_with_the_default_callbacks(toy_set_dir, tmp_path):
    """logger=none (documented) with callbacks=default: the learning-rate monitor, which needs a logger, is
    left out; checkpoints are still written."""
    cfg = _compose(
        [
            f"data.dir={toy_set_dir}",
            "logger=none",
            "model=mlp_small",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "data.max_samples=2000",
            "progress=false",
            f"paths.output_dir={tmp_path}",
        ]
    )
    metrics, objs = train(cfg)
    assert objs["loggers"] == [] and 0 < metrics["val/ale"] < 60
    assert not any(type(c).__name__ == "LearningRateMonitor" for c in objs["trainer"].callbacks)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_train_small_model_beats_trivial_predictor(toy_set_dir, tmp_path):
    cfg = _compose(
        [
            f"data.dir={toy_set_dir}",
            "logger=csv",
            "model=mlp_small",
            "trainer=cpu",
            "trainer.max_epochs=4",
            "data.batch_size=512",
            "progress=false",
            "test=true",
            f"paths.output_dir={tmp_path}",
        ]
    )
    metrics, objs = train(cfg)
    trivial, ale = metrics["val/ale_trivial"], metrics["val/ale"]
    print(f"val ALE {ale:.3f} m vs trivial {trivial:.3f} m; test ALE {metrics['test/ale']:.3f}")
    assert trivial > 8.0  # depths uniform in 3-40 m: mean-depth predictor is ~9 m off
    assert ale < 0.25 * trivial and ale < 2.0  # the fixture's stature spread (+-14%) bounds it near 1.3 m
    assert metrics["val/delta125"] > 0.97 and metrics["test/ale"] < 2.0
    assert 0.7 < metrics["val/pose_invariance"] < 1.4
    assert metrics["val/ale_0_10"] < metrics["val/ale_30_inf"]
    assert (tmp_path / "checkpoints" / "last.ckpt").exists() and (tmp_path / "csv").is_dir()
    # a Lightning checkpoint loads in the predictor (weights_only) and reproduces the val error
    pred = DepthPredictor.load(objs["best_ckpt"])
    assert (
        pred.metadata["config"]["model"]["name"] == "mlp_small" and pred.metadata["data_id"] == "toy_24000_s0"
    )
    val = objs["datamodule"].splits["val"]
    intr = val["intr"]
    K = torch.zeros(len(intr), 3, 3)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = (
        intr[:, 0],
        intr[:, 1],
        intr[:, 2],
        intr[:, 3],
        1,
    )
    out = pred.predict(val["kp"], K, flip_tta=False)
    err = (torch.from_numpy(out.z_m) - val["z"]).abs()
    assert abs(float(err.mean()) - metrics["best_val"]) < 0.01
    # sigma is calibrated on the val split (68.3% within 1 sigma there) and holds on the unseen test split
    scale = float(pred.module.sigma_scale)
    assert scale != 1.0 and abs(metrics["val/sigma_scale"] - scale) < 0.5
    assert abs(float((err <= torch.from_numpy(out.sigma_m)).float().mean()) - 0.6827) < 0.01
    assert 0.62 < metrics["test/cov1"] < 0.75 and metrics["test/cov2"] > 0.85


@pytest.mark.slow  # two CLI trainings
def test_cli_seed_experiment_and_resume(toy_set_dir, tmp_path):
    run = tmp_path / "run"
    base = [
        sys.executable,
        "-m",
        "depth_pose.cli.train",
        "experiment=seed",
        f"data.dir={toy_set_dir}",
        "data.max_samples=4000",
        "logger=csv",
        "trainer=cpu",
        "progress=false",
        "data.batch_size=256",
        f"hydra.run.dir={run}",
    ]
    p1 = subprocess.run(
        [*base, "trainer.max_epochs=2"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert p1.returncode == 0, p1.stderr[-3000:]
    assert "val/ale = " in p1.stderr + p1.stdout
    ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ck["epoch"] == 1 and ck["hyper_parameters"]["features"]["name"] == "raw_pixels"
    steps = ck["global_step"]
    p2 = subprocess.run(
        [*base, "trainer.max_epochs=3", "ckpt_path=last"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert p2.returncode == 0, p2.stderr[-3000:]
    ck2 = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ck2["epoch"] == 2 and ck2["global_step"] == steps * 3 // 2  # continued, not restarted


@pytest.mark.slow  # in-process + 2 CLI start-ups
def test_bad_data_dir_is_a_clear_error(tmp_path):
    cfg = _compose([f"data.dir={tmp_path}", "logger=csv", f"paths.output_dir={tmp_path}"])
    with pytest.raises(InputError, match="data.dir=.*manifest.json"):
        train(cfg)
    # The CLI: one error line naming the input, exit code 2, no traceback; same for a missing ckpt_path.
    common = ["logger=csv", f"hydra.run.dir={tmp_path / 'h'}"]
    for args, what in (
        ([f"data.dir={tmp_path}"], "data.dir="),
        ([f"ckpt_path={tmp_path / 'no.ckpt'}"], "ckpt_path="),
    ):
        p = subprocess.run(
            [_console("dp-train"), *args, *common], capture_output=True, text=True, timeout=300
        )
        assert p.returncode == 2, p.stderr[-2000:]
        assert f"dp-train: error: {what}" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow  # builds the full 4096-body bank, generates 8k rows, trains
def test_train_on_a_generated_set(tmp_path):
    """data.dir=null: the set is generated by generation.pipeline.ensure_dataset from the generation
    groups."""
    cfg = _compose(
        [
            "data.num_samples=8000",
            "data.samples_per_pose=4",
            "logger=csv",
            "model=mlp_small",
            "trainer=cpu",
            "trainer.max_epochs=5",
            "data.batch_size=256",
            "progress=false",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.output_dir={tmp_path / 'run'}",
        ]
    )
    metrics, objs = train(cfg)
    assert objs["data_dir"].parent == tmp_path / "data" / "synthetic" and len(objs["data_id"]) == 12
    trivial, ale = metrics["val/ale_trivial"], metrics["val/ale"]
    print(f"generated set: val ALE {ale:.3f} m vs trivial {trivial:.3f} m, rel {metrics['val/rel']:.3f}")
    assert trivial > 10.0  # depths spread over 1-60 m
    assert ale < 0.5 * trivial and metrics["val/rel"] < 0.3


def test_sweep_configs_compose():
    cfg = _compose(["hparams_search=optuna", "experiment=ours"])
    params = cfg.hydra.sweeper.params
    assert set(params) == {"model.net.width", "model.net.depth", "model.optimizer.lr", "model.net.dropout"}
    assert cfg.hydra.sweeper.direction == "minimize" and "csv" in cfg.logger
    cfg = _compose(["pose_sampling=uniform", "model=mlp_large", "logger=wandb"])
    assert cfg.pose_sampling.name == "uniform" and cfg.model.net.residual and cfg.logger.wandb.offline


def _console(name: str) -> str:
    """The installed console script (what users type), next to this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"console script {name} not installed in this environment")
    return str(path)


@pytest.mark.slow  # 4 trainings + Optuna
def test_multirun_per_pose_strategy_and_optuna_sweep(tmp_path):
    """`dp-train -m pose_sampling=...` makes one set and one model per strategy (TensorBoard logger); the
    Optuna sweep runs trials and reports the best val ALE (both through the installed console script)."""
    import re

    import yaml

    data = tmp_path / "data"
    common = [
        "data.num_samples=6000",
        "trainer.max_epochs=1",
        "progress=false",
        "final_eval.enabled=false",  # end-of-job scores: tests/test_tracking.py
        f"paths.data_dir={data}",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]
    p = subprocess.run(
        [
            _console("dp-train"),
            "-m",
            "pose_sampling=uniform,hybrid",
            "logger=tensorboard",
            *common,
            f"hydra.sweep.dir={tmp_path / 'mr'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    sets = sorted((data / "synthetic").iterdir())
    names = sorted(
        yaml.safe_load((d / "manifest.json").read_text())["config"]["pose_sampling"]["name"] for d in sets
    )
    assert names == ["hybrid", "uniform"]
    assert all((tmp_path / "mr" / str(i) / "checkpoints" / "last.ckpt").exists() for i in (0, 1))
    assert all(
        list((tmp_path / "mr" / str(i) / "tensorboard").rglob("events.out.tfevents.*")) for i in (0, 1)
    )
    p = subprocess.run(
        [
            _console("dp-train"),
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=1",
            *common,
            f"hydra.sweep.dir={tmp_path / 'opt'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    values = [float(v) for v in re.findall(r"val/ale = ([0-9.]+)", p.stdout + p.stderr)]
    result = yaml.safe_load((tmp_path / "opt" / "optimization_results.yaml").read_text())
    assert len(values) == 2 and result["best_value"] == pytest.approx(min(values), abs=1e-3)
    assert set(result["best_params"]) == {
        "model.net.width",
        "model.net.depth",
        "model.optimizer.lr",
        "model.net.dropout",
    }
