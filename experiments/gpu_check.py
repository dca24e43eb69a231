"""The GPU numbers in one call (issue 21): run on a lent GPU machine, results to ``$OUT`` after every stage.

Stages (each writes ``$OUT/gpu_check.json`` and ``$OUT/gpu_check.md`` when it ends, so a timeout still leaves
the finished ones):

1. ``generation``: analytic generation on the device (:class:`generation.generator.Generator`, dp-generate's
   default config, ``device=cuda``, body from the saved bank when there is one): samples/s for ``--gen-rows``
   rows in memory; then per-column means / quantiles / finite shares of a sample drawn there against the
   same config's CPU path (other random streams: distributions are compared, not values).
2. ``throughput``: device-resident datamodule (:class:`depth_pose.data.DeviceDataModule`) vs
   ``DataLoader(TensorDataset, shuffle=True)``, mlp_base, batch 4096 and the best of a few larger batches,
   fp32 and bf16-mixed, samples/s (steady state: the first batches are not timed).
3. ``converge``: the recipe of ``experiments/gpu_check_reference.json`` (10 M rows generated on the device,
   mlp_base, batch 4096, a few epochs, val ALE four times per epoch): training time and wall time until val
   ALE is within 5% of the best val ALE of the CPU reference run of the same recipe.
4. ``kitti``: the model of stage 3 exported (:func:`depth_pose.predictor.export_model`) and scored exactly as
   ``dp-eval keypoints=...`` does (:func:`depth_pose.evaluate.evaluate`) on the KITTI dev keypoints;
   |ALE - CPU reference's ALE| <= 0.05 m.

Run where it is meant to run (a GPU machine without hydra/omegaconf/anny; they travel as wheels in ``.gpu/``,
made here by ``--prepare``)::

    .venv/bin/python experiments/gpu_check.py --prepare        # here: wheels, bank, KITTI copy -> .gpu/
    bash experiments/gpu_check.sh                              # there (the device's run, carry [".gpu"])
    .venv/bin/python experiments/gpu_check.py --dry-run        # here: every stage, tiny sizes, CPU (a test)
    .venv/bin/python experiments/gpu_check.py --reference      # here: stages 3 + 4 on the CPU, full recipe,
                                                               # -> experiments/gpu_check_reference.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if os.environ.get("GPU_CHECK_NO_ANNY"):  # prove the path runs without Anny (as on the GPU machine)
    sys.modules["anny"] = None  # type: ignore[assignment]

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "experiments")]

import depth_pose  # noqa: E402, F401  (env before anything else of the project)
from depth_pose.env import real_data_dir  # noqa: E402

GPU_DIR = ROOT / ".gpu"  # ignored; travels with carry=[".gpu"]
WHEEL_DIR = GPU_DIR / "wheels"
BANK_FILE = GPU_DIR / "bank.safetensors"
KITTI_COPY = GPU_DIR / "kitti_pedestrians_dev.jsonl"
KITTI_SHARED = real_data_dir() / "kitti_pedestrians_dev.jsonl"
REFERENCE = ROOT / "experiments" / "gpu_check_reference.json"
CARRY_LIMIT = 64 * 2**20
# What the GPU machine lacks (its image has torch, lightning, numpy, pyarrow, safetensors, pyyaml, packaging):
# pure-Python wheels, the versions of this venv. antlr4 4.9.3 exists on PyPI as an sdist only: ``--prepare``
# builds its (pure-Python) wheel with ``pip wheel``.
WHEELS = ["hydra-core==1.3.8", "omegaconf==2.3.1"]
SDIST_WHEELS = ["antlr4-python3-runtime==4.9.3"]
STAGES = ("generation", "throughput", "converge", "kitti")
OPTIONAL_STAGES = ("gen_profile",)  # run only when named in --stages
STAT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Columns compared in stage 1: every numeric shard column but ids and constants.
SKIP_STAT_COLS = {"sample_id", "pose_id", "body_id", "source", "strategy", "preset", "gt_vis_mask"}
SKIP_STAT_COLS |= {"scale", "det_conf", "oks", "skew"}


# --- output ---------------------------------------------------------------------------------------------
class Report:
    """``gpu_check.json`` + ``gpu_check.md`` under ``out``, rewritten (atomically) after every stage."""

    def __init__(self, out: Path, meta: dict) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.data: dict = {"meta": meta, "stages": {}}
        self.write()

    def stage(self, name: str, result: dict) -> None:
        self.data["stages"][name] = result
        self.data["meta"]["elapsed_s"] = round(time.perf_counter() - T0, 1)
        self.write()

    def write(self) -> None:
        for name, text in (
            ("gpu_check.json", json.dumps(self.data, indent=1, default=_plain) + "\n"),
            ("gpu_check.md", markdown(self.data)),
        ):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)


def _plain(x):
    if isinstance(x, np.generic | torch.Tensor):
        return x.item()
    return str(x)


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def _ratio(r: dict) -> str:
    return f"{r['ratio']:.1f}x" if r.get("ratio") else "–"


def markdown(data: dict) -> str:
    m = data["meta"]
    lines = [
        "# GPU check (experiments/gpu_check.py)",
        "",
        f"device: {m.get('device_name')} | torch {m.get('torch')} | python {m.get('python')} | "
        f"dry run: {m.get('dry_run')} | body: {m.get('body')} | elapsed {m.get('elapsed_s', 0)} s",
        "",
    ]
    st = data["stages"]
    if "generation" in st:
        g = st["generation"]
        lines += [
            "## 1. Analytic generation on the device",
            "",
            "| what | value |",
            "|---|---|",
            f"| rows in memory | {_fmt(g['rows'])} |",
            f"| samples/s (best of {g['repeats']}), poses drawn as the default set draws them here | "
            f"**{_fmt(g['samples_per_s'])}** |",
        ]
        if g.get("pose_sampling_share") is not None:
            lines.append(
                f"| poses on one CPU thread: pose sampling's share ({_fmt(g['rows'] // 8)} poses) | "
                f"{g['pose_sampling_share']:.0%} |"
            )
        for name, v in (g.get("variants") or {}).items():
            st_ok = v.get("stats")
            lines.append(
                f"| poses {name} ({' '.join(v['overrides']) or 'default'}): samples/s | "
                f"**{_fmt(v['samples_per_s'])}**"
                + ("" if st_ok is None else f"; statistics {'within tolerance' if st_ok['ok'] else 'OFF'}")
                + (
                    ""
                    if v.get("bits_differ") is None
                    else f"; bits as `{SAME_DATA_AS[name]}`: "
                    + ("identical" if not v["bits_differ"] else f"{len(v['bits_differ'])} columns differ")
                )
                + " |"
            )
        lines += [
            f"| CPU path samples/s (same process, {_fmt(g['cpu_rows'])} rows) | "
            f"{_fmt(g['cpu_samples_per_s'])} |",
            f"| statistics vs the CPU path ({g['stats']['n_columns']} columns) | "
            f"{'**within tolerance**' if g['stats']['ok'] else 'OFF: ' + ', '.join(g['stats']['failed'])} |",
            f"| worst column (deviation / tolerance) | {g['stats']['worst']} "
            f"({g['stats']['worst_ratio']:.2f}) |",
            "",
        ]
    if "throughput" in st:
        t = st["throughput"]
        lines += [
            "## 2. Device-resident datamodule vs DataLoader(TensorDataset, shuffle=True), mlp_base",
            "",
            "| precision | batch | DataLoader samples/s | device-resident samples/s | ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in t["table"]:
            dl = r.get("dataloader")
            lines.append(
                f"| {r['precision']} | {_fmt(r['batch'])} | {_fmt(dl) if dl else '–'} | "
                f"{_fmt(r['device_resident'])} | {_ratio(r)} |"
            )
        lines += ["", f"best batch: {t['best_batch']}", ""]
    if "converge" in st:
        c = st["converge"]
        lines += [
            "## 3. Time to converge (recipe: experiments/gpu_check_reference.json)",
            "",
            "| what | value |",
            "|---|---|",
            f"| rows / epochs / batch / lr | {_fmt(c['rows'])} / {c['epochs']} / {c['batch']} / {c['lr']} |",
            f"| generation of the set on the device (s) | {c['generate_s']:.1f} |",
            f"| best val ALE (m) | {c['best_val_ale']:.3f} |",
            f"| reference best val ALE (m) / 1.05 x | {c['reference_best_val_ale']} / {c['target_ale']} |",
            f"| train time to within 5% (s) | **{_fmt(c['train_s_to_target'])}** |",
            f"| wall time to within 5% (s, incl. validation) | {_fmt(c['wall_s_to_target'])} |",
            f"| reference: train time to within 5% (s) | {_fmt(c['reference_train_s_to_target'])} |",
            f"| train / wall time of the whole run (s) | {c['train_s']:.1f} / {c['fit_wall_s']:.1f} |",
            "",
        ]
    if "kitti" in st:
        k = st["kitti"]
        lines += [
            "## 4. KITTI dev keypoints, scored as dp-eval keypoints= does",
            "",
            "| what | value |",
            "|---|---|",
            f"| people | {k['n']} |",
            f"| ALE of the model trained here (m) | **{k['ale']:.3f}** |",
            f"| CPU reference model, same recipe (m) | {k['reference_ale']} |",
            f"| abs difference (m), tolerance {k['tolerance_m']} | {_fmt(k['abs_diff'])} "
            f"{'ok' if k['ok'] else 'OFF' if k['ok'] is False else ''} |",
            f"| within 1 sigma | {k['within_1sigma']} |",
            "",
        ]
    for name in STAGES:
        if name in data.get("errors", {}):
            lines += [f"**{name} failed**: `{data['errors'][name]}`", ""]
    return "\n".join(lines) + "\n"


# --- helpers --------------------------------------------------------------------------------------------
T0 = time.perf_counter()


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def body_choice(args) -> tuple[list[str], str]:
    """Hydra overrides of the body group: the saved bank where it exists (no Anny needed), else Anny."""
    bank_conf = ROOT / "conf" / "body" / "bank.yaml"
    bank = Path(args.bank)
    if args.body == "bank" or (args.body == "auto" and bank_conf.exists() and bank.exists()):
        return ["body=bank", f"body.path={bank}"], f"bank ({bank.name})"
    return [], "anny"


def gen_config(args, device: str, rows: int, extra: list[str] | tuple[str, ...] = ()):
    """dp-generate's composed default config (+ body choice, + ``extra`` overrides), for ``rows`` rows on
    ``device``."""
    from hydra import compose, initialize_config_dir

    from depth_pose.env import config_dir
    from generation import config

    overrides = [*args.body_overrides, f"device={device}", f"num_samples={rows}", "paths.root_dir=/tmp"]
    overrides += list(extra)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="generate", overrides=overrides)
    return config.with_defaults(cfg)


def draw(gen, rows: int, seed: int):
    """``Generator.sample`` of ``rows`` rows as ``Generator.shard`` seeds it (poses where its
    ``pose_device`` says)."""
    g, g_pose = gen.generators(seed)
    with torch.no_grad():
        return gen.sample(rows, g, int(gen.cfg.batch_size), g_pose)


def host_set(gen, rows: int, seed: int, chunk: int):
    """A :class:`depth_pose.data.HostSet` of ``rows`` generated rows (the columns ``load_host_set`` reads),
    drawn ``chunk`` rows at a time (bounded memory); returns it and the generation seconds."""
    from depth_pose.data import HostSet
    from depth_pose.data.device_data import STANDARD_PRESETS

    parts, t, pose_base = [], 0.0, 0
    for k, a in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - a)
        t0 = time.perf_counter()
        poses, _, cams, obs, rep = draw(gen, n, seed + k)
        sync(gen.device)
        t += time.perf_counter() - t0
        K = cams.K.float()
        intr = torch.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 0, 1]], 1)
        unusual = torch.tensor([p is not None and p not in STANDARD_PRESETS for p in poses.preset])
        hands = poses.tags.get("hands_up")
        hands = torch.zeros(len(unusual), dtype=torch.bool) if hands is None else hands.bool().cpu()
        rep_c = rep.cpu()
        parts.append(
            (
                obs.det_xyc.float().cpu().contiguous(),
                torch.nan_to_num(intr).cpu(),
                obs.z_m.float().cpu(),
                (unusual | hands)[rep_c],
                rep_c.long() + pose_base,
            )
        )
        pose_base += len(poses.preset)
        del poses, cams, obs, rep
    cols = [torch.cat(c) if len(parts) > 1 else c[0] for c in zip(*parts)]
    hs = HostSet(*cols)
    if not torch.isfinite(hs.z).all() or (hs.z <= 0).any():
        raise RuntimeError("generated targets are not all finite and positive")
    return hs, t


# --- stage 1 --------------------------------------------------------------------------------------------
def _numeric(cols: dict) -> dict[str, np.ndarray]:
    """The compared columns: every numeric shard column but ids, constants and render-only ones."""
    out = {}
    for name, v in cols.items():
        if name in SKIP_STAT_COLS or not isinstance(v, np.ndarray) or v.dtype.kind not in "fiub":
            continue
        x = v.astype(np.float64)
        xf = x[np.isfinite(x)]
        if xf.size >= 2 and float(xf.std()) > 0.0:
            out[name] = x
    return out


def column_stats(cols: dict[str, np.ndarray]) -> dict[str, dict]:
    """Share finite, mean, sd and quantiles (finite values) of each column."""
    out = {}
    for name, x in cols.items():
        fin = np.isfinite(x)
        xf = x[fin]
        out[name] = {
            "n": int(x.size),
            "finite": float(fin.mean()),
            "mean": float(xf.mean()),
            "sd": float(xf.std()),
            "q": [float(q) for q in np.quantile(xf, STAT_QUANTILES)],
        }
    return out


def _mid_cdf(sorted_x: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(P(X < at) + P(X <= at)) / 2: the empirical CDF, fair to atoms of discrete columns."""
    lo = np.searchsorted(sorted_x, at, side="left")
    hi = np.searchsorted(sorted_x, at, side="right")
    return (lo + hi) / (2.0 * sorted_x.size)


def compare_stats(dev: dict[str, np.ndarray], cpu: dict[str, np.ndarray], spp: int) -> dict:
    """Distributions of the device's columns against the CPU path's, per column, as ratios deviation /
    tolerance (> 1 fails). Rows come in groups of ``spp`` sharing a pose and a body, so the effective sample
    size is rows / spp. Checked: the share of finite values (5 standard errors + 0.2%), the mean of the finite
    values (6 standard errors + 0.5% of the sd) and the CDF of both at the CPU column's 5/25/50/75/95%
    quantiles (5 standard errors + 0.5%): a two-sample test at five points that also holds for discrete
    columns (mid-CDF at atoms)."""
    failed, worst, worst_ratio, per = [], "", 0.0, {}
    for name, c in cpu.items():
        d = dev.get(name)
        if d is None:
            failed.append(f"{name} (missing)")
            continue
        cf, df = c[np.isfinite(c)], d[np.isfinite(d)]
        na, nb = max(1.0, c.size / spp), max(1.0, d.size / spp)
        p, q = cf.size / c.size, df.size / d.size
        r_fin = abs(p - q) / (5 * math.sqrt(max(p * (1 - p), 1e-12) * (1 / na + 1 / nb)) + 0.002)
        fa, fb = max(1.0, na * p), max(1.0, nb * q)
        se = math.sqrt(cf.var() / fa + df.var() / fb)
        r_mean = abs(cf.mean() - df.mean()) / (6 * se + 0.005 * cf.std() + 1e-12)
        cs, ds = np.sort(cf), np.sort(df)
        at = np.quantile(cs, STAT_QUANTILES)
        fc, fd = _mid_cdf(cs, at), _mid_cdf(ds, at)
        tol = 5 * np.sqrt(np.clip(fc * (1 - fc), 0.01, None) * (1 / fa + 1 / fb)) + 0.005
        r_cdf = float(np.max(np.abs(fc - fd) / tol))
        r = max(r_fin, r_mean, r_cdf)
        per[name] = round(r, 3)
        if r > 1:
            failed.append(name)
        if r > worst_ratio:
            worst, worst_ratio = name, r
    return {
        "ok": not failed,
        "failed": failed,
        "n_columns": len(cpu),
        "worst": worst,
        "worst_ratio": worst_ratio,
        "ratio_by_column": per,
    }


# Stage 1's ways of drawing the poses (the rest of every row is drawn on the device): on the CPU, one thread
# (pose_device=cpu: session 23's first GPU run, before pose_device), the same with every CPU core (same
# data), on the device (pose_device=device, the default there: other random numbers, compared with the CPU
# path), and that with 16x the rows per body-model call.
GEN_VARIANTS = {
    "cpu": ["pose_device=cpu"],
    "cpu_all_cores": ["pose_device=cpu", "threads=0", "pose_sampling.threads=0"],
    "device": ["pose_device=device"],
    "device_batch1m": ["pose_device=device", "batch_size=1048576"],  # fewer body-model calls: same data
    "device_compiled": ["pose_device=device", "compile=true"],  # fused kernels (Triton): same data
}
DEFAULT_GEN_VARIANTS = ("cpu", "cpu_all_cores", "device", "device_batch1m")
SAME_DATA_AS = {"device_batch1m": "device"}  # speed-only settings: their bits checked against that variant


def bits_differ(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    """Columns whose values differ in any bit between two draws of the same seed (NaN equals NaN)."""
    return [k for k in a if not np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")]


def _warm_up(gen, args, dev: torch.device) -> None:
    draw(gen, min(65536, args.gen_rows), 123)  # CUDA context, kernels, caches
    sync(dev)


def _time_draws(gen, args, dev: torch.device) -> list[float]:
    _warm_up(gen, args, dev)
    times = []
    for r in range(args.gen_repeats):
        t0 = time.perf_counter()
        res = draw(gen, args.gen_rows, 1000 + r)
        sync(dev)
        times.append(time.perf_counter() - t0)
        del res
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return times


def _stat_columns(gen, rows: int, seed: int) -> dict[str, np.ndarray]:
    from generation.generator import columns

    poses, posed, cams, obs, rep = draw(gen, rows, seed)
    return _numeric(columns(poses, posed, cams, obs, rep, gen.body.shapes))


def stage_gen_profile(args, dev: torch.device) -> dict:
    """Where one draw of ``gen_rows`` rows with the poses on the device spends its time: the Python side
    (cProfile) and the device's kernels (torch.profiler), as text in ``<out>/gen_profile.txt``."""
    import cProfile
    import io
    import pstats

    from generation.generator import Generator

    gen = Generator(gen_config(args, str(dev), args.gen_rows, GEN_VARIANTS["device"]))
    _warm_up(gen, args, dev)
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    draw(gen, args.gen_rows, 5)
    sync(dev)
    pr.disable()
    wall = time.perf_counter() - t0
    text = io.StringIO()
    for key in ("tottime", "cumulative"):
        pstats.Stats(pr, stream=text).sort_stats(key).print_stats(35)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        draw(gen, args.gen_rows, 6)
        sync(dev)
    events = prof.key_averages()
    new_names = hasattr(events[0], "self_device_time_total")
    sort = ("self_device_time_total" if new_names else "self_cuda_time_total") if dev.type == "cuda" else None
    table = events.table(sort_by=sort or "self_cpu_time_total", row_limit=40)
    text.write(table)
    (Path(args.out) / "gen_profile.txt").write_text(text.getvalue())
    return {
        "rows": args.gen_rows,
        "wall_s_under_cprofile": wall,
        "host_s": _profile_total(table, "CPU"),
        "device_kernel_s": _profile_total(table, "CUDA") or _profile_total(table, "Device"),
        "file": "gen_profile.txt",
    }


def _profile_total(table: str, kind: str) -> float | None:
    """Seconds of the ``Self <kind> time total`` line that ends torch.profiler's table (None: absent)."""
    import re

    m = re.search(rf"Self {kind} time total: ([0-9.]+)(us|ms|s)", table)
    return None if m is None else float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def stage_generation(args, dev: torch.device, on_variant=None) -> dict:
    from generation.generator import Generator

    cpu_cfg = gen_config(args, "cpu", args.stat_rows)
    cpu_cfg.threads, cpu_cfg.compile = 0, False  # all cores, no one-off compile (speed only: same data)
    cpu_gen = Generator(cpu_cfg)
    t0 = time.perf_counter()
    c_cpu = _stat_columns(cpu_gen, args.stat_rows, 11)
    t_cpu = time.perf_counter() - t0
    variants: dict[str, dict] = {}
    c_device: dict[str, np.ndarray] = {}
    for name in args.gen_variants:
        gen = Generator(gen_config(args, str(dev), args.gen_rows, GEN_VARIANTS[name]))
        times = _time_draws(gen, args, dev)
        v = {"overrides": GEN_VARIANTS[name], "seconds": times, "samples_per_s": args.gen_rows / min(times)}
        if gen.pose_device == "cpu":
            n_poses = -(-args.gen_rows // gen.spp)
            t0 = time.perf_counter()
            gen.pose_sampler.sample(n_poses, torch.Generator().manual_seed(3))  # the CPU part of every row
            v["pose_sampling_s"] = t_pose = time.perf_counter() - t0
            v["pose_sampling_share"] = t_pose / min(times)
        if name in ("cpu", "device"):  # threads change no data: cpu_all_cores has cpu's statistics
            c_dev = _stat_columns(gen, args.stat_rows, 7)
            v["stats"] = compare_stats(c_dev, c_cpu, gen.spp)
            v["columns_device"] = column_stats(c_dev)
            if name == "device":
                c_device = c_dev
        elif name in SAME_DATA_AS and SAME_DATA_AS[name] in variants:  # speed only: are the bits the same?
            v["bits_differ"] = bits_differ(_stat_columns(gen, args.stat_rows, 7), c_device)
        v["config"] = {
            "device": str(dev),
            "batch_size": int(gen.cfg.batch_size),
            "compiled": gen.compiled,
            "pose_device": gen.pose_device,
        }
        variants[name] = v
        if on_variant is not None:
            on_variant(variants)
        print(f"gpu_check: generation, poses {name}: {v['samples_per_s']:,.0f} samples/s", flush=True)
        del gen
    main = variants.get("device") or next(iter(variants.values()))  # the default set's way on this device
    columns_main = main.get("columns_device")
    for v in variants.values():
        v.pop("columns_device", None)
    best = max(variants, key=lambda k: variants[k]["samples_per_s"])
    return {
        "rows": args.gen_rows,
        "repeats": args.gen_repeats,
        **{k: main[k] for k in ("seconds", "samples_per_s", "config")},
        "pose_sampling_s": variants.get("cpu", {}).get("pose_sampling_s"),
        "pose_sampling_share": variants.get("cpu", {}).get("pose_sampling_share"),
        "stats": main.get("stats") or next(v["stats"] for v in variants.values() if "stats" in v),
        "variants": variants,
        "best_variant": best,
        "best_samples_per_s": variants[best]["samples_per_s"],
        "stat_rows": args.stat_rows,
        "cpu_rows": args.stat_rows,
        "cpu_samples_per_s": args.stat_rows / t_cpu,
        "columns_device": columns_main,
        "columns_cpu": column_stats(c_cpu),
    }


# --- stage 2 --------------------------------------------------------------------------------------------
class StepTimer:
    """Samples/s of training steps after the first ``skip`` batches (the device synchronised at both ends)."""

    def __new__(cls, *a, **k):  # a Lightning callback, built lazily so the module imports without lightning
        import lightning as L

        class _StepTimer(L.Callback):
            def __init__(self, skip: int) -> None:
                self.skip, self.samples, self.t0, self.t1 = skip, 0, None, None

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                if batch_idx == self.skip:
                    sync(pl_module.device)
                    self.t0 = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                if batch_idx >= self.skip:
                    self.samples += int(batch["z"].shape[0])

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                sync(pl_module.device)
                self.t1 = time.perf_counter()

            @property
            def rate(self) -> float:
                return self.samples / (self.t1 - self.t0) if self.t0 and self.samples else float("nan")

        return _StepTimer(*a, **k)


def _fit_rate(dm, loader, batch: int, precision: str, n_batches: int, skip: int) -> float:
    from bench_train import bench_module, bench_trainer

    timer = StepTimer(skip)
    model = bench_module(1)
    model.set_target_stats(*dm.target_stats(model.normaliser))
    bench_trainer(1, timer, limit_train=skip + n_batches, precision=precision).fit(
        model, train_dataloaders=loader
    )
    return timer.rate


def stage_throughput(args, dev: torch.device, host) -> dict:
    from bench_train import DictLoader
    from torch.utils.data import DataLoader, TensorDataset

    from depth_pose.data import DeviceBatches, DeviceDataModule

    dm = DeviceDataModule(
        host_set=host, batch_size=4096, val_fraction=0.01, test_fraction=0.0, device=str(dev)
    )
    dm.setup("fit")
    tr = dm.splits["train"]
    n = tr["z"].shape[0]

    def skip(bs: int) -> int:  # untimed warm-up batches: tp_skip, fewer for huge batches
        return max(1, min(args.tp_skip, 262144 // bs))

    def batches(bs: int) -> int:  # timed batches: >= args.tp_samples samples, >= 3, within one epoch
        return max(3, min(-(-args.tp_samples // bs), n // bs - skip(bs)))

    rows = []
    for precision in args.precisions:
        res = {}
        for bs in args.batches:
            if n // bs < skip(bs) + 3:
                continue
            loader = DeviceBatches(tr, bs, -(-n // bs), shuffle=True, seed=0)
            res[bs] = _fit_rate(dm, loader, bs, precision, batches(bs), skip(bs))
        best = max(res, key=lambda b: res[b])
        for bs in sorted({args.batches[0], best}):
            ds = TensorDataset(
                tr["kp"].cpu(), tr["intr"].cpu(), tr["z"].cpu(), tr["special"].cpu(), tr["row"].cpu()
            )
            dl = DictLoader(DataLoader(ds, batch_size=bs, shuffle=True), dev)
            # per-sample __getitem__ + collate is slow and steady: a quarter of the samples, 1 warm-up batch
            base = _fit_rate(dm, dl, bs, precision, max(2, -(-args.tp_samples // (4 * bs))), 1)
            rows.append(
                {
                    "precision": precision,
                    "batch": bs,
                    "dataloader": base,
                    "device_resident": res[bs],
                    "ratio": res[bs] / base,
                }
            )
        rows += [
            {"precision": precision, "batch": b, "device_resident": r}
            for b, r in res.items()
            if b not in (args.batches[0], best)
        ]
    rows.sort(key=lambda r: (r["precision"], r["batch"]))
    best_row = max(rows, key=lambda r: r["device_resident"])
    return {
        "rows_in_train_split": int(n),
        "table": rows,
        "best_batch": f"{best_row['batch']} ({best_row['precision']}, {best_row['device_resident']:,.0f}/s)",
        "skip_batches": args.tp_skip,
    }


# --- stage 3 --------------------------------------------------------------------------------------------
class ValTimer:
    """Training time (validation excluded) and wall time since fit start at every validation, with val ALE."""

    def __new__(cls, *a, **k):
        import lightning as L

        class _ValTimer(L.Callback):
            def __init__(self) -> None:
                self.train, self.t0, self.start, self.running = 0.0, 0.0, 0.0, False
                self.curve: list[dict] = []

            def on_fit_start(self, trainer, pl_module) -> None:
                self.start = time.perf_counter()

            def _pause(self, pl_module) -> None:
                if self.running:
                    sync(pl_module.device)
                    self.train += time.perf_counter() - self.t0
                    self.running = False

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                if not self.running:
                    self.t0, self.running = time.perf_counter(), True

            def on_validation_start(self, trainer, pl_module) -> None:
                self._pause(pl_module)

            def on_validation_end(self, trainer, pl_module) -> None:
                ale = trainer.callback_metrics.get("val/ale")
                if ale is not None:
                    self.curve.append(
                        {
                            "epoch": trainer.current_epoch,
                            "step": trainer.global_step,
                            "train_s": round(self.train, 2),
                            "wall_s": round(time.perf_counter() - self.start, 2),
                            "val_ale": float(ale),
                        }
                    )
                    print(f"gpu_check: val {self.curve[-1]}", flush=True)

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                self._pause(pl_module)

        return _ValTimer()


def stage_converge(args, dev: torch.device, recipe: dict, reference: dict | None) -> tuple[dict, object]:
    import lightning as L
    from bench_train import bench_module

    from depth_pose.data import DeviceDataModule

    rows, epochs = int(recipe["rows"]), int(recipe["epochs"])
    gen = _generator(args, dev, rows)
    host, t_gen = host_set(gen, rows, int(recipe["gen_seed"]), args.chunk)
    L.seed_everything(int(recipe["seed"]))
    dm = DeviceDataModule(
        host_set=host,
        batch_size=int(recipe["batch"]),
        val_fraction=float(recipe["val_fraction"]),
        test_fraction=0.0,
        device=str(dev),
    )
    del host
    timer = ValTimer()
    model = bench_module(epochs, float(recipe["lr"]))
    t0 = time.perf_counter()
    L.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        precision=recipe.get("precision", "32-true"),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        val_check_interval=float(recipe["val_check_interval"]),
        num_sanity_val_steps=0,
    ).fit(model, datamodule=dm)
    fit_wall = time.perf_counter() - t0
    from depth_pose.predictor import export_model

    export_model(
        model, Path(args.out) / "gpu_check_model.safetensors", {"source": "gpu_check", "recipe": recipe}
    )
    curve = timer.curve
    ref_ale = reference["best_val_ale"] if reference else None
    target = 1.05 * ref_ale if ref_ale else None
    hit = next((p for p in curve if target and p["val_ale"] <= target), None)
    out = {
        "rows": rows,
        "epochs": epochs,
        "batch": int(recipe["batch"]),
        "lr": float(recipe["lr"]),
        "generate_s": t_gen,
        "best_val_ale": min(p["val_ale"] for p in curve),
        "reference_best_val_ale": ref_ale,
        "target_ale": round(target, 4) if target else None,
        "train_s_to_target": hit["train_s"] if hit else None,
        "wall_s_to_target": hit["wall_s"] if hit else None,
        "reference_train_s_to_target": reference.get("train_s_to_target") if reference else None,
        "train_s": timer.train,
        "fit_wall_s": fit_wall,
        "curve": curve,
    }
    return out, model


def _generator(args, dev: torch.device, rows: int):
    from generation.generator import Generator

    return Generator(gen_config(args, str(dev), rows))


# --- stage 4 --------------------------------------------------------------------------------------------
def stage_kitti(args, model, reference: dict | None) -> dict:
    from hydra import compose, initialize_config_dir

    from depth_pose.env import config_dir
    from depth_pose.evaluate import evaluate
    from depth_pose.predictor import export_model

    kitti = Path(args.kitti)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = export_model(model.cpu(), Path(tmp) / "model.safetensors", {"source": "gpu_check"})
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(
                config_name="eval",
                overrides=[
                    f"keypoints={kitti.resolve()}",
                    f"out={Path(tmp) / 'pred.jsonl'}",
                    f"ckpt={ckpt}",
                    "plots=false",
                    "progress=false",
                    "paths.root_dir=/tmp",
                ],
            )
        metrics = evaluate(cfg)
    m = metrics["methods"]["model"]
    ref = reference.get("kitti_ale") if reference else None
    diff = abs(m["ale_m"] - ref) if ref is not None else None
    return {
        "file": str(kitti),
        "n": metrics["n_with_gt"],
        "ale": m["ale_m"],
        "within_1sigma": m.get("cov_1sigma"),
        "reference_ale": ref,
        "abs_diff": diff,
        "tolerance_m": 0.05,
        "ok": None if diff is None else diff <= 0.05,
        "model": {k: v for k, v in m.items() if k != "bands"},
    }


# --- carry size, prepare --------------------------------------------------------------------------------
def carry_size(carry: list[str]) -> dict:
    """Bytes of what a device run sends: tracked + untracked-not-ignored files (git) and the carried paths."""
    try:
        names = subprocess.run(
            ["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError) as e:
        return {"ok": None, "why": f"git unavailable: {e}"}
    tree = sum(p.stat().st_size for n in set(names) if n and (p := ROOT / n.decode()).is_file())
    carried = 0
    for c in carry:
        p = ROOT / c
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()] if p.exists() else []
        carried += sum(f.stat().st_size for f in files)
    total = tree + carried
    return {
        "tree_mib": round(tree / 2**20, 2),
        "carried_mib": round(carried / 2**20, 2),
        "total_mib": round(total / 2**20, 2),
        "limit_mib": CARRY_LIMIT // 2**20,
        "ok": total <= CARRY_LIMIT,
    }


def prepare(args) -> None:
    """Here (PyPI reachable, Anny installed): wheels, the body bank and a KITTI copy into ``.gpu/``."""
    import shutil

    WHEEL_DIR.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    plat = ["--python-version", "3.12", "--implementation", "py", "--platform", "manylinux2014_x86_64"]
    subprocess.run(
        [*pip, "download", "-q", "--no-deps", "--only-binary=:all:", *plat, "-d", WHEEL_DIR, *WHEELS],
        check=True,
    )
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", WHEEL_DIR, *SDIST_WHEELS], check=True)
    if KITTI_SHARED.exists():
        shutil.copyfile(KITTI_SHARED, KITTI_COPY)
    if (ROOT / "generation" / "bank.py").exists() and not BANK_FILE.exists():
        subprocess.run([sys.executable, "-m", "generation.bank", str(BANK_FILE)], cwd=ROOT, check=True)
    print(json.dumps({"wheels": sorted(p.name for p in WHEEL_DIR.glob("*.whl")), **carry_size([".gpu"])}))


# --- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "outputs" / "gpu_check"))
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    ap.add_argument(
        "--dry-run", action="store_true", help="every stage, tiny sizes, CPU, 1 epoch; carry size"
    )
    ap.add_argument("--reference", action="store_true", help="stages 3 + 4 on the CPU, full recipe -> JSON")
    ap.add_argument("--prepare", action="store_true", help="fetch wheels, make the bank, copy KITTI to .gpu/")
    ap.add_argument("--body", default="auto", choices=["auto", "bank", "anny"])
    ap.add_argument("--bank", default=str(BANK_FILE))
    ap.add_argument("--kitti", default=str(KITTI_COPY if KITTI_COPY.exists() else KITTI_SHARED))
    ap.add_argument("--gen-rows", type=int, default=10_000_000)
    ap.add_argument("--gen-repeats", type=int, default=2)
    ap.add_argument(
        "--gen-variants",
        nargs="+",
        default=list(DEFAULT_GEN_VARIANTS),
        choices=list(GEN_VARIANTS),
        help="stage 1: where the poses are drawn (cpu: the default set's way)",
    )
    ap.add_argument("--stat-rows", type=int, default=1_000_000)
    ap.add_argument("--tp-rows", type=int, default=4_000_000, help="stage 2: generated rows")
    ap.add_argument("--tp-samples", type=int, default=1_000_000, help="stage 2: samples timed per run")
    ap.add_argument("--tp-skip", type=int, default=5, help="stage 2: batches not timed (warm-up)")
    ap.add_argument("--batches", type=int, nargs="+", default=[4096, 16384, 65536, 262144])
    ap.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    ap.add_argument("--chunk", type=int, default=1_000_000, help="rows generated per call")
    ap.add_argument("--recipe", default=str(REFERENCE), help="JSON with the stage-3 recipe and CPU reference")
    args = ap.parse_args(argv)
    if not {"cpu", "device"} & set(args.gen_variants):
        ap.error("--gen-variants needs cpu or device among them (stage 1 compares their statistics)")
    if args.prepare:
        prepare(args)
        return 0
    recipe_doc = json.loads(Path(args.recipe).read_text())
    recipe = dict(recipe_doc["recipe"])
    reference = recipe_doc.get("cpu_reference")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.reference:
        args.device, stages, reference = "cpu", ["converge", "kitti"], None
    if args.dry_run:
        args.device = "cpu"
        args.gen_rows, args.gen_repeats, args.stat_rows = 20_000, 1, 20_000
        args.tp_rows, args.tp_samples, args.tp_skip, args.batches = 20_000, 2048, 1, [1024, 4096]
        args.chunk = 10_000
        recipe.update(rows=20_000, epochs=1, val_check_interval=0.5)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.body_overrides, body = body_choice(args)
    meta = {
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu_threads": torch.get_num_threads(),
        "dry_run": args.dry_run,
        "reference_run": args.reference,
        "body": body,
        "anny_importable": _importable("anny"),
        "hydra": _origin("hydra"),
        "omegaconf": _origin("omegaconf"),
        "recipe": recipe,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    if args.dry_run:
        meta["carry"] = carry_size([".gpu"])
    if "kitti" in stages and not Path(args.kitti).is_file():  # the real data is not everywhere: said, skipped
        stages.remove("kitti")
        meta["skipped"] = {"kitti": f"no file at {args.kitti} (--kitti FILE, or DEPTH_POSE_REAL_DATA)"}
        print(f"gpu_check: stage kitti skipped: {meta['skipped']['kitti']}", flush=True)
    rep = Report(Path(args.out), meta)
    print(f"gpu_check: device {dev} ({meta['device_name']}), body {body}, out {args.out}", flush=True)
    model = None
    for name in stages:
        t0 = time.perf_counter()
        try:
            if name == "generation":
                res = stage_generation(args, dev, lambda v: rep.stage("generation_partial", {"variants": v}))
            elif name == "gen_profile":
                res = stage_gen_profile(args, dev)
            elif name == "throughput":
                host, _ = host_set(_generator(args, dev, args.tp_rows), args.tp_rows, 5, args.chunk)
                res = stage_throughput(args, dev, host)
                del host
            elif name == "converge":
                res, model = stage_converge(args, dev, recipe, reference)
            elif name == "kitti":
                if model is None:
                    raise RuntimeError("stage kitti needs the model of stage converge (run both)")
                res = stage_kitti(args, model, reference)
            else:
                raise ValueError(f"unknown stage {name!r} (known: {', '.join(STAGES + OPTIONAL_STAGES)})")
        except Exception as e:  # noqa: BLE001  (record it, go on with the next stage)
            import traceback

            traceback.print_exc()
            rep.data.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
            rep.write()
            continue
        res["stage_s"] = round(time.perf_counter() - t0, 1)
        if name == "generation":  # stage 1's variants so far: now in its result (kept if it failed)
            rep.data["stages"].pop("generation_partial", None)
        rep.stage(name, res)
        print(f"gpu_check: stage {name} done in {res['stage_s']} s", flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if args.reference:
        _write_reference(Path(args.recipe), recipe_doc, rep.data, body)
    print((Path(args.out) / "gpu_check.md").read_text(), flush=True)
    return 1 if rep.data.get("errors") else 0


def _origin(name: str) -> str:
    """``version (folder)`` of an importable package, for the record (the carried wheels or not)."""
    import importlib

    try:
        mod = importlib.import_module(name)
    except ImportError as e:
        return f"missing ({e})"
    return f"{getattr(mod, '__version__', '?')} ({Path(mod.__file__).parent.parent})"


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return sys.modules.get(name, 0) is not None and importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _write_reference(path: Path, doc: dict, data: dict, body: str) -> None:
    c, k = data["stages"].get("converge"), data["stages"].get("kitti")
    if not c or not k:
        raise SystemExit("reference run incomplete: nothing written")
    best = c["best_val_ale"]
    hit = next(p for p in c["curve"] if p["val_ale"] <= 1.05 * best)
    doc["cpu_reference"] = {
        "command": ".venv/bin/python experiments/gpu_check.py --reference",
        "date": data["meta"]["started"],
        "machine": f"this project's 2-core CPU, torch {data['meta']['torch']}, "
        f"{data['meta']['cpu_threads']} threads",
        "body": body,
        "best_val_ale": round(best, 4),
        "train_s_to_target": hit["train_s"],
        "train_s": round(c["train_s"], 1),
        "fit_wall_s": round(c["fit_wall_s"], 1),
        "generate_s": round(c["generate_s"], 1),
        "curve": c["curve"],
        "kitti_ale": round(k["ale"], 4),
        "kitti_n": k["n"],
        "kitti_within_1sigma": k["within_1sigma"],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"reference written to {path}")


if __name__ == "__main__":
    raise SystemExit(main())
