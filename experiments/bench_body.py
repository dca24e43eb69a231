"""Benchmark: BodyModel.pose() (fast exact keypoints) vs Anny's full forward (mesh + COCO regressor).

Both are measured in the same run (the machine is shared and noisy: compare the ratio, not absolute numbers).
Also times the pose samplers and the bank construction.

    .venv/bin/python experiments/bench_body.py                # defaults: 4096 bodies, batch 65536
    .venv/bin/python experiments/bench_body.py --batch 16384 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import depth_pose  # noqa: F401
from generation.anny_model import load_anny
from generation.body import BodyModel
from generation.pose import HybridPoseSampler, NormalPoseSampler, UniformPoseSampler

CPU: dict[str, float] = {}


def best_of(fn, repeats: int, key: str = "") -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call); the best process CPU time goes to
    CPU[key] (CPU seconds summed over threads: more robust than wall time on a loaded machine)."""
    fn()
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    CPU[key] = best_cpu
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bodies", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=65536, help="batch of body.pose()")
    ap.add_argument("--anny-batch", type=int, default=1024, help="batch of Anny's full forward")
    ap.add_argument(
        "--sampler-batch",
        type=int,
        default=8192,
        help="poses per sampler call (dp-generate: batch_size / samples_per_pose = 65536 / 8)",
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, reg = load_anny()
    t = time.perf_counter()
    body = BodyModel(n_bodies=args.bodies, seed=0)
    t_bank = time.perf_counter() - t

    g = torch.Generator().manual_seed(0)
    samplers = {"uniform": UniformPoseSampler(), "normal": NormalPoseSampler(), "hybrid": HybridPoseSampler()}
    poses = samplers["hybrid"].sample(args.batch, g)
    bi = torch.randint(args.bodies, (args.batch,), generator=g)

    t_fast = best_of(lambda: body.pose(bi, poses), args.repeats, "fast")

    # Anny full forward on the same kind of poses: every vertex skinned, then the COCO regressor
    nb = args.anny_batch
    H = torch.eye(4).repeat(nb, model.bone_count, 1, 1)
    idx = {b: i for i, b in enumerate(model.bone_labels)}
    H[:, [idx[b] for b in poses.bone_names], :3, :3] = poses.rotations[:nb]
    phen = body.shapes.phenotypes[bi[:nb]]

    def anny_forward():
        with torch.no_grad():
            return reg(model(pose_parameters=H, phenotype_kwargs=phen))

    t_anny = best_of(anny_forward, max(1, args.repeats // 2), "anny")

    rows = [
        ("Anny full forward + regressor", nb, t_anny, "anny"),
        ("BodyModel.pose (fast, exact)", args.batch, t_fast, "fast"),
    ]
    sb = args.sampler_batch
    for name, s in samplers.items():
        rows.append(
            (f"{name} sampler .sample", sb, best_of(lambda s=s: s.sample(sb, g), args.repeats, name), name)
        )
    rows.append(
        (
            "hybrid sample + pose",
            sb,
            best_of(lambda: body.pose(bi[:sb], samplers["hybrid"].sample(sb, g)), args.repeats, "both"),
            "both",
        )
    )

    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"threads={args.threads}  bodies={args.bodies}  bank build {t_bank:.2f} s  load average {load}")
    print(f"{'path':34s} {'batch':>7s} {'poses/s':>10s} {'x Anny':>7s} {'poses/cpu-s':>12s} {'x Anny':>7s}")
    anny_rate, anny_cpu = nb / t_anny, nb / CPU["anny"]
    for name, b, t, key in rows:
        print(
            f"{name:34s} {b:7d} {b / t:10,.0f} {b / t / anny_rate:7.1f} {b / CPU[key]:12,.0f} "
            f"{b / CPU[key] / anny_cpu:7.1f}"
        )


if __name__ == "__main__":
    main()
