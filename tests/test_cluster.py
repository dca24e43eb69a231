"""Past one machine (README "On a cluster"): the submitit launcher configs, a set generated as shard ranges
and joined by :mod:`generation.merge`, and the merge's refusals. No cluster here: the SLURM test checks what
the plugin would submit (the sbatch header it writes), the local launcher really runs a 2-job sweep."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, compose
from hydra.utils import instantiate
from omegaconf import OmegaConf

from depth_pose import shards
from generation import merge as merge_mod
from generation.config import GenerationConfigError
from generation.dataset import dataset_id, shard_span
from generation.pipeline import generate

SET = ["num_samples=3000", "shard_size=1000", "body.n_bodies=64", "progress=false"]


def gen_cfg(root: Path, out: Path, *overrides: str):
    cfg = compose("generate", [*SET, f"paths.root_dir={root}", f"out_dir={out}", *overrides])
    cfg.paths.output_dir = str(root)
    return cfg


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    """The tiny set made in one go and as the parts [0, 2] and [2, 3]."""
    root = tmp_path_factory.mktemp("cluster")
    out = {"one": generate(gen_cfg(root, root / "one"))}
    out["a"] = generate(gen_cfg(root, root / "a", "shard_range=[0,2]"))
    out["b"] = generate(gen_cfg(root, root / "b", "shard_range=[2,3]"))
    out["root"] = root
    return out


def _shard_summary(path: Path) -> list[tuple]:
    return [(s["index"], s["file"], s["rows"], s["sha256"]) for s in shards.load_manifest(path)["shards"]]


# ------------------------------------------------------------------ SLURM / submitit configs
def slurm_cfg(*overrides: str):
    return compose(
        "train",
        ["hydra/launcher=slurm", "hydra.mode=MULTIRUN", "paths.root_dir=/tmp/dp_cluster", *overrides],
        return_hydra_config=True,
    )


def test_slurm_launcher_config_composes() -> None:
    cfg = slurm_cfg("hydra.sweep.dir=/scratch/sweep")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.timeout_min, launcher.gpus_per_node, launcher.cpus_per_task) == (240, 1, 8)
    assert (launcher.mem_gb, launcher.nodes, launcher.tasks_per_node, launcher.partition) == (32, 1, 1, None)
    assert launcher.name == "dp-train"
    assert launcher.submitit_folder == "/scratch/sweep/.submitit/%j"  # beside the jobs' folders 0/, 1/, ...
    assert (
        OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"
    )  # jobs in <sweep dir>/<num>/


def test_slurm_sweep_submits_the_expected_job_array(tmp_path: Path, monkeypatch) -> None:
    """The plugin's own launch() for a 2-job sweep, stopped where submitit would call sbatch: the sbatch file
    asks for the configured resources, a 2-task array, and logs under the sweep folder."""
    from submitit.slurm.slurm import SlurmExecutor

    sweep = tmp_path / "sweep"
    cfg = slurm_cfg(
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=2",
        "hydra.launcher.mem_gb=64",
        "hydra.launcher.timeout_min=90",
    )
    submitted: list[str] = []

    class Stop(Exception):
        pass

    def capture(self, command: str):
        submitted.append(self._make_submission_file_text(command, "uid"))
        raise Stop

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun is here"
    monkeypatch.setattr(SlurmExecutor, "_submit_command", capture)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda c: None, config=cfg)
    with pytest.raises(Stop):
        launcher.launch([["model=mlp_small"], ["model=mlp_base"]], initial_job_idx=0)
    (text,) = submitted
    lines = set(text.splitlines())
    for flag in (
        "--array=0-1%2",
        "--partition=gpu",
        "--gpus-per-node=2",
        "--cpus-per-task=8",
        "--mem=64GB",
        "--time=90",
        "--nodes=1",
        "--ntasks-per-node=1",
        "--job-name=dp-train",
        f"--output={sweep}/.submitit/%A_%a/%A_%a_0_log.out",  # logs beside the jobs' folders
    ):
        assert f"#SBATCH {flag}" in lines, (flag, text)
    assert f"srun --unbuffered --output {sweep}/.submitit/%A_%a/%A_%a_%t_log.out" in text
    assert len(list((sweep / ".submitit").rglob("*.pkl"))) == 2  # the two pickled jobs, in the sweep folder


@pytest.mark.parametrize(
    "config, overrides",
    [  # the README's "On a cluster" commands (one value per swept key)
        ("train", ["model=mlp_large", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=600"]),
        ("train", ["hparams_search=optuna", "hydra.sweeper.n_jobs=8", "hydra.sweeper.n_trials=40"]),
        ("train", ["pose_sampling=normal", "seed=0", "logger=csv", "progress=false"]),
        (
            "generate",
            ["num_samples=20000000", "shard_size=500000", "workers=0", "shard_range=[0,10]"]
            + [
                "out_dir=data/parts/part0",
                "hydra.launcher.gpus_per_node=null",
                "hydra.launcher.cpus_per_task=32",
            ],
        ),
    ],
)
def test_readme_cluster_commands_compose(config: str, overrides: list[str]) -> None:
    cfg = compose(config, ["hydra/launcher=slurm", "paths.root_dir=/tmp/dp_cluster", *overrides], True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    if "hparams_search=optuna" in overrides:
        assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.n_jobs == 8
    if config == "generate":
        assert cfg.hydra.launcher.gpus_per_node is None and shard_span(cfg, 40) == (0, 10)


def test_multi_node_ddp_trainer_config() -> None:
    cfg = compose(
        "train",
        ["trainer=ddp", "trainer.accelerator=gpu", "trainer.num_nodes=2", "trainer.devices=4", "data.dir=x"]
        + ["paths.root_dir=/tmp/dp_cluster"],
    )
    assert (cfg.trainer.strategy, cfg.trainer.num_nodes, cfg.trainer.devices) == ("ddp", 2, 4)
    assert compose("train", ["trainer=ddp", "paths.root_dir=/tmp/dp_cluster"]).trainer.num_nodes == 1


def test_submitit_local_launcher_composes() -> None:
    cfg = compose(
        "generate",
        ["hydra/launcher=submitit_local", "paths.root_dir=/tmp/dp_cluster"],
        return_hydra_config=True,
    )
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.LocalLauncher")
    assert cfg.hydra.launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"


@pytest.mark.slow
def test_submitit_local_runs_a_generation_sweep(tmp_path: Path, sets) -> None:
    """``dp-generate -m hydra/launcher=submitit_local shard_range=[0,2],[2,3]``: two local submitit jobs write
    the two parts; merged, they are the one-go set, byte for byte, though the jobs run with one thread
    (OMP_NUM_THREADS=1, as a process that imported ultralytics passes on) and the one-go set with all."""
    sweep = tmp_path / "sweep"
    cmd = [
        str(Path(sys.executable).with_name("dp-generate")),
        "-m",
        "hydra/launcher=submitit_local",
        *SET,
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={sweep}",
        "out_dir=" + str(sweep) + "/part${hydra:job.num}",
        "shard_range=[0,2],[2,3]",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and all((sweep / str(n) / ".hydra" / "config.yaml").is_file() for n in (0, 1))
    merge_mod.merge(tmp_path / "merged", [sweep / "part1", sweep / "part0"])
    assert _shard_summary(tmp_path / "merged") == _shard_summary(sets["one"])


# ------------------------------------------------------------------ shard ranges + merge
def test_shard_range_is_not_part_of_the_data() -> None:
    base = gen_cfg(Path("/tmp/x"), Path("/tmp/x/o"))
    part = gen_cfg(Path("/tmp/x"), Path("/tmp/x/o"), "shard_range=[1,3]")
    assert dataset_id(base) == dataset_id(part)
    draft = gen_cfg(Path("/tmp/x"), Path("/tmp/x/o"), "render=draft")
    assert dataset_id(draft) == dataset_id(
        gen_cfg(Path("/tmp/x"), Path("/tmp/x/o"), "render=draft", "render.shard_range=[0,1]")
    )
    assert dataset_id(draft) != dataset_id(base)
    assert shard_span(base, 3) == (0, 3) and shard_span(part, 3) == (1, 3)
    assert shard_span(gen_cfg(Path("/tmp/x"), Path("/tmp/x/o"), "shard_range=[2,9]"), 3) == (2, 3)
    for bad in ("[2,1]", "[3,4]", "[-1,2]", "[1]", "[a,b]"):
        with pytest.raises(GenerationConfigError, match="shard_range"):
            shard_span(gen_cfg(Path("/tmp/x"), Path("/tmp/x/o"), f"shard_range={bad}"), 3)


def test_ranges_write_only_their_shards(sets) -> None:
    a, b = shards.load_manifest(sets["a"]), shards.load_manifest(sets["b"])
    assert [s["index"] for s in a["shards"]] == [0, 1] and [s["index"] for s in b["shards"]] == [2]
    assert not a["complete"] and not b["complete"]
    assert sorted(p.name for p in sets["a"].glob(shards.SHARD_GLOB)) == [
        "shard-00000.parquet",
        "shard-00001.parquet",
    ]
    one = shards.load_manifest(sets["one"])
    assert a["dataset_id"] == b["dataset_id"] == one["dataset_id"] and one["complete"]


def test_merged_set_is_the_one_go_set(sets, tmp_path: Path) -> None:
    out = merge_mod.merge(tmp_path / "merged", [sets["b"], sets["a"]])
    one, merged = shards.load_manifest(sets["one"]), shards.load_manifest(out)
    assert _shard_summary(out) == _shard_summary(sets["one"])
    for key in ("dataset_id", "num_samples", "num_shards", "id_config", "columns", "source", "seed"):
        assert merged[key] == one[key], key
    assert merged["complete"] is True and merged["config"]["shard_range"] is None
    for f in sets["one"].glob(shards.SHARD_GLOB):
        assert (out / f.name).read_bytes() == f.read_bytes()
    assert len(shards.read_table(out, verify=True)) == 3000
    merge_mod.merge(out, [sets["a"], sets["b"]])  # again into the same set: rewritten, unchanged
    assert _shard_summary(out) == _shard_summary(sets["one"])


def test_merge_cli(sets, tmp_path: Path) -> None:
    run = [sys.executable, "-m", "generation.merge"]
    ok = subprocess.run(
        [*run, str(tmp_path / "m"), str(sets["a"]), str(sets["b"])], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["dataset_id"] == shards.load_manifest(sets["one"])["dataset_id"]
    bad = subprocess.run([*run, str(tmp_path / "m2"), str(sets["a"])], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "error: shards 2 of 3 are in no part" in bad.stderr


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "case, match",
    [
        ("gap", "shards 2 of 3 are in no part"),
        ("overlap", "shard 0 is in both"),
        ("other_set", "parts of different sets"),
        ("corrupt", "does not match its sha256"),
        ("missing_file", "listed in .* but missing"),
        ("out_is_part", "is one of the parts"),
        ("out_other_set", "already holds dataset"),
        ("no_manifest", "no manifest.json"),
    ],
)
def test_merge_refuses(case: str, match: str, sets, tmp_path: Path) -> None:
    a, b = _copy(sets["a"], tmp_path / "a"), _copy(sets["b"], tmp_path / "b")
    out, parts = tmp_path / "out", [a, b]
    if case == "gap":
        parts = [a]
    elif case == "overlap":
        parts = [a, b, sets["one"]]
    elif case == "other_set":
        m = shards.load_manifest(b)
        shards.write_manifest(b, {**m, "dataset_id": "0123456789ab"})
    elif case == "corrupt":
        f = b / shards.shard_name(2)
        f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    elif case == "missing_file":
        (a / shards.shard_name(1)).unlink()
    elif case == "out_is_part":
        out = a
    elif case == "out_other_set":
        out.mkdir()
        shards.write_manifest(out, {**shards.load_manifest(a), "dataset_id": "0123456789ab"})
    elif case == "no_manifest":
        (b / shards.MANIFEST).unlink()
    with pytest.raises(GenerationConfigError, match=match):
        merge_mod.merge(out, parts)
    if case != "out_other_set":
        assert not out.exists() or out in parts  # nothing written
