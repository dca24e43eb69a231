"""The analysis notebook runs top to bottom (jupytext -> nbclient) on a small fresh synthetic set."""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_analyse_checkpoint_notebook_runs(tmp_path: Path) -> None:
    nb = jupytext.read(REPO / "notebooks" / "analyse_checkpoint.py")
    env = {"N_SAMPLES": "4000", "NB_OUT": str(tmp_path / "nb")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    png = tmp_path / "nb" / "analysis.png"
    assert png.is_file() and png.stat().st_size > 10_000
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "ale_m" in outputs and "4000 samples" in outputs
