"""Shared pieces of the model benchmarks (``bench_tilt.py``, ``bench_scenes.py``, ``panoptic_check.py``): the
eval config, short model names, the model-list command line and the table output."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import depth_pose  # noqa: F401
from depth_pose.env import REPO_ROOT, config_dir


def compose(overrides: list[str]):
    """``conf/eval.yaml`` with ``overrides`` (outside a Hydra app)."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return _compose("eval", overrides=overrides)


def evaluate_quietly(overrides: list[str]) -> dict:
    """``depth_pose.evaluate.evaluate`` of ``overrides`` with its own report sent to stderr (stdout keeps
    only the benchmark's table)."""
    from depth_pose.evaluate import evaluate

    with contextlib.redirect_stdout(sys.stderr):
        return evaluate(compose(overrides))


def label(path: Path) -> str:
    """A short name: the folder of a ``default_model.safetensors`` (``model_48458f8``, ``assets``), else the
    file's stem."""
    path = Path(path)
    return path.parent.name if path.stem == "default_model" else path.stem


def pct(v: float | None, sign: bool = False) -> str:
    return "–" if v is None else (f"{100 * v:+.1f}%" if sign else f"{100 * v:.1f}%")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def add_model_args(ap: argparse.ArgumentParser, default_models: list[Path], models_help: str) -> None:
    """``--models``, ``--labels`` and ``--out`` of every model benchmark."""
    ap.add_argument("--models", nargs="+", type=Path, default=default_models, help=models_help)
    ap.add_argument(
        "--labels", nargs="+", default=None, help="one short name per model (default: from paths)"
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this file")


def model_names(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The models' short names; an unknown file or a bad ``--labels`` ends the script with a usage error."""
    names = args.labels or [label(p) for p in args.models]
    if len(names) != len(args.models) or len(set(names)) != len(names):
        ap.error("--labels: one distinct name per model")
    for p in args.models:
        if not Path(p).is_file():
            ap.error(f"model file not found: {p}")
    return names


def emit(text: str, out: Path | None) -> str:
    """Print the table and, with ``out``, write it there too."""
    print(text, flush=True)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text


def suite_bench_main(
    argv: list[str] | None,
    doc: str | None,
    prog: str,
    default_models: list[Path],
    models_help: str,
    run_model: Callable[[Path, Path, list[str]], dict],
    table: Callable[[dict[str, dict]], str],
) -> str:
    """The command line of a suite benchmark: ``[OVERRIDE ...] [--models ...] [--labels ...] [--out FILE]
    [--work DIR]``; ``run_model(path, work_dir, overrides)`` per model, then ``table(results)`` printed."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(ap, default_models, models_help)
    ap.add_argument("--work", type=Path, default=REPO_ROOT / "outputs" / prog, help="suite outputs")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of conf/eval.yaml (before --models)")
    args = ap.parse_intermixed_args(argv)
    names = model_names(ap, args)
    results = {}
    for name, path in zip(names, args.models, strict=True):
        print(f"[{prog}] {name}: {path}", file=sys.stderr, flush=True)
        results[name] = run_model(Path(path).resolve(), args.work / name, args.overrides)
    return emit(table(results), args.out)
