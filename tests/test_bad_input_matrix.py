"""Issue 18's matrix of bad inputs: one case per kind, each run through the command's own entry point
(``depth_pose.cli.<cmd>.main`` with ``sys.argv`` set, in-process: the same shell, no start-up per case).

Every case asserts the exit code (0 done, 2 unusable input, 3 partly done), the one line that says why (a
``dp-<cmd>: error:`` line naming the input; for exit 3 the line that lists what was left out) and that no
input changed (sha256 of every input file before and after; nothing appeared or vanished in an input
folder). Device-like targets are FIFOs or symlinks made in the test's folder, never real /dev nodes.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import write_toy_set
from test_detector_weights import evil_weights
from test_eval_cli import K, line, person
from test_integrity import copy_model, flip_bytes, triple_depth
from test_outputs_vs_inputs import fifo, image_dir, keypoints_file, snapshot

from depth_pose.detect import Detections

MODULES = {"dp-eval": "eval", "dp-predict": "predict", "dp-generate": "generate", "dp-train": "train"}
SHARD = "shard-00000.parquet"
KT = np.asarray(K).T.tolist()


# ---------------------------------------------------------------------------------------------- inputs
class FakeDetector:
    """dp-predict's detector stand-in (``detector._target_=...``): one standing person in every image."""

    def __init__(self, *args, **kwargs) -> None:
        kp = np.asarray(person(10.0), np.float32)[None]
        box = np.concatenate([kp[..., :2].min(1) - 5, kp[..., :2].max(1) + 5], 1).astype(np.float32)
        self.dets = Detections(boxes=box, scores=np.full(1, 0.9, np.float32), keypoints=kp)

    def __call__(self, images, imgsz=None) -> list[Detections]:
        return [self.dets for _ in (images if isinstance(images, list) else [images])]


FAKE = f"detector._target_={__name__}.FakeDetector"


def jsonl(t: Path, rows: list[str], name: str = "in.jsonl") -> Path:
    p = t / name
    p.write_text("\n".join(rows) + "\n")
    return p


def raw(t: Path, data: bytes, name: str = "in.jsonl") -> Path:
    p = t / name
    p.write_bytes(data)
    return p


def small_set(t: Path) -> Path:
    return write_toy_set(t / "set", 64, seed=1)


def empty_dir(t: Path) -> Path:
    (t / "empty").mkdir()
    return t / "empty"


def a_file(t: Path, name: str = "file.txt", text: str = "not a set, not a checkpoint\n") -> Path:
    p = t / name
    p.write_text(text)
    return p


def calib(t: Path, k, name: str = "calib.json") -> Path:
    p = t / name
    p.write_text(json.dumps({"K": k, "width": 1242, "height": 375}))
    return p


# ----------------------------------------------------------------------------------------------- cases
# A case's builder makes its inputs in the case folder ``t`` and returns the command line; every entry of
# ``t`` it made (and the session's model) is an input: hashed before and after. Outputs go to t/o.
Build = Callable[[Path, dict], list[str]]


@dataclass
class Case:
    prog: str
    build: Build
    code: int
    pattern: str | None  # the error line for exit 2; for 3 a "left out"/"failed" line; for 0 a stderr line
    slow: bool = False
    check: Callable[[Path, str], None] | None = None  # more to assert (t, stderr)


def on_keypoints(make: Callable[[Path], Path]) -> Build:
    """dp-eval on the keypoint file ``make`` writes."""
    return lambda t, fx: [f"keypoints={make(t)}", f"out={t / 'o' / 'pred.jsonl'}", f"ckpt={fx['model']}"]


def on_images(*overrides: str, make: Callable[[Path], Path] | None = None) -> Build:
    """dp-predict on an image folder (:class:`FakeDetector`); ``{made}`` in ``overrides``: the file ``make``
    writes."""

    def build(t: Path, fx: dict) -> list[str]:
        made = make(t) if make is not None else None
        args = [f"source={image_dir(t / 'imgs')}", f"out={t / 'o'}", f"ckpt={fx['model']}", FAKE]
        return args + ["zoom.enabled=false", *(o.format(made=made) for o in overrides)]

    return build


def on_set(*overrides: str, make: Callable[[Path], Path] = small_set) -> Build:
    """dp-train on the set ``make`` writes."""
    return lambda t, fx: [f"data.dir={make(t)}", *(o.format(t=t) for o in overrides)]


def _no_joints_counted_out(t: Path, err: str) -> None:
    rows = {r["id"]: r for r in map(json.loads, (t / "o" / "pred.jsonl").read_text().splitlines())}
    assert rows["nan"]["status"] == "no_joints" and rows["nan"]["z_pred_m"] is None
    metrics = json.loads((t / "o" / "metrics.json").read_text())
    assert metrics["model_ok_only"]["n"] == 1 and metrics["status_counts"]["no_joints"] == 1


def _no_code_ran(t: Path, err: str) -> None:
    assert not (t / "code_ran").exists(), "the pickled weights' code ran"


def _trained(t: Path, err: str) -> None:
    assert (t / "o" / "checkpoints" / "last.ckpt").is_file(), err[-3000:]


def _corrupt_images(t: Path) -> Path:
    import cv2

    d = t / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a.jpg"), np.full((375, 1242, 3), 90, np.uint8))
    (d / "b.jpg").write_bytes((d / "a.jpg").read_bytes()[:200])  # truncated
    (d / "c.jpg").write_bytes(b"\x00garbage, not an image" * 10)
    samples = [{"image": n, "K": K, "people": [{"gt_z_m": 10.0}]} for n in ("a.jpg", "b.jpg", "c.jpg")]
    (d / "gt.json").write_text(json.dumps({"samples": samples}))
    return d


def _set_rows_disagree(t: Path) -> Path:
    from depth_pose import shards

    d = small_set(t)
    shards.write_manifest(d, {**shards.load_manifest(d), "num_samples": 1000})
    return d


def _set_z_times_3(t: Path) -> Path:
    d = small_set(t)
    triple_depth(d)
    return d


def _model_flipped(t: Path, fx: dict) -> Path:
    m = copy_model(fx["model"], t / "m")
    flip_bytes(m)
    return m


def _random_ckpt(t: Path) -> Path:
    return raw(t, np.random.default_rng(0).bytes(4096), "random.ckpt")


def _locked(t: Path) -> Path:
    d = t / "locked"
    d.mkdir(mode=0o555)
    if os.access(d, os.W_OK):
        pytest.skip("running as root: a read-only folder is still writable")
    return d


def _link_to_fifo(t: Path) -> Path:
    (t / "out.jsonl").symlink_to(fifo(t / "pipe"))
    return t / "out.jsonl"


def _two(*rows: str) -> Callable[[Path], Path]:
    return lambda t: jsonl(t, list(rows))


GOOD = line("a", person())
NAN = [[None, None, 0.0]] * 17
CRLF_BOM = b"\xef\xbb\xbf" + f"{GOOD}\r\n{line('b', person())}\r\n".encode()
HUGE = line("b", person()).replace('"gt_z_m": 10.0', '"gt_z_m": 1' + "0" * 400)
CASES: dict[str, Case] = {
    # ---- outputs onto inputs (before any work: exit 2 naming the input)
    "eval-out-is-keypoints": Case(
        "dp-eval", lambda t, fx: [f"keypoints={(kp := keypoints_file(t))}", f"out={kp}"], 2, r"people\.jsonl"
    ),
    "eval-out-is-dataset-manifest": Case(
        "dp-eval",
        lambda t, fx: [f"dataset={(d := small_set(t))}", f"out={d / 'manifest.json'}"],
        2,
        r"/set\b",
    ),
    "predict-out-is-source-dir": Case(
        "dp-predict", lambda t, fx: [f"source={(d := image_dir(t / 'imgs'))}", f"out={d}"], 2, r"/imgs\b"
    ),
    "eval-out-is-metrics-json": Case(
        "dp-eval",
        lambda t, fx: [f"keypoints={keypoints_file(t)}", f"out={t / 'metrics.json'}"],
        2,
        "metrics.json",
    ),
    "eval-out-is-fifo": Case(
        "dp-eval",
        lambda t, fx: [f"keypoints={keypoints_file(t)}", f"out={fifo(t / 'p.jsonl')}"],
        2,
        r"p\.jsonl",
    ),
    "eval-out-is-symlink-to-fifo": Case(
        "dp-eval",
        lambda t, fx: [f"keypoints={keypoints_file(t)}", f"out={_link_to_fifo(t)}"],
        2,
        r"out\.jsonl",
    ),
    # ---- corrupt sets and models
    "eval-shard-z-times-3": Case(
        "dp-eval",
        lambda t, fx: [f"dataset={_set_z_times_3(t)}", f"out={t / 'o' / 'p.jsonl'}", f"ckpt={fx['model']}"],
        2,
        rf"{SHARD}.*sha256",
    ),
    "eval-manifest-row-count-disagrees": Case(
        "dp-eval",
        lambda t, fx: [
            f"dataset={_set_rows_disagree(t)}",
            f"out={t / 'o' / 'p.jsonl'}",
            f"ckpt={fx['model']}",
        ],
        2,
        r"num_samples=1000",
    ),
    "eval-model-corrupted-bytes": Case(
        "dp-eval",
        lambda t, fx: [
            f"keypoints={keypoints_file(t)}",
            f"out={t / 'o' / 'p.jsonl'}",
            f"ckpt={_model_flipped(t, fx)}",
        ],
        2,
        r"m/tiny\.safetensors",
    ),
    "eval-random-ckpt": Case(
        "dp-eval",
        lambda t, fx: [
            f"keypoints={keypoints_file(t)}",
            f"out={t / 'o' / 'p.jsonl'}",
            f"ckpt={_random_ckpt(t)}",
        ],
        2,
        r"random\.ckpt",
    ),
    "train-random-ckpt": Case(
        "dp-train",
        on_set("ckpt_path={t}/random.ckpt", make=lambda t: (_random_ckpt(t), small_set(t))[1]),
        2,
        r"random\.ckpt",
    ),
    # ---- JSON Lines: bad lines are left out (exit 3, the line named); bad files are refused (exit 2)
    "eval-transposed-K-line": Case(
        "dp-eval", on_keypoints(_two(GOOD, line("b", person(), k=KT))), 3, r"left out line 2: .*transposed"
    ),
    "eval-K22-is-2-line": Case(
        "dp-eval",
        on_keypoints(_two(GOOD, line("b", person(), k=[*K[:2], [0, 0, 2]]))),
        3,
        r"left out line 2: .*\[0, 0, 1\]",
    ),
    "eval-confidence-5-line": Case(
        "dp-eval",
        on_keypoints(_two(GOOD, line("b", person(conf=5.0)))),
        3,
        r"left out line 2: keypoints_xyc confidences must be scores in \[0, 1\] .*got 5 \(another scale",
    ),
    "eval-keypoint-x-1e300-line": Case(
        "dp-eval",
        on_keypoints(_two(GOOD, line("b", [[1e300, 100.0, 0.9], *person()[1:]]))),
        3,
        r"left out line 2: keypoints_xyc coordinates must be pixels within ±1e\+07, got 1e\+300",
    ),
    "eval-image-wh-1e300-line": Case(
        "dp-eval",
        on_keypoints(_two(GOOD, line("b", person(), image_wh=[1e300, 1e300]))),
        3,
        r"left out line 2: image_wh must be .* up to 1e\+06",
    ),
    "eval-baseline-stature-negative": Case(
        "dp-eval",
        lambda t, fx: [*on_keypoints(_two(GOOD))(t, fx), "baselines.stature_m=-1"],
        2,
        r"baselines\.stature_m must be a number in \(0, 10\], got -1",
    ),
    "eval-K-beyond-float32-line": Case(
        "dp-eval",
        on_keypoints(_two(GOOD, line("b", person(), k=[[K[0][0], 0, 1e39], K[1], K[2]]))),
        3,
        r"left out line 2: K has entries beyond .*float32",
    ),
    "eval-deeply-nested-line": Case(
        "dp-eval",
        on_keypoints(_two(GOOD, "[" * 100_000 + "]" * 100_000)),
        3,
        r"left out line 2: .*(nested too deeply|not JSON)",
    ),
    "eval-10-pow-400-line": Case("dp-eval", on_keypoints(_two(GOOD, HUGE)), 3, r"left out line 2: .*gt_z_m"),
    "eval-gt-z-1e300-line": Case(
        "dp-eval", on_keypoints(_two(GOOD, line("b", person(), gt=1e300))), 3, r"left out line 2: .*gt_z_m"
    ),
    "eval-non-utf8-line": Case(
        "dp-eval",
        on_keypoints(lambda t: raw(t, f"{GOOD}\n".encode() + b'{"id": "b\xff"}\n')),
        3,
        r"left out line 2: not UTF-8",
    ),
    "eval-empty-file": Case("dp-eval", on_keypoints(lambda t: raw(t, b"")), 2, r"in\.jsonl.*no people"),
    "eval-json-array": Case(
        "dp-eval", on_keypoints(lambda t: raw(t, f"[{GOOD}]".encode())), 2, r"in\.jsonl.*JSON array"
    ),
    "eval-duplicate-ids": Case(
        "dp-eval",
        on_keypoints(_two(GOOD, line("b", person()), GOOD)),
        2,
        r"in\.jsonl.*'a' on lines 1 and 3",
    ),
    "eval-bom-crlf-read-normally": Case(
        "dp-eval", on_keypoints(lambda t: raw(t, CRLF_BOM)), 0, r"dp-eval: wrote"
    ),
    "eval-all-nan-person-is-no-joints": Case(
        "dp-eval",
        on_keypoints(_two(GOOD, line("nan", NAN))),
        0,
        r"dp-eval: wrote",
        check=_no_joints_counted_out,
    ),
    "eval-images-corrupt-image": Case(
        "dp-eval",
        lambda t, fx: [
            f"images={_corrupt_images(t)}",
            f"out={t / 'o' / 'p.jsonl'}",
            f"ckpt={fx['model']}",
            FAKE,
        ],
        3,
        r"left out .*b\.jpg",
    ),
    "eval-vis-threshold-5": Case(
        "dp-eval",
        lambda t, fx: ["suite=invariance", "vis_threshold=5"],
        2,
        r"vis_threshold=5 must be a number",
    ),
    # ---- dp-predict: intrinsics, config values, detector weights, sources
    "predict-calib-transposed-K": Case(
        "dp-predict",
        on_images("intrinsics.calib={made}", make=lambda t: calib(t, KT)),
        2,
        r"calib\.json.*transposed",
    ),
    "predict-calib-K22-is-2": Case(
        "dp-predict",
        on_images("intrinsics.calib={made}", make=lambda t: calib(t, [*K[:2], [0, 0, 2]])),
        2,
        r"calib\.json.*\[0, 0, 1\]",
    ),
    "predict-calib-not-yaml": Case(
        "dp-predict",
        on_images("intrinsics.calib={made}", make=lambda t: a_file(t, "calib.yaml", "{{: [")),
        2,
        r"calib\.yaml",
    ),
    "predict-hfov-0.001": Case("dp-predict", on_images("intrinsics.hfov_deg=0.001"), 2, r"hfov_deg"),
    "predict-hfov-179.9": Case("dp-predict", on_images("intrinsics.hfov_deg=179.9"), 2, r"hfov_deg"),
    "predict-bad-smoothing-method": Case(
        "dp-predict", on_images("smoothing.method=bogus"), 2, r"smoothing\.method must be kalman.*'bogus'"
    ),
    "predict-missing-detector-weights": Case(
        "dp-predict",
        lambda t, fx: [
            f"source={image_dir(t / 'imgs')}",
            f"out={t / 'o'}",
            "detector.weights=/nonexistent.pt",
        ],
        2,
        r"/nonexistent\.pt",
    ),
    "predict-pickled-detector-weights": Case(
        "dp-predict",
        lambda t, fx: [
            f"source={image_dir(t / 'imgs')}",
            f"out={t / 'o'}",
            f"detector.weights={evil_weights(t)[0]}",
        ],
        2,
        r"detector\.weights=.*evil\.pt.*pickle.*detector\.trust_weights=true",
        check=_no_code_ran,
    ),
    "predict-no-source": Case("dp-predict", lambda t, fx: [f"out={t / 'o'}"], 2, r"source= is required"),
    "predict-device-bogus": Case("dp-predict", on_images("device=foo"), 2, r"device='foo' is not a device"),
    "predict-detector-device-bogus": Case(
        "dp-predict", on_images("detector.device=foo"), 2, r"detector\.device='foo' is not a device"
    ),
    "predict-fx-not-a-number": Case(
        "dp-predict", on_images("intrinsics.fx=abc"), 2, r"intrinsics\.fx must be a number in \(0, inf\)"
    ),
    "predict-calib-size-zero": Case(
        "dp-predict",
        on_images("intrinsics.calib={made}", "intrinsics.calib_size=[0,0]", make=lambda t: calib(t, K)),
        2,
        r"intrinsics\.calib_size must be an integer in \[1, ",
    ),
    "predict-zoom-min-box-nan": Case(
        "dp-predict", on_images("zoom.min_box_px=nan"), 2, r"zoom\.min_box_px must be a number.*nan"
    ),
    "predict-smoothing-min-cutoff-nan": Case(
        "dp-predict", on_images("smoothing.min_cutoff=nan"), 2, r"smoothing\.min_cutoff must be a number"
    ),
    "predict-detector-conf-2": Case(
        "dp-predict",
        lambda t, fx: [f"source={image_dir(t / 'imgs')}", f"out={t / 'o'}", "detector.conf=2"],
        2,
        r"detector\.conf must be a number in \[0, 1\], got 2",
    ),
    "predict-max-frames-0": Case("dp-predict", on_images("max_frames=0"), 2, r"max_frames"),
    "predict-max-frames-minus-1": Case("dp-predict", on_images("max_frames=-1"), 2, r"max_frames"),
    "predict-tracker-bogus": Case(
        "dp-predict",
        on_images("tracking.tracker=bogus"),
        2,
        r"tracking\.tracker=bogus: choose one of bytetrack",
    ),
    "predict-corrupt-image-in-folder": Case(
        "dp-predict",
        lambda t, fx: [
            f"source={_corrupt_images(t)}",
            f"out={t / 'o'}",
            f"ckpt={fx['model']}",
            FAKE,
            "zoom.enabled=false",
            "intrinsics.hfov_deg=60",
        ],
        3,
        r"failed: .*b\.jpg",
    ),
    # ---- dp-train
    "train-data-dir-is-a-file": Case("dp-train", on_set(make=a_file), 2, r"file\.txt.*is a file"),
    "train-data-dir-missing": Case(
        "dp-train", lambda t, fx: [f"data.dir={t}/nothere"], 2, r"data\.dir=.*/nothere: no such folder"
    ),
    "train-data-dir-without-manifest": Case("dp-train", on_set(make=empty_dir), 2, r"/empty\b.*manifest"),
    "train-ckpt-path-not-a-checkpoint": Case(
        "dp-train",
        on_set("ckpt_path={t}/file.txt", make=lambda t: (a_file(t), small_set(t))[1]),
        2,
        r"file\.txt.*not a readable Lightning checkpoint",
    ),
    "train-ckpt-path-pickled-objects": Case(
        "dp-train",
        on_set("ckpt_path={t}/evil.pt", make=lambda t: (evil_weights(t), small_set(t))[1]),
        2,
        r"evil\.pt is not a readable Lightning checkpoint .*pickled Python objects.*never loaded",
        check=_no_code_ran,
    ),
    "train-ckpt-path-missing": Case("dp-train", on_set("ckpt_path={t}/gone.ckpt"), 2, r"gone\.ckpt"),
    "train-ckpt-path-last-nothing-to-resume": Case(
        "dp-train", on_set("ckpt_path=last", "paths.output_dir={t}/o"), 2, r"ckpt_path=last"
    ),
    "train-max-epochs-0": Case(
        "dp-train", on_set("trainer.max_epochs=0"), 2, r"trainer\.max_epochs=0 must be an integer >= 1"
    ),
    "train-vis-threshold-5": Case(
        "dp-train", on_set("vis_threshold=5"), 2, r"vis_threshold=5 must be a number in \[0, 1\]"
    ),
    "train-logger-none-works": Case(
        "dp-train",
        on_set(
            "logger=none",
            "model=mlp_small",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "paths.output_dir={t}/o",
            make=lambda t: write_toy_set(t / "set", 2000, seed=2),
        ),
        0,
        None,
        check=_trained,
    ),
    # ---- dp-generate
    "generate-num-samples-1e13": Case(
        "dp-generate", lambda t, fx: [f"out_dir={t / 'o'}", "num_samples=10000000000000"], 2, r"TiB of disk"
    ),
    "generate-unwritable-out-dir": Case(
        "dp-generate",
        lambda t, fx: [f"out_dir={_locked(t) / 'set'}", "num_samples=100"],
        2,
        r"locked/set is not writable",
    ),
    "generate-vis-threshold-5": Case(
        "dp-generate", lambda t, fx: [f"out_dir={t / 'o'}", "vis_threshold=5"], 2, r"vis_threshold=5 must be"
    ),
    # ---- mistyped keys, one per command
    "generate-typo-key": Case(
        "dp-generate",
        lambda t, fx: ["num_sample=10"],
        2,
        r"num_sample=10: no such key.*did you mean num_samples",
    ),
    "train-typo-key": Case(
        "dp-train",
        lambda t, fx: ["trainer.max_epoch=1"],
        2,
        r"max_epoch=1: no such key.*did you mean trainer\.max_epochs",
    ),
    "eval-typo-key": Case(
        "dp-eval",
        lambda t, fx: ["keypoint=a.jsonl"],
        2,
        r"keypoint=a\.jsonl: no such key.*did you mean keypoints",
    ),
    "predict-typo-key": Case(
        "dp-predict",
        lambda t, fx: ["source=x.jpg", "tracking.trackr=botsort"],
        2,
        r"trackr=botsort: no such key.*did you mean tracking\.tracker",
    ),
}


# ---------------------------------------------------------------------------------------------- runner
def extra_args(prog: str, t: Path) -> list[str]:
    out = ["progress=false", f"hydra.run.dir={t / 'hydra'}"]
    if prog == "dp-eval":
        out.append("plots=false")
    if prog in ("dp-train", "dp-generate"):
        out += [f"paths.log_dir={t / 'logs'}"]
    return out


def invoke(prog: str, args: list[str], t: Path, capsys, monkeypatch) -> tuple[int, str]:
    """``prog args`` through its console entry point in this process; (exit code, stderr)."""
    module = importlib.import_module(f"depth_pose.cli.{MODULES[prog]}")
    if prog == "dp-train" and not any(a.startswith("logger=") for a in args):
        args = [*args, "logger=csv"]  # no wandb run for a refusal
    import warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # dp-predict sets its own
    monkeypatch.setattr(sys, "argv", [prog, *args, *extra_args(prog, t)])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.chdir(t)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        module.main()
    code = e.value.code
    return (0 if code is None else int(code)), capsys.readouterr().err


@pytest.fixture(scope="module")
def fx(tiny_model) -> dict:
    return {"model": tiny_model}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if c.slow else []) for n, c in CASES.items()]
)
def test_bad_input(name: str, fx: dict, tmp_path: Path, capsys, monkeypatch) -> None:
    case = CASES[name]
    t = tmp_path / "case"
    t.mkdir()
    args = case.build(t, fx)
    inputs = [*sorted(t.iterdir()), fx["model"], fx["model"].with_suffix(".json")]
    before = snapshot(inputs)
    code, err = invoke(case.prog, args, t, capsys, monkeypatch)
    assert code == case.code, err[-3000:]
    assert "Traceback" not in err and "weights_only" not in err, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith(f"{case.prog}: error:")]
    if case.code == 2:
        assert len(errors) == 1, err[-3000:]
        assert re.search(case.pattern, errors[0]), errors[0]
    else:
        assert not errors, err[-3000:]
        found = case.pattern is None or any(re.search(case.pattern, ln) for ln in err.splitlines())
        assert found, err[-3000:]
    if case.check is not None:
        case.check(t, err)
    assert snapshot(inputs) == before  # no input changed, appeared or vanished


def test_full_disk_while_plotting_is_one_line(fx: dict, tmp_path: Path, capsys, monkeypatch) -> None:
    """A full disk while writing the plots (the figure writer fails with ENOSPC, as on a full file system):
    one line naming the plot, exit 2, no half-written PNG left, the input unchanged."""
    import errno

    from matplotlib.figure import Figure

    def full_disk(self, fname, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    t = tmp_path / "case"
    t.mkdir()
    src = raw(t, (GOOD + "\n").encode())
    before = snapshot([src])
    monkeypatch.setattr(Figure, "savefig", full_disk)
    args = [f"keypoints={src}", f"out={t / 'o' / 'pred.jsonl'}", f"ckpt={fx['model']}"]
    monkeypatch.setattr("sys.argv", ["dp-eval", *args, "progress=false", f"hydra.run.dir={t / 'hydra'}"])
    monkeypatch.chdir(t)
    module = importlib.import_module("depth_pose.cli.eval")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        module.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("dp-eval: error:")]
    assert len(errors) == 1 and re.search(r"cannot write '.*\.png': No space left on device", errors[0])
    assert not list((t / "o").glob(".*.png")) and snapshot([src]) == before
