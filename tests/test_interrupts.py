"""Ctrl-C: one ``dp-<command>: interrupted (Ctrl-C)`` line and exit 130 (no traceback), what was finished
kept, and nothing an earlier run left in ``out`` lost to a run stopped before it wrote anything.

The interrupt is raised where the user's Ctrl-C lands: inside the detector (dp-predict), inside a training
step (dp-train: Lightning turns it into ``exit(1)`` after its graceful shutdown), inside a command's task.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
from helpers import compose
from hydra.core.hydra_config import HydraConfig
from test_eval_cli import person

from depth_pose.detect import Detections
from depth_pose.errors import EXIT_INTERRUPTED
from depth_pose.train import train


class InterruptingDetector:
    """dp-predict's detector stand-in (``detector._target_=...``): one standing person per image, and a
    Ctrl-C at its ``at``-th call (1-based; every instance counts on one class-wide counter)."""

    calls = 0
    at = 3
    nobody = False  # True: the frames before the Ctrl-C show no one

    def __init__(self, *args, **kwargs) -> None:
        kp = np.asarray(person(10.0), np.float32)[None]
        box = np.concatenate([kp[..., :2].min(1) - 5, kp[..., :2].max(1) + 5], 1).astype(np.float32)
        self.dets = Detections(box, np.full(1, 0.9, np.float32), kp, np.zeros(1, np.int64))

    def _one(self) -> Detections:
        InterruptingDetector.calls += 1
        if InterruptingDetector.calls == InterruptingDetector.at:
            raise KeyboardInterrupt
        return Detections.empty() if InterruptingDetector.nobody else self.dets

    def __call__(self, images, imgsz=None) -> list[Detections]:
        return [self._one() for _ in (images if isinstance(images, list) else [images])]

    def track(self, frame, tracker: str = "bytetrack.yaml") -> Detections:
        return self._one()


def invoke(module: str, args: list[str], t: Path, capsys, monkeypatch) -> tuple[int, str]:
    monkeypatch.setattr("sys.argv", [module, *args, f"hydra.run.dir={t / 'hydra'}"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.chdir(t)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"depth_pose.cli.{module}").main()
    return int(e.value.code or 0), capsys.readouterr().err


def predict_args(source: Path, out: Path, model: Path) -> list[str]:
    return [
        f"source={source}",
        f"out={out}",
        f"ckpt={model}",
        f"detector._target_={__name__}.InterruptingDetector",
        "zoom.enabled=false",
        "intrinsics.hfov_deg=60",
        "progress=false",
    ]


def test_ctrl_c_in_a_videos_first_pass_leaves_an_earlier_run_as_it_was(
    tiny_model, tmp_path, capsys, monkeypatch
):
    video = tmp_path / "walk.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    for i in range(8):
        vw.write(np.full((64, 96, 3), 20 * i, np.uint8))
    vw.release()
    out = tmp_path / "out"
    out.mkdir()
    earlier = {
        "predictions.jsonl": '{"an": "earlier run"}\n',
        "predictions.csv": "an,earlier\nrun,1\n",
        "summary.json": '{"an": "earlier run"}\n',
        "walk_pred.mp4": "an earlier run's video",
    }
    for name, text in earlier.items():
        (out / name).write_text(text)
    InterruptingDetector.calls, InterruptingDetector.at = 0, 3  # in the first pass: nothing recorded yet
    InterruptingDetector.nobody = False
    code, err = invoke("predict", predict_args(video, out, tiny_model), tmp_path, capsys, monkeypatch)
    assert code == EXIT_INTERRUPTED, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "dp-predict: interrupted (Ctrl-C) before any frame was written" in err, err[-3000:]
    assert {p.name: p.read_text() for p in out.iterdir()} == earlier  # nothing lost, no temporary left


def image_folder(tmp_path: Path) -> Path:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        cv2.imwrite(str(imgs / name), np.full((64, 96, 3), 127, np.uint8))
    return imgs


def stopped_on_images(model: Path, tmp_path: Path, capsys, monkeypatch, at: int, nobody: bool, *extra: str):
    """dp-predict on four images, the detector's Ctrl-C at its ``at``-th call (``nobody``: no one in the
    frames before): exit 130, no traceback; ``(out, stderr)``."""
    imgs, out = image_folder(tmp_path), tmp_path / "out"
    InterruptingDetector.calls, InterruptingDetector.at, InterruptingDetector.nobody = 0, at, nobody
    code, err = invoke("predict", [*predict_args(imgs, out, model), *extra], tmp_path, capsys, monkeypatch)
    assert code == EXIT_INTERRUPTED and "Traceback" not in err, err[-3000:]
    return out, err


def test_ctrl_c_between_images_keeps_the_records_of_those_done(tiny_model, tmp_path, capsys, monkeypatch):
    out, err = stopped_on_images(tiny_model, tmp_path, capsys, monkeypatch, 3, False)
    assert "dp-predict: interrupted (Ctrl-C): the 2 records of the 2 frames done are in" in err, err[-3000:]
    records = (out / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["source"] for r in records] == ["a.jpg", "b.jpg"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["counts"]["records"] == 2
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_ctrl_c_after_frames_with_nobody_still_reports_them(tiny_model, tmp_path, capsys, monkeypatch):
    """Frames without people write annotated images but no record: such a run is not "nothing written"
    (a camera nobody walked past yet, stopped with Ctrl-C): its summary is written."""
    out, err = stopped_on_images(tiny_model, tmp_path, capsys, monkeypatch, 3, True)
    assert "the 0 records of the 2 frames done" in err, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["counts"]["frames"] == 2
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a.jpg", "b.jpg"]


def test_ctrl_c_while_one_cameras_images_are_written(tiny_model, tmp_path, capsys, monkeypatch):
    """``scene.calibrate=true``: the images are detected first, then written one by one; a Ctrl-C between
    two keeps those written (exit 130, not "nothing processed")."""
    import depth_pose.predict.run as run

    drawn = []

    def annotate_then_stop(image, recs):
        drawn.append(1)
        if len(drawn) == 2:
            raise KeyboardInterrupt
        return image

    monkeypatch.setattr(run, "annotate", annotate_then_stop)
    out, err = stopped_on_images(tiny_model, tmp_path, capsys, monkeypatch, 99, False, "scene.calibrate=true")
    assert "nothing processed" not in err, err[-3000:]
    sources = [json.loads(r)["source"] for r in (out / "predictions.jsonl").read_text().splitlines()]
    assert sources == ["a.jpg", "b.jpg"]  # b's record was written before its image was drawn
    assert json.loads((out / "summary.json").read_text())["counts"]["frames"] == 2


def test_ctrl_c_in_any_commands_task_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    def stopped(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr("depth_pose.cli.generate.task", stopped)
    code, err = invoke("generate", [f"out_dir={tmp_path / 'set'}"], tmp_path, capsys, monkeypatch)
    assert code == EXIT_INTERRUPTED, err[-3000:]
    assert err.strip().splitlines() == ["dp-generate: interrupted (Ctrl-C)"], err[-3000:]


class CtrlCAtStep(L.Callback):
    """A Ctrl-C in the middle of training (before the third optimiser step)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 2:
            raise KeyboardInterrupt


def test_ctrl_c_in_training_is_an_interrupt_not_exit_1(toy_set_dir, tmp_path):
    """Lightning shuts down gracefully on Ctrl-C, then calls ``exit(1)``: that reads as a crash with no
    error line. ``train`` gives the interrupt back, which the shell reports (exit 130)."""
    cfg = compose(
        "train",
        [
            f"data.dir={toy_set_dir}",
            "logger=csv",
            "model=mlp_small",
            "trainer=cpu",
            "trainer.max_epochs=2",
            "data.max_samples=2000",
            "progress=false",
            f"paths.output_dir={tmp_path}",
            f"+callbacks.ctrl_c._target_={__name__}.CtrlCAtStep",
        ],
        return_hydra_config=True,
    )
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
