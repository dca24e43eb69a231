"""Resuming a killed training run (``dp-train ckpt_path=last``) is bit-identical to never stopping: the run is
SIGKILLed after its first epoch's checkpoint and resumed; the final weights and val/ale equal an uninterrupted
run's (CPU). Every random draw of a training step is a function of (seed, epoch, batch) and the shuffling of
(seed, epoch), so nothing depends on RNG state the checkpoint does not hold."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from helpers import REPO

TESTS = Path(__file__).resolve().parent
EPOCHS = 3


def _args(toy_set_dir: Path, log_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "depth_pose.cli.train",
        f"data.dir={toy_set_dir}",
        "data.max_samples=6000",
        "data.batch_size=256",
        "model=mlp_small",
        "trainer=cpu",
        f"trainer.max_epochs={EPOCHS}",
        "logger=csv",
        "progress=false",
        "final_eval.enabled=false",
        "+callbacks.pause._target_=pause_callback.PauseAfterEpoch",
        f"paths.log_dir={log_dir}",
        *extra,
    ]


def _env(**extra: str) -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, **extra)  # the same float sums in every run
    return env


def _last_ckpts(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob("train/runs/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)


def _final_val_ale(run_dir: Path) -> float:
    (metrics,) = list(run_dir.rglob("metrics.csv"))
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("val/ale")]
    return float(rows[-1]["val/ale"])


def _run(args: list[str], env: dict[str, str]) -> None:
    p = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    assert p.returncode == 0, p.stderr[-3000:]


def test_killed_run_resumes_bit_identically(toy_set_dir, tmp_path):
    t0 = time.time()
    ref_logs, logs = tmp_path / "ref", tmp_path / "logs"
    _run(_args(toy_set_dir, ref_logs), _env())
    (ref_ckpt,) = _last_ckpts(ref_logs)

    # The same run, SIGKILLed once its first epoch's checkpoint is on disk (held there by PauseAfterEpoch).
    err = (tmp_path / "killed.err").open("w")  # a file, not a pipe: a full pipe would block the run
    killed = subprocess.Popen(
        _args(toy_set_dir, logs),
        cwd=REPO,
        env=_env(DP_TEST_PAUSE_AFTER_EPOCH="0"),
        stdout=err,
        stderr=err,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and killed.poll() is None:
            found = _last_ckpts(logs)
            if found and torch.load(found[0], weights_only=True)["epoch"] == 0:
                break
            time.sleep(0.1)
        log = (tmp_path / "killed.err").read_text()[-2000:]
        assert killed.poll() is None, f"the run ended before it could be killed: {log}"
        assert _last_ckpts(logs), f"no checkpoint after 120 s: {log}"
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait()
        err.close()
    (half,) = _last_ckpts(logs)
    assert torch.load(half, weights_only=True)["epoch"] == 0

    time.sleep(1.1)  # the resumed run gets its own run folder (named to the second)
    _run(_args(toy_set_dir, logs, "ckpt_path=last"), _env())
    resumed = [p for p in _last_ckpts(logs) if p != half]
    assert len(resumed) == 1, _last_ckpts(logs)
    a = torch.load(ref_ckpt, weights_only=True)
    b = torch.load(resumed[0], weights_only=True)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (EPOCHS - 1, a["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    ref_ale, res_ale = _final_val_ale(ref_ckpt.parents[1]), _final_val_ale(resumed[0].parents[1])
    assert ref_ale == res_ale, (ref_ale, res_ale)
    took = time.time() - t0
    print(f"final val/ale {ref_ale:.6f} (uninterrupted) == {res_ale:.6f} (killed + resumed); {took:.0f} s")
