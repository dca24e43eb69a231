"""Requests the commands cannot run, refused up front as one ``dp-<command>: error: ...`` line naming the
input with exit code 2 (issue 18): a checkpoint of another run or no checkpoint at all for ``ckpt_path``, a
``trainer.max_epochs`` below 1, ``vis_threshold`` outside [0, 1], a file as ``data.dir``, an unknown tracker,
mistyped keys (also in multiruns), a set too large for the disk or memory, an unwritable ``out_dir``; and a
multirun whose jobs ran elsewhere (submitit) exits with its worst job's code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO, compose
from hydra.core.hydra_config import HydraConfig

from depth_pose.errors import EXIT_USAGE, InputError
from depth_pose.train import CheckpointPathError, DataDirError, resolve_ckpt_path, train
from generation import dataset as gen_dataset
from generation.config import GenerationConfigError
from generation.pipeline import generate


def compose_train(overrides: list[str]):
    cfg = compose("train", overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def tiny(toy_set_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.dir={toy_set_dir}",
        "logger=none",
        "model=mlp_small",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "data.max_samples=2000",
        "progress=false",
        "final_eval.enabled=false",
        f"paths.log_dir={out.parents[2]}",
        f"paths.output_dir={out}",
        *extra,
    ]


# ------------------------------------------------------------------ dp-train, in process
def test_train_refuses_values_it_cannot_run_before_reading_anything(tmp_path: Path) -> None:
    out = tmp_path / "logs" / "train" / "runs" / "a"
    for extra, match in (
        (["trainer.max_epochs=0"], "trainer.max_epochs=0 must be an integer >= 1"),
        (["trainer.max_epochs=-1"], "trainer.max_epochs=-1"),
        (["vis_threshold=5"], r"vis_threshold=5 must be a number in \[0, 1\]"),
        (["data.batch_size=0"], r"data.batch_size=0 must be an integer >= 1"),
        (["data.batch_size=-5"], r"data.batch_size=-5 must be an integer >= 1"),
        (["model.optimizer.lr=-1"], r"model.optimizer.lr=-1 must be a positive number"),
    ):
        with pytest.raises(InputError, match=match):
            train(compose_train(tiny(tmp_path / "no_set", out, *extra)))
    a_file = tmp_path / "set.parquet"
    a_file.write_text("not a set")
    with pytest.raises(DataDirError, match=r"data.dir=.*set.parquet is a file, not a dataset folder"):
        train(compose_train(tiny(a_file, out)))
    assert not out.exists()  # refused before any output


def test_train_outputs_never_land_in_a_set_and_model_values_are_one_line(toy_set_dir: Path, tmp_path) -> None:
    """Every checkpoint and log folder is checked against data.dir and data.extra_dir; a missing extra set,
    extra_dir = data.dir and a model value the network refuses are one line (exit 2), before any output."""
    from depth_pose.fileio import OutputPathError

    out = tmp_path / "logs" / "train" / "runs" / "a"
    copy = tmp_path / "copy"
    shutil.copytree(toy_set_dir, copy)
    for extra, kind, match in (
        ([f"callbacks.last_checkpoint.dirpath={toy_set_dir}"], OutputPathError, "last_checkpoint.dirpath"),
        (["logger=csv", f"logger.csv.save_dir={toy_set_dir}/csv"], OutputPathError, "lies inside the input"),
        ([f"data.extra_dir={copy}", f"paths.output_dir={copy}/run"], OutputPathError, "data.extra_dir"),
        ([f"data.extra_dir={tmp_path / 'nope'}"], InputError, "holds no manifest.json"),
        ([f"data.extra_dir={toy_set_dir}"], InputError, "is data.dir"),
        (["model.net.width=0"], InputError, "bad model config"),
    ):
        with pytest.raises(kind, match=match):
            train(compose_train(tiny(toy_set_dir, out, *extra)))
    assert not out.exists() and not (toy_set_dir / "csv").exists() and not (copy / "run").exists()


def test_broken_ckpt_path_is_one_clear_error(tmp_path: Path, tiny_model: Path) -> None:
    def cfg_of(ck: Path):
        return compose_train(tiny(tmp_path, tmp_path / "l" / "t" / "r" / "o", f"ckpt_path={ck}"))

    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    for ck, match in (
        (tmp_path / "missing.ckpt", "missing.ckpt is not there"),
        (tmp_path, "is a folder"),
        (text, "notes.ckpt is not a readable Lightning checkpoint"),
        (tiny_model, "is not a (readable )?Lightning"),  # an exported .safetensors model
    ):
        with pytest.raises(CheckpointPathError, match=match):
            resolve_ckpt_path(cfg_of(ck), "toy")
    weights = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {}}, weights)  # a torch file, but not a training checkpoint
    with pytest.raises(CheckpointPathError, match="not a Lightning training checkpoint"):
        resolve_ckpt_path(cfg_of(weights), "toy")


def test_last_resumes_only_a_run_of_the_same_config_and_set(toy_set_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "logs" / "train" / "runs"
    with pytest.raises(CheckpointPathError, match="nothing to resume"):
        resolve_ckpt_path(compose_train(tiny(toy_set_dir, runs / "b", "ckpt_path=last")), "toy_24000_s0")
    _, objs = train(compose_train(tiny(toy_set_dir, runs / "a")))
    last = runs / "a" / "checkpoints" / "last.ckpt"
    assert last.is_file() and objs["data_id"] == "toy_24000_s0"

    # Longer (trainer.max_epochs and the scheduler horizon it sets), elsewhere, with a logger: the same run.
    same = tiny(toy_set_dir, runs / "b", "ckpt_path=last", "trainer.max_epochs=3", "logger=csv")
    assert resolve_ckpt_path(compose_train(same), "toy_24000_s0") == str(last)
    # Another model, another set: refused, naming what differs; also when named explicitly.
    other = compose_train(tiny(toy_set_dir, runs / "b", "ckpt_path=last", "model=mlp_base"))
    with pytest.raises(CheckpointPathError, match=r"no.* config and dataset .*model.net.width: 128 -> 256"):
        resolve_ckpt_path(other, "toy_24000_s0")
    with pytest.raises(CheckpointPathError, match="dataset toy_24000_s0 != toy_other"):
        resolve_ckpt_path(compose_train(same), "toy_other")
    explicit = compose_train(tiny(toy_set_dir, runs / "b", f"ckpt_path={last}", "data.batch_size=64"))
    with pytest.raises(CheckpointPathError, match=r"another run \(config differs in data.batch_size"):
        resolve_ckpt_path(explicit, "toy_24000_s0")
    t0 = time.time()
    with pytest.raises(CheckpointPathError, match="model.net.width"):  # before anything is built or trained
        train(compose_train(tiny(toy_set_dir, runs / "c", "ckpt_path=last", "model=mlp_base")))
    assert time.time() - t0 < 20 and not (runs / "c").exists()

    # A newer run of another config does not hide the older run of this one.
    ck = torch.load(last, weights_only=True)
    ck["depth_pose"]["config"]["model"]["net"]["width"] = 999
    (runs / "z" / "checkpoints").mkdir(parents=True)
    torch.save(ck, runs / "z" / "checkpoints" / "last.ckpt")
    os.utime(last, (time.time() - 60, time.time() - 60))
    assert resolve_ckpt_path(compose_train(same), "toy_24000_s0") == str(last)


# ------------------------------------------------------------------ dp-generate sizes, in process
def gen_cfg(tmp_path: Path, out: Path, *overrides: str):
    cfg = compose("generate", [f"paths.root_dir={tmp_path}", f"out_dir={out}", "progress=false", *overrides])
    cfg.paths.output_dir = str(tmp_path)
    return cfg


def test_generate_refuses_what_the_disk_cannot_hold_at_once(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "set"
    t0 = time.time()
    with pytest.raises(GenerationConfigError, match=r"10,000,000,000,000 rows need about .* TiB of disk"):
        generate(gen_cfg(tmp_path, out, "num_samples=10000000000000"))
    assert time.time() - t0 < 5 and not out.exists()  # no shard list, no folder, no memory grown

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=2**40))  # 1 TiB free
    with pytest.raises(
        GenerationConfigError, match=r"=10000000000: .* 4.0 TiB of disk at .*but 1.0 TiB is free"
    ):
        generate(gen_cfg(tmp_path, out, "num_samples=10000000000"))
    gen_dataset.check_resources(gen_cfg(tmp_path, out, "num_samples=1000000000"), out)  # 400 GB: fits
    # shard_range: only this part's rows count
    part = gen_cfg(tmp_path, out, "num_samples=10000000000", "shard_range=[0,1000]")  # 10^8 rows
    gen_dataset.check_resources(part, out)


def test_generate_refuses_a_shard_larger_than_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(gen_dataset, "available_memory", lambda: 2**30)  # 1 GiB
    out = tmp_path / "set"
    big = gen_cfg(tmp_path, out, "num_samples=1000000", "shard_size=1000000")
    with pytest.raises(GenerationConfigError, match=r"shard_size=1,000,000, .* of memory, but 1.0 GiB is"):
        gen_dataset.check_resources(big, out)
    with pytest.raises(GenerationConfigError, match="4 worker"):
        gen_dataset.check_resources(gen_cfg(tmp_path, out, "num_samples=1000000"), out, workers=4)
    gen_dataset.check_resources(gen_cfg(tmp_path, out, "num_samples=1000000"), out)  # 100k-row shards fit
    gen_dataset.check_resources(big, out, analytic=False)  # the render path: disk only


def test_generate_refusals_leave_an_existing_set_as_it_was(tmp_path: Path) -> None:
    """A value refused late (the body's), a non-boolean overwrite, a seed beyond 64 bits or a malformed shard
    list on resume: one line each, and the set already there is untouched (overwrite=true included); a
    truncated shard is made again on resume, byte for byte."""
    import json

    from depth_pose import shards

    out = tmp_path / "set"
    base = ["num_samples=600", "shard_size=300", "body.n_bodies=16"]
    generate(gen_cfg(tmp_path, out, *base))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for extra, match in (
        (["overwrite=true", "body.n_bodies=0"], "bad body config: n_bodies must be >= 1"),
        (["overwrite=no"], "overwrite must be true or false, got 'no'"),
        (["seed=18446744073709551616"], "seed must be below 2"),
    ):
        with pytest.raises(GenerationConfigError, match=match):
            generate(gen_cfg(tmp_path, out, *base, *extra))
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before, extra
    # a resumed run makes a corrupt or truncated shard again instead of keeping it
    shard = out / "shard-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    generate(gen_cfg(tmp_path, out, *base))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    m = json.loads((out / shards.MANIFEST).read_text())
    m["shards"][0]["index"] = "0"
    (out / shards.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(GenerationConfigError, match=r"malformed shard list\); pass overwrite=true"):
        generate(gen_cfg(tmp_path, out, *base))
    with pytest.raises(shards.CorruptSetError, match="malformed shard list"):
        shards.read_table(out)


def test_sets_not_fit_to_train_on_are_one_line(tmp_path: Path) -> None:
    """An unfinished part (shard_range) and a shard rewritten with other column types (its sha256 and rows
    updated to match): InputErrors (exit 2), not a RuntimeError or Arrow's traceback."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from depth_pose import shards

    part = tmp_path / "part"
    generate(
        gen_cfg(tmp_path, part, "num_samples=600", "shard_size=300", "body.n_bodies=16", "shard_range=[0,1]")
    )
    with pytest.raises(shards.IncompleteSetError, match="incomplete") as e:
        shards.read_table(part)
    assert isinstance(e.value, InputError)
    full = tmp_path / "full"
    generate(gen_cfg(tmp_path, full, "num_samples=600", "shard_size=300", "body.n_bodies=16"))
    shard = full / "shard-00001.parquet"
    t = pq.read_table(shard)
    t = t.set_column(t.schema.get_field_index("nose_x"), "nose_x", pa.array([str(v) for v in t["nose_x"]]))
    pq.write_table(t, shard)
    m = json.loads((full / shards.MANIFEST).read_text())
    m["shards"][1]["sha256"] = shards.sha256_file(shard)
    (full / shards.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(shards.CorruptSetError, match="columns do not match"):
        shards.read_table(full)


def test_generate_refuses_an_unwritable_out_dir(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(GenerationConfigError, match=r"out_dir=.*file/set cannot be created: .*file is not a"):
        generate(gen_cfg(tmp_path, a_file / "set", "num_samples=100"))
    gen_dataset.check_writable(tmp_path / "new" / "set")  # creatable: fine, and nothing is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(GenerationConfigError, match="locked/set is not writable"):
            gen_dataset.check_writable(locked / "set")


# ------------------------------------------------------------------ the commands (subprocesses)
def run_cli(command: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"depth_pose.cli.{command}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, HYDRA_FULL_ERROR="0"),
    )


def one_error(res: subprocess.CompletedProcess, command: str) -> str:
    assert res.returncode == EXIT_USAGE, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"dp-{command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    return lines[0]


@pytest.mark.slow  # one process per case
@pytest.mark.parametrize(
    "command, args, expected",
    [
        ("train", ["trainer.max_epochs=0", "data.dir=SET"], "trainer.max_epochs=0 must be an integer >= 1"),
        ("train", ["vis_threshold=5", "data.dir=SET"], "vis_threshold=5 must be a number in [0, 1]"),
        ("train", ["data.dir=FILE"], "is a file, not a dataset folder"),
        ("train", ["ckpt_path=FILE", "data.dir=SET"], "is not a readable Lightning checkpoint"),
        ("generate", ["vis_threshold=5", "out_dir=OUT"], "vis_threshold=5 must be a number in [0, 1]"),
        ("generate", ["num_samples=10000000000000", "out_dir=OUT"], "TiB of disk"),
        ("generate", ["num_samples=100", "out_dir=FILE/set"], "cannot be created"),
        ("eval", ["vis_threshold=5", "suite=invariance"], "vis_threshold=5 must be a number in [0, 1]"),
        ("predict", ["source=x.jpg", "keypoint_threshold=5"], "keypoint_threshold=5 must be a number"),
        (
            "predict",
            ["source=x.jpg", "tracking.tracker=bogus"],
            "tracking.tracker=bogus: choose one of bytetrack",
        ),
    ],
)
def test_cli_refusals_are_one_line(command, args, expected, toy_set_dir, tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a set, not a checkpoint")
    subs = {"SET": str(toy_set_dir), "FILE": str(a_file), "OUT": str(tmp_path / "out")}
    for k, v in subs.items():
        args = [a.replace(k, v) for a in args]
    res = run_cli(
        command, *args, f"hydra.run.dir={tmp_path / 'h'}", f"paths.log_dir={tmp_path}", cwd=tmp_path
    )
    assert expected in one_error(res, command)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # four processes
@pytest.mark.parametrize(
    "command, typo, key",
    [
        ("generate", "num_sample=10,20", "num_samples"),
        ("train", "trainer.max_epoch=1,2", "trainer.max_epochs"),
        ("eval", "keypoint=a.jsonl,b.jsonl", "keypoints"),
        ("predict", "tracking.trackr=bytetrack,botsort", "tracking.tracker"),
    ],
)
def test_mistyped_key_in_a_multirun_is_one_line(command, typo, key, tmp_path: Path) -> None:
    res = run_cli(
        command, "-m", typo, "source=x.jpg" if command == "predict" else "progress=false", cwd=tmp_path
    )
    line = one_error(res, command)
    assert f"{typo}: no such key" in line and f"did you mean {key}" in line
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow  # submitit starts one process per job
def test_submitit_multirun_exits_with_the_worst_job_code(tmp_path: Path) -> None:
    """``dp-eval -m hydra/launcher=submitit_local keypoints=GOOD,MISSING``: the jobs run in other processes;
    the launching command still exits 2 (the missing file's job) and names that job."""
    import json

    K = [[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]]
    xs = [0, 0.03, -0.03, 0.07, -0.07, 0.2, -0.2, 0.25, -0.25, 0.27, -0.27, 0.1, -0.1, 0.1, -0.1, 0.1, -0.1]
    ys = [0.0, -0.03, -0.03, -0.02, -0.02, 0.15, 0.15, 0.45, 0.45, 0.7, 0.7, 0.65, 0.65, 1.1, 1.1, 1.5, 1.5]
    rows = [
        {
            "id": f"p{z}",
            "K": K,
            "gt_z_m": z,
            "keypoints_xyc": [
                [609.6 + 721.5 * x / z, 172.9 + 721.5 * (y - 0.3) / z, 0.9] for x, y in zip(xs, ys)
            ],
        }
        for z in (10.0, 20.0)
    ]
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", f"keypoints={good},{tmp_path / 'missing.jsonl'}"]
    res = run_cli("eval", *args, f"hydra.sweep.dir={sweep}", cwd=REPO, timeout=400)
    assert res.returncode == EXIT_USAGE, res.stderr[-3000:]
    assert f"dp-eval: job 1 exited with code 2 (its log: {sweep}/.submitit/)" in res.stderr
    assert (sweep / "0" / "metrics.json").is_file()  # the good job ran
    assert sorted((sweep / ".exit_codes").iterdir()) == [
        sweep / ".exit_codes" / "0",
        sweep / ".exit_codes" / "1",
    ]
