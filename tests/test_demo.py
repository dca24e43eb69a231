"""``make demo`` (the README's first quick-start command), end to end on a small set: generate, train,
evaluate next to the shipped model, predict on the bundled example image, print the summary."""

from __future__ import annotations

import json
import math

import pytest

from depth_pose import demo

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_and_prints_its_summary(tmp_path, capsys):
    out, data = tmp_path / "demo", tmp_path / "data"
    assert demo.main(["--samples", "4000", "--epochs", "1", "--out", str(out), "--data-root", str(data)]) == 0
    printed = capsys.readouterr().out
    for line in (
        "=== 1/4 generate 4,000 synthetic samples",
        "=== 4/4 predict on the bundled example image",
        "depth_pose demo — summary",
        "pose invariance (demo model)",
        "pose invariance (shipped default)",
        "example image (rendered, known depths):",
    ):
        assert line in printed, line
    assert (out / "demo_model.safetensors").is_file()
    assert any(data.glob("synthetic/*/manifest.json"))  # the set went where it was told, not into the repo
    truth = json.loads((demo.ASSETS / "example.json").read_text())["people"]
    preds = [json.loads(x) for x in (out / "predict" / "predictions.jsonl").read_text().splitlines() if x]
    assert len(preds) == len(truth)
    assert all(math.isfinite(p["z_m"]) and p["z_m"] > 0 and p["sigma_m"] > 0 for p in preds)
