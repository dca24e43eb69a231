"""Training benchmarks (CPU or GPU), printed as tables with ratios against baselines measured in the same run.

1. Throughput (samples/s) of one training epoch with the same model (mlp_base), batch 4096, same Trainer:
   device-resident datamodule (:class:`depth_pose.data.DeviceDataModule`) vs
   ``DataLoader(TensorDataset(...), shuffle=True)`` (per-sample indexing + collate). Also the data path alone.
2. Time to converge: train mlp_base on ``--n`` samples, record val ALE after every epoch with wall time, and a
   reference run ``--ref-factor`` times longer; report the wall time at which val ALE first comes within 5% of
   the reference's final (best) val ALE.
3. Checksum verification on read: rows/s of ``load_host_set`` (what ``dp-train`` loads) on a set with and
   without the sha256 check of every shard (``data.verify``), alternating, ``--repeats`` times each.

    python experiments/bench_train.py throughput [--data DIR] [--n 200000] [--batches 40]
    python experiments/bench_train.py converge --data DIR [--n 1000000] [--epochs 6] [--ref-factor 10]
    python experiments/bench_train.py verify --data DIR [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

import depth_pose  # noqa: F401
from depth_pose.data import DeviceDataModule, HostSet, load_host_set
from depth_pose.models import DepthModule

MLP_BASE = {"width": 256, "depth": 3}
OPT = {"_target_": "torch.optim.AdamW", "lr": 0.002, "weight_decay": 0.0001}
AUG = {"p_drop": 0.3, "max_drop": 4, "p_truncate": 0.05, "p_flip": 0.5}


def _host(args) -> HostSet:
    if args.data:
        h = load_host_set(args.data)
        m = min(len(h), args.n)
        return HostSet(h.kp[:m], h.intr[:m], h.z[:m], h.special[:m], h.pose_id[:m])
    g = torch.Generator().manual_seed(0)  # content does not matter for throughput
    n = args.n
    kp = torch.rand(n, 17, 3, generator=g) * torch.tensor([600.0, 300.0, 1.0]) + torch.tensor(
        [300.0, 20.0, 0.0]
    )
    intr = torch.tensor([721.5, 721.5, 609.6, 172.9, 0.0]).expand(n, 5).contiguous()
    z = 2 + 40 * torch.rand(n, generator=g)
    return HostSet(kp, intr, z, torch.zeros(n, dtype=torch.bool), torch.arange(n))


class EpochTimer(L.Callback):
    """Wall time of each training epoch and val ALE after it (cumulative time excludes validation)."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.train_time = 0.0
        self.samples = 0
        self.curve: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += int(batch["z"].shape[0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.train_time += time.perf_counter() - self.t0
        ale = trainer.callback_metrics.get("val/ale")
        if ale is not None:
            self.curve.append((self.train_time, float(ale)))


def bench_trainer(
    epochs: int,
    timer: EpochTimer,
    limit_train: int | float = 1.0,
    val: bool = False,
    precision: str = "32-true",
) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        precision=precision,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_train_batches=limit_train,
        limit_val_batches=1.0 if val else 0,
        num_sanity_val_steps=0,
    )


def bench_module(epochs: int, lr: float | None = None) -> DepthModule:
    sched = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": epochs, "eta_min": 1e-5}
    opt = {**OPT, "lr": lr} if lr else OPT
    return DepthModule(net=MLP_BASE, augment=AUG, optimizer=opt, scheduler=sched)


class DictLoader:
    """Wrap a DataLoader of TensorDataset tuples into the module's dict batches (to the device per batch)."""

    def __init__(self, dl: DataLoader, device: torch.device) -> None:
        self.dl, self.device = dl, device

    def __len__(self) -> int:
        return len(self.dl)

    def __iter__(self):
        for kp, intr, z, sp, row in self.dl:
            yield {
                "kp": kp.to(self.device),
                "intr": intr.to(self.device),
                "z": z.to(self.device),
                "special": sp.to(self.device),
                "row": row.to(self.device),
            }


def throughput(args) -> dict:
    host = _host(args)
    bs = 4096
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {}
    # device-resident
    dm = DeviceDataModule(host_set=host, batch_size=bs, val_fraction=0.01, test_fraction=0.0)
    dm.setup("fit")
    timer = EpochTimer()
    model = bench_module(1)
    model.set_target_stats(*dm.target_stats(model.normaliser))
    bench_trainer(1, timer, limit_train=args.batches, precision=args.precision).fit(
        model, train_dataloaders=dm.train_dataloader()
    )
    results["device_resident"] = timer.samples / timer.train_time
    # DataLoader(TensorDataset, shuffle=True) baseline, same rows
    tr = dm.splits["train"]
    ds = TensorDataset(tr["kp"].cpu(), tr["intr"].cpu(), tr["z"].cpu(), tr["special"].cpu(), tr["row"].cpu())
    dl = DictLoader(DataLoader(ds, batch_size=bs, shuffle=True), dev)
    timer2 = EpochTimer()
    model2 = bench_module(1)
    model2.set_target_stats(*dm.target_stats(model2.normaliser))
    bench_trainer(1, timer2, limit_train=args.batches, precision=args.precision).fit(
        model2, train_dataloaders=dl
    )
    results["dataloader_tensordataset"] = timer2.samples / timer2.train_time
    # the data path alone (no model)
    for name, it in (("device_resident", dm.train_dataloader()), ("dataloader_tensordataset", dl)):
        t0, k, s = time.perf_counter(), 0, 0
        for b in it:
            s += int(b["z"].shape[0])
            k += 1
            if k >= args.batches:
                break
        results[f"data_only/{name}"] = s / (time.perf_counter() - t0)
    print(
        f"\nthroughput, mlp_base, batch {bs}, {len(host):,} rows, device {dev}, torch threads "
        f"{torch.get_num_threads()}, precision {args.precision}"
    )
    print(f"{'pipeline':<40}{'samples/s':>14}{'ratio':>9}")
    for key in ("dataloader_tensordataset", "device_resident"):
        print(
            f"{'train: ' + key:<40}{results[key]:>14,.0f}"
            f"{results[key] / results['dataloader_tensordataset']:>9.1f}x"
        )
    base = results["data_only/dataloader_tensordataset"]
    for key in ("data_only/dataloader_tensordataset", "data_only/device_resident"):
        print(f"{key:<40}{results[key]:>14,.0f}{results[key] / base:>9.1f}x")
    return results


def converge(args) -> dict:
    host = _host(args)
    out = {}
    curves = {}
    runs = (("run", args.epochs), ("reference", args.epochs * args.ref_factor))
    if args.ref_json:  # reuse a reference curve measured earlier with the same recipe
        ref = json.loads(Path(args.ref_json).read_text())
        curves["reference"] = ref["curves"]["reference"]
        out.update({k: ref[k] for k in ("reference_epochs", "reference_wall_s")})
        runs = runs[:1]
    for name, epochs in runs:
        L.seed_everything(0)
        dm = DeviceDataModule(host_set=host, batch_size=args.batch, val_fraction=0.02, test_fraction=0.0)
        timer = EpochTimer()
        model = bench_module(epochs, args.lr)
        wall = time.perf_counter()
        bench_trainer(epochs, timer, val=True, precision=args.precision).fit(model, datamodule=dm)
        curves[name] = timer.curve
        out[f"{name}_epochs"] = epochs
        out[f"{name}_wall_s"] = time.perf_counter() - wall
        print(
            f"{name}: {epochs} epochs, train time {timer.train_time:.1f} s, "
            f"wall {out[f'{name}_wall_s']:.1f} s, "
            f"best val ALE {min(a for _, a in timer.curve):.3f} m"
        )
    ref = min(a for _, a in curves["reference"])
    target = 1.05 * ref
    hit = [t for t, a in curves["run"] + curves["reference"] if a <= target]
    hit_run = [t for t, a in curves["run"] if a <= target]
    out.update(
        {
            "reference_best_ale": ref,
            "target_ale": target,
            "run_best_ale": min(a for _, a in curves["run"]),
            "time_to_within_5pct_s": hit_run[0] if hit_run else None,
            "reference_time_to_within_5pct_s": min(hit) if hit else None,
            "curves": curves,
        }
    )
    print(
        f"\ntime to converge, mlp_base, {len(host):,} rows, batch {args.batch}, lr {args.lr or OPT['lr']}, "
        f"precision {args.precision}"
    )
    print(f"{'':<34}{'value':>12}")
    print(f"{'reference best val ALE (m)':<34}{ref:>12.3f}")
    print(f"{'run best val ALE (m)':<34}{out['run_best_ale']:>12.3f}")
    print(f"{'run / reference ALE':<34}{out['run_best_ale'] / ref:>12.3f}")
    t = out["time_to_within_5pct_s"]
    print(f"{'run: train s to <=1.05 x ref':<34}{(f'{t:.1f}' if t is not None else 'not reached'):>12}")
    print(f"{'run: train s / ref train s':<34}{curves['run'][-1][0] / curves['reference'][-1][0]:>12.3f}")
    return out


def verify(args) -> dict:
    """Load time of a whole set with and without the sha256 check (best of ``--repeats``, alternating)."""
    load_host_set(args.data, verify=False)  # warm the page cache: both variants read from memory
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}  # process CPU s (all threads): what the hash costs
    n = 0
    for _ in range(args.repeats):
        for check in (False, True):
            t0, c0 = time.perf_counter(), time.process_time()
            n = len(load_host_set(args.data, verify=check))
            times[check].append(time.perf_counter() - t0)
            cpu[check].append(time.process_time() - c0)
    out = {"rows": n, "repeats": args.repeats, "cpu_s_without": min(cpu[False]), "cpu_s_with": min(cpu[True])}
    for check, name in ((False, "without"), (True, "with")):
        out[f"{name}_s"] = min(times[check])
        out[f"{name}_median_s"] = sorted(times[check])[len(times[check]) // 2]
        out[f"{name}_rows_per_s"] = n / min(times[check])
    out["overhead"] = out["with_s"] / out["without_s"] - 1
    out["overhead_median"] = out["with_median_s"] / out["without_median_s"] - 1
    print(f"{'load_host_set, ' + str(n) + ' rows':<34}{'best s':>10}{'median s':>10}{'rows/s':>14}")
    for name in ("without", "with"):
        print(
            f"{name + ' sha256':<34}{out[name + '_s']:>10.3f}{out[name + '_median_s']:>10.3f}"
            f"{out[name + '_rows_per_s']:>14,.0f}"
        )
    print(f"{'overhead (best / median)':<34}{out['overhead']:>10.1%}{out['overhead_median']:>10.1%}")
    print(f"{'process CPU s without / with':<34}{out['cpu_s_without']:>10.3f}{out['cpu_s_with']:>10.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["throughput", "converge", "verify"])
    ap.add_argument("--data", default=None, help="dataset directory (default: random rows for throughput)")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--batches", type=int, default=40, help="throughput: training batches timed per pipeline")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5, help="verify: loads timed per variant")
    ap.add_argument("--ref-factor", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4096, help="converge: batch size")
    ap.add_argument(
        "--lr", type=float, default=None, help=f"converge: AdamW learning rate (default {OPT['lr']})"
    )
    ap.add_argument(
        "--ref-json", default=None, help="converge: reuse the reference curve of an earlier --json"
    )
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument(
        "--precision",
        default="32-true",
        help="Lightning precision for every run (32-true, bf16-mixed: CPU autocast, AVX512-BF16/AMX)",
    )
    args = ap.parse_args()
    if args.n is None:
        args.n = 200_000 if args.what == "throughput" else 1_000_000
    if args.what in ("converge", "verify") and not args.data:
        ap.error(f"{args.what} needs --data (a generated set)")
    res = {"throughput": throughput, "converge": converge, "verify": verify}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
