"""The one CLI shell (depth_pose/cli/shell.py): every command maps a bad override, a user error (also one
Hydra's instantiate wrapped) and a bad target to one ``dp-<command>: error:`` line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import InstantiationException

from depth_pose.cli.shell import one_line, user_error, worst
from depth_pose.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, InputError

COMMANDS = ("generate", "train", "eval", "predict")


def run_cli(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"depth_pose.cli.{command}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def error_lines(res: subprocess.CompletedProcess, prog: str) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.startswith(f"{prog}: error:")]


def test_user_error_unwraps_instantiate_and_keeps_bugs() -> None:
    inner = InputError("intrinsics: hfov_deg must be in (0, 180), got -5")
    try:
        try:
            raise inner
        except InputError as e:
            raise InstantiationException("Error in call to target 'X':\nInputError(...)") from e
    except InstantiationException as wrapped:
        assert user_error(wrapped) is inner
    assert user_error(RuntimeError("a bug")) is None
    assert user_error(KeyError("a bug")) is None
    bare = InstantiationException("Error locating target 'nowhere.Thing'")
    assert user_error(bare) is bare  # a _target_ that does not exist is a config value, not a bug
    assert user_error(FileNotFoundError("w.pt"), kinds=(InputError, FileNotFoundError)) is not None
    assert one_line(ValueError("a\n  b\n\nc")) == "a b c"


def test_worst_exit_code_orders_usage_over_partial_over_ok() -> None:
    assert worst(EXIT_OK, EXIT_PARTIAL) == EXIT_PARTIAL
    assert worst(EXIT_PARTIAL, EXIT_USAGE) == EXIT_USAGE
    assert worst(EXIT_USAGE, EXIT_PARTIAL) == EXIT_USAGE
    assert worst(EXIT_OK, EXIT_OK) == EXIT_OK


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_override_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    args = ("nonexistent_key=1",) if command != "predict" else ("source=x.jpg", "nonexistent_key=1")
    res = run_cli(command, *args, cwd=tmp_path)
    prog = f"dp-{command}"
    assert res.returncode == EXIT_USAGE, res.stderr[-2000:]
    lines = error_lines(res, prog)
    assert len(lines) == 1 and "nonexistent_key" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_error_raised_inside_instantiate_is_unwrapped(tmp_path: Path) -> None:
    import cv2

    img = tmp_path / "blank.jpg"
    cv2.imwrite(str(img), np.zeros((48, 64, 3), np.uint8))
    res = run_cli(
        "predict", f"source={img}", f"out={tmp_path / 'out'}", "intrinsics.hfov_deg=-5", cwd=tmp_path
    )
    assert res.returncode == EXIT_USAGE, res.stderr[-2000:]
    (line,) = error_lines(res, "dp-predict")
    assert "hfov_deg" in line and "Traceback" not in res.stderr


def test_generation_config_error_is_one_line(tmp_path: Path) -> None:
    res = run_cli(
        "generate", "camera.depth_min_m=-1", "num_samples=10", f"out_dir={tmp_path / 'set'}", cwd=tmp_path
    )
    assert res.returncode == EXIT_USAGE, res.stderr[-2000:]
    (line,) = error_lines(res, "dp-generate")
    assert "camera" in line and "depth_min_m" in line
    assert not (tmp_path / "set").exists()


def test_a_sweep_runs_as_the_readme_writes_it(tmp_path: Path) -> None:
    """``dp-generate -m ...`` with no ``paths.root_dir`` / ``hydra.sweep.dir``: the sweep folder is resolved
    before any job exists, where ``${hydra:runtime.cwd}`` fails ("HydraConfig was not set"); the launch
    directory is the root there too."""
    res = run_cli(
        "generate", "-m", "num_samples=300", "seed=1,2", "out_dir=${paths.root_dir}/set${seed}",
        "progress=false", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert all((tmp_path / f"set{s}" / "manifest.json").is_file() for s in (1, 2))
    sweeps = list((tmp_path / "outputs" / "generate" / "multiruns").iterdir())
    assert len(sweeps) == 1 and {p.name for p in sweeps[0].iterdir()} >= {"0", "1"}


def test_device_options_name_what_this_machine_has() -> None:
    """``device`` / ``detector.device``: torch's names, and for the detector ultralytics' GPU indices (``0``,
    ``0,1``), each checked against the CUDA devices there are (one line, before any work)."""
    import torch

    from depth_pose.jsonvalues import option_device

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert option_device("cpu", "device") == "cpu"
    with pytest.raises(InputError, match=r"device='foo' is not a device"):
        option_device("foo", "device")
    with pytest.raises(InputError, match=r"is not a device"):
        option_device("0", "device")  # torch has no bare index
    for value in ("0", 0, "0,1", f"cuda:{n}"):
        ok = value != f"cuda:{n}" and all(int(i) < n for i in str(value).split(","))
        if ok:
            assert option_device(value, "detector.device", gpu_indices=True) == str(value)
        else:
            with pytest.raises(InputError, match=rf"this machine has {n} CUDA device"):
                option_device(value, "detector.device", gpu_indices=True)
