"""``dp-generate`` as a plain function: body bank -> poses -> cameras -> projection -> detector
noise -> shards.

* :func:`generate` writes ``out_dir`` (Parquet shards + ``manifest.json``, see :mod:`depth_pose.shards`), or
  resumes a killed run (:mod:`generation.dataset`); the render path goes to :mod:`generation.render.pipeline`.
* :func:`ensure_dataset` generates a set if it is absent or incomplete and reuses it otherwise.
* Speed knobs that do not change the data (not in the dataset id): ``compile`` (fused kernels, see
  :mod:`generation.kernels`; equal to eager up to float round-off), ``workers`` (shards written by that many
  forked processes, :mod:`generation.workers`), ``threads`` (torch intra-op threads while sampling) and
  ``keep_heap`` (:func:`generation.workers.keep_freed_memory`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from depth_pose import shards
from depth_pose.fileio import refuse_non_directory
from generation.config import build_stages, validate, with_defaults
from generation.dataset import (
    check_resources,
    check_writable,
    dataset_id,
    n_shards_of,
    plan,
    prepare_out_dir,
    shard_span,
)
from generation.generator import Generator, body_stage
from generation.workers import keep_freed_memory, n_workers, run_shards

log = logging.getLogger(__name__)


def intact(out_dir: Path, entry: dict) -> bool:
    """A shard a resumed run keeps: there and matching its manifest's sha256 (a corrupt or truncated one is
    made again, with a warning)."""
    path = out_dir / entry["file"]
    if not path.exists():
        return False
    if shards.sha256_file(path) == entry["sha256"]:
        return True
    log.warning("shard %s does not match its sha256 in %s: made again", path, shards.MANIFEST)
    return False


def generate(cfg: DictConfig | dict) -> Path:
    """Generate (or resume) the synthetic set described by ``cfg`` (keys as conf/generate.yaml);
    returns out_dir."""
    cfg = with_defaults(cfg)
    validate(cfg)
    out_dir = Path(str(cfg.out_dir))
    refuse_non_directory(out_dir, "out_dir")  # an existing file, FIFO or device: exit 2 before any work
    analytic = str(cfg.render.get("name", "none")) == "none"
    lo, hi = shard_span(cfg, n_shards_of(cfg))
    # Disk and memory sized before anything is drawn, listed or written (exit 2 for what cannot fit).
    check_resources(cfg, out_dir, n_workers(cfg, hi - lo) if analytic else 1, analytic=analytic)
    check_writable(out_dir)
    if not analytic:
        from generation.render.pipeline import render_dataset

        render_dataset(cfg, out_dir)
        return out_dir
    torch.manual_seed(int(cfg.seed))  # anything outside our generators (should be nothing) is seeded too
    if bool(cfg.get("keep_heap", True)):
        keep_freed_memory()
    did = dataset_id(cfg)
    layout = plan(int(cfg.num_samples), int(cfg.shard_size), int(cfg.samples_per_pose))
    lo, hi = shard_span(cfg, len(layout))  # shard_range=[a, b]: one part of a set spread over machines
    stages = build_stages(cfg)  # validates the groups before touching the disk ...
    body_stage(cfg)  # ... the body's too (built once per process, the generator reuses it)
    manifest = prepare_out_dir(cfg, out_dir, did, len(layout))
    done = {s["index"] for s in manifest["shards"] if intact(out_dir, s)}
    manifest["shards"] = [s for s in manifest["shards"] if s["index"] in done]
    todo = [i for i in range(lo, hi) if i not in done]
    if todo:
        gen = Generator(cfg, stages)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=sum(layout[i][0] for i in range(lo, hi)),
            unit="rows",
            desc=f"dp-generate {did}",
            disable=not bool(cfg.progress),
            initial=sum(s["rows"] for s in manifest["shards"] if lo <= s["index"] < hi),
        )
        tasks = [(i, *layout[i], int(cfg.seed), int(cfg.batch_size), str(out_dir)) for i in todo]
        for entry in run_shards(gen, tasks, n_workers(cfg, len(todo))):
            manifest["shards"] = sorted([*manifest["shards"], entry], key=lambda s: s["index"])
            shards.write_manifest(out_dir, manifest)
            bar.update(entry["rows"])
        bar.close()
    if not manifest.get("complete") and {s["index"] for s in manifest["shards"]} == set(range(len(layout))):
        manifest["complete"] = True  # a shard_range part stays incomplete (generation.merge joins the parts)
        shards.write_manifest(out_dir, manifest)
    if bool(cfg.contact_sheet) and not (out_dir / "contact_sheet.png").exists():
        from generation.contact_sheet import write_contact_sheet

        write_contact_sheet(cfg, out_dir / "contact_sheet.png", stages)
    log.info("dataset %s: shards %d..%d of %d at %s", did, lo, hi - 1, len(layout), out_dir)
    return out_dir


def ensure_dataset(cfg: DictConfig | dict) -> Path:
    """``out_dir`` of ``cfg``: reused when complete with the same dataset id, else generated/resumed."""
    cfg = with_defaults(cfg)
    out_dir = Path(str(cfg.out_dir))
    if (out_dir / shards.MANIFEST).exists():
        m = shards.load_manifest(out_dir)
        if m.get("complete") and m.get("dataset_id") == dataset_id(cfg):
            return out_dir
    return generate(cfg)
