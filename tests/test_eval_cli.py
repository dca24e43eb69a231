"""dp-eval on keypoint files: output contract, malformed lines, exit codes (CLI run in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, compose

from depth_pose.eval.io import read_keypoints_jsonl

K = [[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]]


def person(z: float = 10.0, conf: float = 0.9) -> list[list[float]]:
    """A standing person (17 x [x, y, conf]) at roughly ``z`` metres with K above."""
    f, h = 721.5, 1.5
    ys = np.array(
        [0.0, -0.03, -0.03, -0.02, -0.02, 0.15, 0.15, 0.45, 0.45, 0.7, 0.7, 0.65, 0.65, 1.1, 1.1, 1.5, 1.5]
    )
    xs = np.array(
        [0, 0.03, -0.03, 0.07, -0.07, 0.2, -0.2, 0.25, -0.25, 0.27, -0.27, 0.1, -0.1, 0.1, -0.1, 0.1, -0.1]
    )
    u = 609.6 + f * xs / z
    v = 172.9 + f * (ys - 0.2 * h) / z
    return [[float(a), float(b), conf] for a, b in zip(u, v)]


def line(pid: str, kp, k=K, gt: float | None = 10.0, **extra) -> str:
    obj = {"id": pid, "keypoints_xyc": kp, "K": k, **extra}
    if gt is not None:
        obj["gt_z_m"] = gt
    return json.dumps(obj)


def malformed_file(path: Path) -> Path:
    unseen = [[float("nan"), float("nan"), 0.0]] * 17
    lines = [
        line("good-1", person(10.0), image="x"),  # 1: fine (extra fields ignored)
        "{not json",  # 2
        line("short", person()[:16]),  # 3: 16 joints
        json.dumps({"id": "noK", "keypoints_xyc": person()}),  # 4: K missing
        line("singular", person(), k=[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]]),  # 5: singular K (bottom row)
        line("negf", person(), k=[[-700.0, 0, 600], [0, 700.0, 170], [0, 0, 1]]),  # 6: non-positive focal
        "",  # 7: blank: ignored
        line("unseen", unseen, gt=None),  # 8: every joint unseen (NaN coords, conf 0): no_joints, null z
        line("zeroconf", person(20.0, conf=0.0), gt=20.0),  # 9: confidences all 0: still scored
        "[1, 2, 3]",  # 10: JSON but not an object
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "depth_pose.cli.eval",
            *args,
            "progress=false",
            "plots=false",
            f"hydra.run.dir={cwd / 'hydra_run'}",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_reader_reports_line_numbers(tmp_path):
    ps = read_keypoints_jsonl(malformed_file(tmp_path / "in.jsonl"))
    assert ps.ids == ["good-1", "unseen", "zeroconf"]
    assert ps.n_input == 9  # the blank line is not an entry
    where = dict(ps.skipped)
    assert set(where) == {"line 2", "line 3", "line 4", "line 5", "line 6", "line 10"}
    assert "not JSON" in where["line 2"] and "shape (17, 3)" in where["line 3"]
    assert "missing 'K'" in where["line 4"] and "bottom row must be [0, 0, 1]" in where["line 5"]
    assert "non-positive focal" in where["line 6"] and "not a JSON object" in where["line 10"]
    assert np.isnan(ps.gt_z[1]) and ps.gt_z[2] == 20.0
    assert (ps.keypoints[1, :, 2] == 0).all()


def test_cli_malformed_file_exit_3_and_relative_paths(tmp_path, tiny_model):
    malformed_file(tmp_path / "in.jsonl")
    r = run_cli(["keypoints=in.jsonl", "out=res/pred.jsonl", f"ckpt={tiny_model}"], cwd=tmp_path)
    assert r.returncode == 3, r.stderr[-2000:]
    for n in (2, 3, 4, 5, 6, 10):
        assert f"left out line {n}:" in r.stderr
    assert "left out line 8" not in r.stderr and "left out line 9" not in r.stderr
    rows = [json.loads(s) for s in (tmp_path / "res" / "pred.jsonl").read_text().splitlines()]
    assert [r_["id"] for r_ in rows] == ["good-1", "unseen", "zeroconf"]
    for r_ in (rows[0], rows[2]):
        assert np.isfinite(r_["z_pred_m"]) and np.isfinite(r_["z_sigma_m"]) and r_["z_sigma_m"] > 0
    assert rows[1]["z_pred_m"] is None and rows[1]["z_sigma_m"] is None and rows[1]["status"] == "no_joints"
    assert rows[2]["status"] == "too_few_joints"  # confidences all 0: the detector's guesses
    assert "gt_z_m" in rows[0] and rows[0]["abs_err_m"] == pytest.approx(
        abs(rows[0]["z_pred_m"] - 10.0), abs=1e-3
    )
    assert "gt_z_m" not in rows[1] and "abs_err_m" not in rows[1]
    metrics = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert (metrics["n_input"], metrics["n_scored"], metrics["n_skipped"], metrics["n_with_gt"]) == (
        9,
        3,
        6,
        2,
    )
    assert metrics["methods"]["model"]["n"] == 2
    assert (tmp_path / "res" / "report.md").is_file()
    assert "ALE (m)" in r.stdout  # the table goes to stdout


def test_cli_usage_errors_exit_2(tmp_path):
    r = run_cli(["keypoints=missing.jsonl", "out=p.jsonl"], cwd=tmp_path)
    assert r.returncode == 2 and "missing.jsonl" in r.stderr
    r = run_cli(["out=p.jsonl"], cwd=tmp_path)  # no mode
    assert r.returncode == 2 and "exactly one of" in r.stderr
    r = run_cli(["keypoints=missing.jsonl", "no_such_key=1"], cwd=tmp_path)  # bad override (Hydra's error)
    assert r.returncode == 2
    assert not (tmp_path / "p.jsonl").exists()


def test_out_as_a_folder_or_onto_the_shipped_model_is_refused(tmp_path):
    """``out=DIR/`` names a folder, not the predictions file; the shipped model (``ckpt`` not given) is an
    input like any other: neither out= nor the files written beside it may land on it."""
    from depth_pose.eval.io import EvalInputError
    from depth_pose.evaluate import evaluate
    from depth_pose.fileio import OutputPathError
    from depth_pose.predictor import DEFAULT_MODEL

    (tmp_path / "good.jsonl").write_text(line("a", person()) + "\n")
    with pytest.raises(EvalInputError, match=r"ends with a slash .* out=.*/new/predictions.jsonl"):
        evaluate(compose("eval", [f"keypoints={tmp_path / 'good.jsonl'}", f"out={tmp_path / 'new'}/"]))
    assert not (tmp_path / "new").exists()
    with pytest.raises(OutputPathError, match="is the input ckpt"):
        evaluate(compose("eval", [f"keypoints={tmp_path / 'good.jsonl'}", f"out={DEFAULT_MODEL}"]))


def test_unreadable_checkpoint_is_a_usage_error(tmp_path):
    from depth_pose.eval.io import EvalInputError
    from depth_pose.evaluate import evaluate

    (tmp_path / "good.jsonl").write_text(line("a", person()) + "\n")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    bad.with_suffix(".json").write_text('{"hparams": {}, "normalisation": {}}')
    for ckpt in (bad, tmp_path / "absent.ckpt"):
        cfg = compose(
            "eval", [f"keypoints={tmp_path / 'good.jsonl'}", f"out={tmp_path / 'p.jsonl'}", f"ckpt={ckpt}"]
        )
        with pytest.raises(EvalInputError, match="cannot load model"):
            evaluate(cfg)
    assert not (tmp_path / "p.jsonl").exists()


def test_evaluate_in_process_all_good_exit_0(tmp_path, tiny_model):
    """The plain function behind the CLI, composed with hydra (exit code 0 when every line is scored)."""
    from depth_pose.evaluate import evaluate

    (tmp_path / "good.jsonl").write_text(
        "\n".join(line(f"p{i}", person(z), gt=z) for i, z in enumerate((5.0, 12.0, 25.0)))
    )
    cfg = compose(
        "eval",
        [
            f"keypoints={tmp_path / 'good.jsonl'}",
            f"out={tmp_path / 'o' / 'pred.jsonl'}",
            f"ckpt={tiny_model}",
            "progress=false",
        ],
    )
    m = evaluate(cfg)
    assert m["exit_code"] == 0 and m["n_scored"] == 3 and m["n_skipped"] == 0
    # Per person size: 1.53 m of keypoint extent at fy 721.5 -> 221 / 92 / 44 px tall.
    sizes = {b: v["n"] for b, v in m["model_by_person_px"].items()}
    assert sizes == {"0-40": 0, "40-60": 1, "60-100": 1, "100-200": 0, ">200": 1}
    assert "per person size" in (tmp_path / "o" / "report.md").read_text()
    # Baselines on the same people: these synthetic stick people have a 0.5 m shoulder-hip segment.
    rows = [json.loads(s) for s in (tmp_path / "o" / "pred.jsonl").read_text().splitlines()]
    for r_, z in zip(rows, (5.0, 12.0, 25.0)):
        assert r_["z_shoulder_hip_m"] == pytest.approx(z * 0.48 / np.hypot(0.1, 0.5), rel=1e-3)
    for name in ("error_vs_distance", "pred_vs_true", "calibration"):
        assert (tmp_path / "o" / f"{name}.png").stat().st_size > 5000


@pytest.fixture(scope="module")
def small_hybrid_set(tmp_path_factory) -> Path:
    """1,600 rows of the real generator (Anny bodies, hybrid poses, YOLO-like noise) in 4 shards."""
    from generation.pipeline import generate

    tmp = tmp_path_factory.mktemp("hybrid_set")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        cfg = compose(
            "generate",
            [
                "num_samples=1600",
                "shard_size=400",
                "samples_per_pose=4",
                "body.n_bodies=16",
                f"paths.root_dir={tmp}",
                f"out_dir={tmp / 'set'}",
                "progress=false",
                "compile=false",
            ],
        )
        return generate(cfg)


def test_dataset_mode_scores_a_generated_set_per_pose(tmp_path, tiny_model, small_hybrid_set):
    """dp-eval dataset=DIR: every row scored, per-pose groups from the set's own columns, model ALE equal to
    the predictor's on the same rows, first rows only with dataset_max_rows."""
    from depth_pose.evaluate import evaluate
    from depth_pose.predictor import DepthPredictor
    from depth_pose.schema import KP_COLS
    from depth_pose.shards import read_frame

    m = evaluate(
        compose(
            "eval",
            [
                f"dataset={small_hybrid_set}",
                f"out={tmp_path / 'o' / 'pred.jsonl'}",
                f"ckpt={tiny_model}",
                "progress=false",
                "dataset_max_rows=null",
            ],
        )
    )
    assert m["exit_code"] == 0 and m["mode"] == "dataset" and m["n_scored"] == m["n_with_gt"] == 1600
    df = read_frame(small_hybrid_set)
    labels = np.where(
        df["preset"] != "",
        df["preset"],
        np.where(df["both_walk"], "both_walk", np.where(df["walk"], "walk", df["strategy"])),
    )
    names, counts = np.unique(labels, return_counts=True)
    by_pose = m["by_group"]["pose"]["model"]
    assert {k: v["n_total"] for k, v in by_pose.items()} == dict(zip(names.tolist(), counts.tolist()))
    assert len(by_pose) >= 5 and set(by_pose) - {"walk", "both_walk"} <= {
        p.stem for p in (REPO / "generation" / "data" / "presets").glob("*.yaml")
    }
    assert {k: v["n_total"] for k, v in m["by_group"]["arms"]["model"].items()} == {
        "hands up": int(df["hands_up"].sum()),
        "no hands up": int((~df["hands_up"]).sum()),
    }
    # The same model through the Python API on the same rows.
    kp = df[KP_COLS].to_numpy(np.float32).reshape(-1, 17, 3)
    K = np.zeros((len(df), 3, 3), np.float32)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = df.fx, df.fy, df.cx, df.cy, 1.0
    z = DepthPredictor.load(tiny_model).predict(kp, K).z_m
    assert m["methods"]["model"]["ale_m"] == pytest.approx(
        float(np.abs(np.asarray(z) - df.z_m).mean()), rel=1e-5
    )
    rows = (tmp_path / "o" / "pred.jsonl").read_text().splitlines()
    assert len(rows) == 1600 and json.loads(rows[7])["pose"] == labels[7]
    assert json.loads(rows[7])["arms"] == ("hands up" if df["hands_up"][7] else "no hands up")
    assert "## Per pose" in (tmp_path / "o" / "report.md").read_text()
    m = evaluate(
        compose(
            "eval",
            [
                f"dataset={small_hybrid_set}",
                f"out={tmp_path / 'p' / 'pred.jsonl'}",
                f"ckpt={tiny_model}",
                "progress=false",
                "plots=false",
                "dataset_max_rows=500",
            ],
        )
    )
    assert m["n_scored"] == 500  # first 500 rows: 2 of the 4 shards read


def test_dataset_mode_bad_folder_exit_2(tmp_path):
    (tmp_path / "not_a_set").mkdir()
    r = run_cli(["dataset=not_a_set", "out=p.jsonl"], cwd=tmp_path)
    assert r.returncode == 2 and "not a depth_pose dataset" in r.stderr
    assert not (tmp_path / "p.jsonl").exists()
