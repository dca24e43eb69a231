"""The package outside its checkout: a wheel built from the repo carries conf/ and the shipped model, installs
offline with --no-deps into a fresh venv that reuses this venv's packages, and dp-eval runs from elsewhere."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO


@pytest.mark.slow
def test_installed_wheel_runs_dp_eval_from_another_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            ".",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("depth_pose-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    venv_site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # This venv's packages (torch, hydra, ...) after the new venv's own: a plain path entry, so the checkout's
    # editable-install hook (a .pth file in that folder) is not run and only the wheel provides depth_pose.
    (venv_site / "project_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DEPTH_POSE_ROOT", "ANNY_CACHE_DIR")
    }
    env["HOME"] = str(tmp_path / "home")
    env["PIP_NO_INDEX"] = "1"
    inst = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert inst.returncode == 0, inst.stderr[-2000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    example = json.loads((REPO / "depth_pose" / "assets" / "example.json").read_text())
    people = example["people"]
    (work / "people.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "id": f"p{i}",
                    "keypoints_xyc": p["yolo"]["keypoints_xyc"],
                    "K": example["K"],
                    "gt_z_m": p["z_m"],
                }
            )
            + "\n"
            for i, p in enumerate(people)
        )
    )
    where = subprocess.run(
        [
            py,
            "-c",
            "import depth_pose, depth_pose.env as e; print(depth_pose.__file__); print(e.config_dir())",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    assert str(venv) in where[0] and str(REPO) not in where[0]
    assert where[1].startswith(str(venv)) and (Path(where[1]) / "eval.yaml").is_file()

    res = subprocess.run(
        [
            venv / "bin" / "dp-eval",
            "keypoints=people.jsonl",
            "out=pred/pred.jsonl",
            "plots=false",
            "progress=false",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in (work / "pred" / "pred.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(len(people))]
    for r, p in zip(rows, people):
        assert abs(r["z_pred_m"] / p["z_m"] - 1) < 0.3
