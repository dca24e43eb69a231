"""experiments/gpu_check.py --dry-run: every stage end to end on the CPU with tiny sizes, as on a GPU machine
(a saved body bank, Anny not importable), results in $OUT stage by stage, the carry size checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ["generation", "throughput", "converge", "kitti"]


def _dry_run(out: Path, bank: Path, *args: str) -> dict:
    """``gpu_check.py --dry-run`` on the bank, Anny hidden, results in ``out``; its gpu_check.json."""
    proc = subprocess.run(
        [sys.executable, "experiments/gpu_check.py", "--dry-run", "--body", "bank", f"--bank={bank}", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OUT": str(out), "GPU_CHECK_NO_ANNY": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text())


@pytest.mark.slow
@pytest.mark.real
def test_gpu_check_dry_run_without_anny(tmp_path, real_dir):
    bank = tmp_path / "bank.safetensors"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        [sys.executable, "-m", "generation.bank", str(bank), "n_bodies=64"], cwd=REPO, env=env, check=True
    )
    out = tmp_path / "out"
    data = _dry_run(out, bank, f"--kitti={real_dir / 'kitti_pedestrians_dev.jsonl'}")
    md = (out / "gpu_check.md").read_text()
    meta = data["meta"]
    assert meta["dry_run"] and not meta["anny_importable"] and meta["body"].startswith("bank")
    assert meta["carry"]["ok"] in (True, None)  # None: no git here
    assert list(data["stages"]) == STAGES and not data.get("errors")
    for title in ("## 1.", "## 2.", "## 3.", "## 4."):
        assert title in md

    gen = data["stages"]["generation"]
    assert gen["samples_per_s"] > 0 and gen["stats"]["ok"], gen["stats"]
    assert gen["stats"]["n_columns"] > 50
    # every way of drawing the poses ran; the device's (other random numbers) matches the CPU path too
    assert set(gen["variants"]) == {"cpu", "cpu_all_cores", "device", "device_batch1m"}
    assert gen["variants"]["device"]["stats"]["ok"] and "generation_partial" not in data["stages"]
    assert gen["variants"]["device_batch1m"]["bits_differ"] == []  # batch_size changes no bit (here: the CPU)
    tp = data["stages"]["throughput"]
    with_base = [r for r in tp["table"] if r.get("dataloader")]
    assert {r["precision"] for r in with_base} == {"32-true", "bf16-mixed"}
    assert all(r["device_resident"] > 0 and r["dataloader"] > 0 for r in with_base)
    conv = data["stages"]["converge"]
    assert conv["curve"] and 0 < conv["best_val_ale"] < 100
    assert conv["reference_best_val_ale"] is not None  # read from experiments/gpu_check_reference.json
    kitti = data["stages"]["kitti"]
    assert kitti["n"] == 178 and 0 < kitti["ale"] < 100
    # the optional profile of one draw (Python side and kernels) writes its text file
    prof_out = tmp_path / "prof"
    prof = _dry_run(prof_out, bank, "--stages", "gen_profile")["stages"]["gen_profile"]
    text = (prof_out / prof["file"]).read_text()
    assert prof["wall_s_under_cprofile"] > 0 and "_forward_kinematics" in text and "aten::" in text
    assert prof["host_s"] > 0 and prof["device_kernel_s"] is None  # no kernels on the CPU


def test_stats_compare_flags_a_shift():
    """Stage 1's distribution check: two draws of one distribution pass, a 3% scale change fails."""
    import numpy as np

    sys.path.insert(0, str(REPO / "experiments"))
    from gpu_check import compare_stats

    rng = np.random.default_rng(0)
    a = {"z": rng.lognormal(2.5, 0.6, 400_000), "c": rng.integers(0, 3, 400_000).astype(float)}
    b = {"z": rng.lognormal(2.5, 0.6, 400_000), "c": rng.integers(0, 3, 400_000).astype(float)}
    assert compare_stats(b, a, spp=8)["ok"]
    assert compare_stats({"z": b["z"] * 1.03, "c": b["c"]}, a, spp=8)["failed"] == ["z"]
