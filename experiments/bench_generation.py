"""Benchmark of the analytic generation path (dp-generate's default config), with a baseline in the same run.

Measures, on distinct (body, pose, camera) samples with ``samples_per_pose`` cameras per pose:
  * in-memory samples/s of the whole chain (pose sampling, body posing, cameras, projection, noise) and of
    each stage;
  * the disk rate (rows/s) of building the columns and writing one zstd Parquet shard;
  * the baseline: Anny's own full forward (mesh + COCO regressor) at batch 1024, samples/s.

  * the same chain in ``--workers`` forked processes (one per core, each torch 1 thread), in memory;
  * ``generate()`` end to end to disk (Parquet shards + manifest) with ``workers=1`` and ``--workers``.

    .venv/bin/python experiments/bench_generation.py [--rows 400000] [--spp 8] [--repeats 3] \\
        [--anny-batches 2]

The fused kernels (``compile=true``, what ``compile=auto`` picks for sets of >= 1 M rows) are on unless an
override says ``compile=false``; the eager chain is always measured too, in the same process (the ratio
``compiled_vs_eager``); the one-off compile time is printed as ``warm-up``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import depth_pose  # noqa: F401
from depth_pose import shards
from depth_pose.env import config_dir
from generation import config, generator, kernels, pipeline, workers
from generation.project import observe
from generation.threads import torch_threads

CONF = str(config_dir())


def best(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--spp", type=int, default=8, help="samples_per_pose (cameras per pose)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--anny-batches", type=int, default=2)
    ap.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes (default: cores)"
    )
    ap.add_argument(
        "--disk-rows", type=int, default=None, help="rows for the generate() runs (default: --rows)"
    )
    ap.add_argument("overrides", nargs="*", help="extra dp-generate overrides, e.g. pose_sampling=uniform")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            config_name="generate",
            overrides=[
                f"samples_per_pose={args.spp}",
                "paths.root_dir=/tmp",
                "compile=true",
                *args.overrides,
            ],
        )
    cfg = config.with_defaults(cfg)
    if bool(cfg.get("keep_heap", True)):  # as dp-generate's processes do
        workers.keep_freed_memory()
    t0 = time.perf_counter()
    gen = generator.Generator(cfg)
    t_build = time.perf_counter() - t0
    n, spp = args.rows, args.spp
    n_poses = -(-n // spp)
    g = torch.Generator().manual_seed(0)

    # Whole chain, as generate() runs it per shard; eager first (the baseline of the compiled kernels).
    compiled = gen.compiled
    kernels.configure(False)
    t_eager, _ = best(lambda: gen.sample(n, g, int(cfg.batch_size)), args.repeats)
    kernels.configure(compiled)
    t0 = time.perf_counter()
    gen.warm_up()
    t_compile = time.perf_counter() - t0
    t_all, res = best(lambda: gen.sample(n, g, int(cfg.batch_size)), args.repeats)
    poses, posed, cams, obs, rep = res
    # Stages, separately (same sizes, same torch threads as inside Generator.sample).
    with torch_threads(gen.threads):
        t_pose, _ = best(lambda: gen.pose_sampler.sample(n_poses, g), args.repeats)
        bi = torch.randint(len(gen.body.shapes), (n_poses,), generator=g)
        t_body, _ = best(lambda: gen.body.pose(bi, poses), args.repeats)
        t_cam, _ = best(lambda: gen.camera.sample(posed, g), args.repeats)
        t_obs, _ = best(lambda: observe(posed, cams, gen.self_occlusion), args.repeats)
        t_noise, _ = best(lambda: gen.noise(obs, g, cams), args.repeats)

    # The chain in W forked processes (each its own share of the rows and its own generator), in memory.
    W = max(1, args.workers)
    global _GEN
    _GEN = gen
    with mp.get_context("fork").Pool(
        W, initializer=workers.worker_init, initargs=(1, bool(cfg.keep_heap))
    ) as pool:
        parts = [(-(-n // W), k) for k in range(W)]
        pool.map(_chain_part, parts)  # warm-up
        t_par, _ = best(lambda: pool.map(_chain_part, parts), args.repeats)

    # generate() end to end (shards + manifest on disk), 1 process vs W worker processes.
    n_disk = args.disk_rows or n
    t_gen = {}
    for w in sorted({1, W}):
        with tempfile.TemporaryDirectory() as tmp:
            c = cfg.copy()
            c.num_samples, c.shard_size, c.out_dir, c.progress, c.workers = (
                n_disk,
                -(-n_disk // (2 * W)),
                tmp,
                False,
                w,
            )
            t = time.perf_counter()
            pipeline.generate(c)
            t_gen[w] = time.perf_counter() - t

    # Disk: columns -> Arrow table -> zstd Parquet (one shard of all rows).
    with tempfile.TemporaryDirectory() as tmp:
        t_cols, cols = best(lambda: generator.columns(poses, posed, cams, obs, rep, gen.body.shapes), 1)
        t_table, table = best(lambda: shards.to_table(cols), 1)
        t_write, entry = best(lambda: shards.write_shard(tmp, 0, table), 1)
        size_mb = (Path(tmp) / entry["file"]).stat().st_size / 1e6

    # Baseline: Anny's full forward (mesh + regressor), batch 1024.
    B = 1024
    sub = generator.slice_poses(poses, 0, B)
    bsub = bi[:B]
    gen.body.mesh(bsub[:8], generator.slice_poses(poses, 0, 8))  # warm-up
    model, reg = gen.body.model, gen.body.regressor

    def anny_full():
        for _ in range(args.anny_batches):
            H = torch.eye(4).expand(B, model.bone_count, 4, 4).clone()
            index = {b: i for i, b in enumerate(model.bone_labels)}
            H[:, [index[b] for b in sub.bone_names], :3, :3] = sub.rotations.float()
            out = model(pose_parameters=H, phenotype_kwargs=gen.body.shapes.phenotypes[bsub])
            reg(out)

    t_anny, _ = best(anny_full, 1)
    anny_rate = B * args.anny_batches / t_anny

    rate = n / t_all
    rows = [
        ("whole chain (in memory), 1 process, eager", n, t_eager),
        (f"whole chain (in memory), 1 process{', compiled' if compiled else ''}", n, t_all),
        (f"whole chain (in memory), {W} processes", n, t_par),
        ("  pose sampling", n_poses, t_pose),
        ("  body posing (fast path)", n_poses, t_body),
        ("  cameras", n, t_cam),
        ("  projection + visibility", n, t_obs),
        ("  detector noise", n, t_noise),
        ("columns (torch -> numpy)", n, t_cols),
        ("Arrow table", n, t_table),
        ("Parquet write (zstd)", n, t_write),
        ("disk: columns + table + write", n, t_cols + t_table + t_write),
        *[(f"generate() to disk, workers={w}", n_disk, t) for w, t in t_gen.items()],
        (f"Anny full forward B={B} (baseline)", B * args.anny_batches, t_anny),
    ]
    print(
        f"config: pose_sampling={cfg.pose_sampling.get('name')} samples_per_pose={spp} rows={n} "
        f"poses={n_poses} torch threads={torch.get_num_threads()} (inside sample: {gen.threads}) "
        f"workers={W} compile={compiled} (warm-up {t_compile:.1f} s) (stage build {t_build:.1f} s) "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'stage':40s} {'items':>9s} {'seconds':>9s} {'items/s':>12s} {'x Anny':>8s}")
    for name, items, t in rows:
        print(f"{name:40s} {items:9d} {t:9.3f} {items / t:12,.0f} {items / t / anny_rate:8.1f}")
    print(f"shard size: {size_mb:.1f} MB for {n} rows ({size_mb * 1e6 / n:.0f} B/row)")
    print(
        f"RESULT in_memory_samples_per_s={rate:,.0f} in_memory_{W}proc_samples_per_s={n / t_par:,.0f} "
        f"generate_workers{W}_rows_per_s={n_disk / t_gen[W]:,.0f} anny_full_per_s={anny_rate:,.0f} "
        f"ratio_vs_anny={rate / anny_rate:.1f} ratio_{W}proc_vs_anny={n / t_par / anny_rate:.1f}"
    )


_GEN = None  # the Generator the forked workers inherit


def _chain_part(part: tuple[int, int]) -> int:
    rows, k = part
    g = torch.Generator().manual_seed(1000 + k)
    return len(_GEN.sample(rows, g, int(_GEN.cfg.batch_size))[3].z_m)


if __name__ == "__main__":
    main()
