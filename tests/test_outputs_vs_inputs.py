"""Outputs never touch inputs (issue 18): every command refuses, before any work, an output that is, lies
inside or contains an input, that is a FIFO/device, or that is another output of the same run; exit 2 with one
``dp-<cmd>: error:`` line naming both paths, and no input changes (sha256 of every file before and after).

The CLI cases run as subprocesses, a few at a time (each start-up is mostly imports), from one module fixture;
device-like targets are FIFOs made in the test's folder, never real /dev nodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO

from depth_pose.fileio import OutputPathError, atomic_write_text, check_outputs

MODULES = {"dp-eval": "eval", "dp-predict": "predict", "dp-generate": "generate", "dp-train": "train"}


def snapshot(roots: list[Path]) -> dict[str, str]:
    """sha256 of every regular file under ``roots`` (files or folders), the kind of anything else."""
    out: dict[str, str] = {}
    for root in roots:
        paths = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
        for p in paths:
            mode = os.lstat(p).st_mode
            if stat.S_ISREG(mode):
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif not stat.S_ISDIR(mode):
                out[str(p)] = "fifo" if stat.S_ISFIFO(mode) else "link" if stat.S_ISLNK(mode) else "other"
    return out


@dataclass
class Case:
    prog: str
    setup: Callable[[Path, dict], tuple[list[str], list[Path], str]]  # -> (args, protected roots, named path)
    cli: bool = False  # run as a subprocess (else the plain function in-process: same check, no start-up)
    slow: bool = False


def keypoints_file(d: Path) -> Path:
    kp = [[600.0 + i, 150.0 + 10 * i, 0.9] for i in range(17)]
    p = d / "people.jsonl"
    p.write_text(json.dumps({"id": "a", "keypoints_xyc": kp, "K": [[700, 0, 600], [0, 700, 170], [0, 0, 1]]}))
    return p


def image_dir(d: Path) -> Path:
    import cv2

    d.mkdir(parents=True, exist_ok=True)
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(d / name), np.full((32, 48, 3), 127, np.uint8))
    (d / "gt.json").write_text(json.dumps({"a.jpg": {"gt_z_m": 5.0}}))
    return d


def model_copy(d: Path, fx: dict) -> Path:
    src = Path(fx["model"])
    for suffix in (".safetensors", ".json"):
        shutil.copy(src.with_suffix(suffix), d / f"model{suffix}")
    return d / "model.safetensors"


def dataset_copy(d: Path, fx: dict) -> Path:
    return Path(shutil.copytree(fx["toy_set"], d / "set"))


def fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _eval_kp_is_out(t, fx):
    kp = keypoints_file(t)
    return [f"keypoints={kp}", f"out={kp}"], [kp], str(kp)


def _eval_dataset_manifest(t, fx):
    ds = dataset_copy(t, fx)
    return [f"dataset={ds}", f"out={ds / 'manifest.json'}"], [ds], str(ds)


def _eval_images_inside(t, fx):
    imgs = image_dir(t / "imgs")
    return [f"images={imgs}", f"out={imgs / 'pred.jsonl'}"], [imgs], str(imgs)


def _eval_out_is_metrics(t, fx):
    kp = keypoints_file(t)
    (t / "res").mkdir()
    (t / "res" / "metrics.json").write_text('{"earlier": "predictions"}\n')
    return [f"keypoints={kp}", f"out={t / 'res' / 'metrics.json'}"], [kp, t / "res"], "metrics.json"


def _eval_out_symlink_to_input(t, fx):
    kp = keypoints_file(t)
    (t / "link.jsonl").symlink_to(kp)
    return [f"keypoints={kp}", f"out={t / 'link.jsonl'}"], [kp], str(kp)


def _eval_out_fifo(t, fx):
    kp = keypoints_file(t)
    return [f"keypoints={kp}", f"out={fifo(t / 'pipe.jsonl')}"], [kp, t / "pipe.jsonl"], "pipe.jsonl"


def _eval_out_link_to_fifo(t, fx):
    kp = keypoints_file(t)
    (t / "out.jsonl").symlink_to(fifo(t / "pipe"))
    return [f"keypoints={kp}", f"out={t / 'out.jsonl'}"], [kp, t / "pipe", t / "out.jsonl"], "out.jsonl"


def _eval_suite_out_is_model(t, fx):
    model = model_copy(t, fx)
    json_file = model.with_suffix(".json")
    return ["suite=invariance", f"ckpt={model}", f"out={json_file}"], [model, json_file], str(json_file)


def _predict_dir_is_out(t, fx):
    imgs = image_dir(t / "imgs")
    return [f"source={imgs}", f"out={imgs}"], [imgs], str(imgs)


def _predict_out_holds_file(t, fx):
    imgs = image_dir(t / "imgs")
    return [f"source={imgs / 'a.jpg'}", f"out={imgs}"], [imgs], str(imgs / "a.jpg")


def _predict_out_holds_glob(t, fx):
    imgs = image_dir(t / "imgs")
    return [f"source={imgs}/*.jpg", f"out={imgs}"], [imgs], str(imgs)


def _predict_out_inside_dir(t, fx):
    imgs = image_dir(t / "imgs")
    return [f"source={imgs}", f"out={imgs / 'annotated'}"], [imgs], str(imgs)


def _predict_out_is_file(t, fx):
    imgs = image_dir(t / "imgs")
    (t / "out").write_text("not a folder\n")
    return [f"source={imgs}", f"out={t / 'out'}"], [imgs, t / "out"], str(t / "out")


def _predict_summary_fifo(t, fx):
    imgs = image_dir(t / "imgs")
    (t / "out").mkdir()
    fifo(t / "out" / "summary.json")
    return [f"source={imgs}", f"out={t / 'out'}"], [imgs, t / "out"], str(t / "out" / "summary.json")


def _generate_out_is_file(t, fx):
    (t / "set").write_text("a file\n")
    return [f"out_dir={t / 'set'}", "body.n_bodies=8"], [t / "set"], str(t / "set")


def _generate_out_is_fifo(t, fx):
    return [f"out_dir={fifo(t / 'set')}", "body.n_bodies=8"], [t / "set"], str(t / "set")


def _train_output_is_data(t, fx):
    ds = dataset_copy(t, fx)
    return [f"data.dir={ds}", f"paths.output_dir={ds}", "logger=csv"], [ds], str(ds)


def _train_ckpt_inside_data(t, fx):
    ds = dataset_copy(t, fx)
    args = [f"data.dir={ds}", f"callbacks.model_checkpoint.dirpath={ds / 'ckpt'}", "logger=csv"]
    return args, [ds], str(ds)


CASES = {
    # one subprocess per kind of the hostile test: exit code, one error line, inputs unchanged
    "eval-keypoints-is-out": Case("dp-eval", _eval_kp_is_out, cli=True),
    "eval-dataset-manifest": Case("dp-eval", _eval_dataset_manifest, cli=True),
    "eval-out-is-metrics-json": Case("dp-eval", _eval_out_is_metrics, cli=True),
    "eval-out-fifo": Case("dp-eval", _eval_out_fifo, cli=True),
    "predict-out-is-source-dir": Case("dp-predict", _predict_dir_is_out, cli=True),
    "generate-out-dir-is-fifo": Case("dp-generate", _generate_out_is_fifo, cli=True),
    "train-output-dir-is-data-dir": Case("dp-train", _train_output_is_data, cli=True, slow=True),
    "train-ckpt-dir-inside-data-dir": Case("dp-train", _train_ckpt_inside_data, cli=True, slow=True),
    # the variants, through the plain functions the commands call
    "eval-images-out-inside": Case("dp-eval", _eval_images_inside),
    "eval-out-symlink-to-input": Case("dp-eval", _eval_out_symlink_to_input),
    "eval-out-symlink-to-fifo": Case("dp-eval", _eval_out_link_to_fifo),
    "eval-suite-out-is-model-json": Case("dp-eval", _eval_suite_out_is_model),
    "predict-out-holds-source-file": Case("dp-predict", _predict_out_holds_file),
    "predict-out-holds-glob-files": Case("dp-predict", _predict_out_holds_glob),
    "predict-out-inside-source-dir": Case("dp-predict", _predict_out_inside_dir),
    "predict-out-is-a-file": Case("dp-predict", _predict_out_is_file),
    "predict-summary-is-fifo": Case("dp-predict", _predict_summary_fifo),
    "generate-out-dir-is-a-file": Case("dp-generate", _generate_out_is_file),
}
FAST_CLI = [n for n, c in CASES.items() if c.cli and not c.slow]


def extra_args(prog: str) -> list[str]:
    return ["progress=false"] + (["plots=false"] if prog == "dp-eval" else [])


def run_case(name: str, tmp: Path, fx: dict) -> tuple[subprocess.CompletedProcess, dict, dict, str]:
    case = CASES[name]
    t = tmp / name
    t.mkdir()
    args, roots, named = case.setup(t, fx)
    before = snapshot(roots)
    proc = subprocess.run(
        [sys.executable, "-m", f"depth_pose.cli.{MODULES[case.prog]}", *args, *extra_args(case.prog)]
        + [f"hydra.run.dir={t / 'h'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, HYDRA_FULL_ERROR="0"),
    )
    return proc, before, snapshot(roots), named


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory, toy_set_dir) -> dict:
    """The fast CLI cases, two processes at a time (each start-up is mostly imports)."""
    tmp, fx = tmp_path_factory.mktemp("outputs_vs_inputs"), {"toy_set": toy_set_dir}
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(FAST_CLI, pool.map(lambda n: run_case(n, tmp, fx), FAST_CLI)))


def check_refused(name: str, proc, before: dict, after: dict, named: str) -> None:
    prog = CASES[name].prog
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"{prog}: error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert named in errors[0], errors[0]
    assert after == before  # no input (nor protected file) changed, appeared or vanished


@pytest.mark.slow  # CLI start-ups; the same guard runs in-process below (not slow)
@pytest.mark.parametrize("name", FAST_CLI)
def test_cli_refuses_output_touching_input(name, cli_results):
    check_refused(name, *cli_results[name])


@pytest.mark.slow  # dp-train start-up (Lightning imports)
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.slow])
def test_train_never_writes_into_the_dataset(name, tmp_path, toy_set_dir):
    check_refused(name, *run_case(name, tmp_path, {"toy_set": toy_set_dir}))


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c.cli])
def test_function_refuses_output_touching_input(name, tmp_path, tiny_model):
    from helpers import compose

    from depth_pose.evaluate import evaluate
    from depth_pose.predict.run import predict
    from generation.pipeline import generate

    case = CASES[name]
    args, roots, named = case.setup(tmp_path, {"model": tiny_model})
    before = snapshot(roots)
    cfg = compose(MODULES[case.prog], [*args, *extra_args(case.prog), f"paths.root_dir={tmp_path}"])
    func = {"dp-eval": evaluate, "dp-predict": predict, "dp-generate": generate}[case.prog]
    with pytest.raises(OutputPathError) as err:
        func(cfg)
    assert named in str(err.value) and "\n" not in str(err.value)
    assert snapshot(roots) == before


def test_atomic_write_refuses_non_regular_targets(tmp_path):
    """A rename onto a FIFO (or a symlink to one, or a folder) would replace it with a regular file."""
    pipe = fifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(pipe)
    (tmp_path / "dir").mkdir()
    for target in (pipe, tmp_path / "link", tmp_path / "dir"):
        with pytest.raises(OutputPathError, match=str(target)):
            atomic_write_text(target, "x")
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode) and (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "link", "pipe"]  # no temporary left
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    atomic_write_text(tmp_path / "dangling", "x")  # nothing to destroy: the link itself is replaced
    assert (tmp_path / "dangling").read_text() == "x"


def test_check_outputs_sees_through_paths(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (tmp_path / "alias").symlink_to(data)
    os.link(data / "a.txt", tmp_path / "hard.txt")
    refused = [  # (output, input)
        (tmp_path / "data" / "sub" / ".." / "a.txt", data / "a.txt"),  # ".." (sub is a real folder)
        (tmp_path / "alias" / "new" / "x.json", data),  # inside, through a symlinked folder, not created yet
        (tmp_path / "hard.txt", data / "a.txt"),  # a hard link: the same file
        (tmp_path, data),  # a folder holding the input
    ]
    for out, inp in refused:
        with pytest.raises(OutputPathError, match="input data="):
            check_outputs({"out": out}, {"data": inp})
    check_outputs({"out": tmp_path / "elsewhere" / "x.json"}, {"data": data})  # a sibling is fine
    check_outputs({"out": tmp_path / "data2"}, {"data": data})  # a name sharing the prefix is fine
    with pytest.raises(OutputPathError, match="same file"):
        check_outputs([("out", tmp_path / "m.json"), ("metrics.json", tmp_path / "." / "m.json")])


def test_merge_refuses_output_inside_a_part(tmp_path, toy_set_dir):
    from generation.merge import merge

    part = dataset_copy(tmp_path, {"toy_set": toy_set_dir})
    before = snapshot([part])
    with pytest.raises(OutputPathError, match="inside the input part="):
        merge(part / "merged", [part])
    assert snapshot([part]) == before
