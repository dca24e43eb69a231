"""Benchmark the render path: accepted YOLO-labelled samples/s, with and without the downscale trick.

For each preset (render=draft, render=seed) the same generator code runs twice in this process, after a
warm-up (workers started, YOLO loaded): ``downscale_trick=true`` (one render -> one sample per scale, tiles
packed onto 640 canvases for YOLO) and ``false`` (one render at the scale's zoom + one YOLO pass per sample).
Only accepted samples count (YOLO misses and OKS-filtered ones do not). YOLO at imgsz 640 on the CPU.

    .venv/bin/python experiments/bench_render.py                       # both presets
    .venv/bin/python experiments/bench_render.py --presets draft --rows 60
"""

from __future__ import annotations

import argparse

import depth_pose  # noqa: F401  (env first)


def _cfg(preset: str, trick: bool, workers: int, packing: str | None):
    from hydra import compose, initialize_config_dir

    from depth_pose.env import config_dir
    from generation.pipeline import with_defaults

    ov = [
        f"render={preset}",
        f"render.downscale_trick={str(trick).lower()}",
        f"render.workers={workers}",
        "samples_per_pose=4",
        "body.n_bodies=64",
        "out_dir=/tmp/unused",
        "progress=false",
    ]
    if packing:
        ov.append(f"render.packing={packing}")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return with_defaults(compose("generate", overrides=ov))


def run(preset: str, trick: bool, rows: int, workers: int, packing: str | None, shared: dict) -> dict:
    from generation.render.pipeline import RenderGenerator, build_generator

    cfg = _cfg(preset, trick, workers, packing)
    if "body" not in shared:
        g0 = build_generator(cfg)
        shared.update(body=g0.body, pose=g0.pose_sampler, cam=g0.camera_sampler)
        gen = g0
    else:
        gen = RenderGenerator(
            cfg, body=shared["body"], pose_sampler=shared["pose"], camera_sampler=shared["cam"]
        )
    try:
        gen.generate(4, seed=12345)  # warm-up: spawn workers, load YOLO, first kernels
        gen.counts.clear()
        gen.timing.clear()
        cols = gen.generate(rows, seed=1)
        dt = gen.timing[
            "produce_s"
        ]  # until the last needed rows were labelled (not the drain of extra renders)
    finally:
        gen.close()
    c = gen.counts
    seen = sum(c[k] for k in ("accepted", "no_detection", "low_oks", "render_failed"))
    # every accepted sample made in the timed window counts (the last chunk may overshoot ``rows``)
    assert len(cols["z_m"]) == rows
    return {
        "preset": preset,
        "trick": trick,
        "packing": gen.packing,
        "rows": c["accepted"],
        "s": dt,
        "rows_per_s": c["accepted"] / dt,
        "renders": int(gen.timing["renders"]),
        "yolo_images": int(gen.timing["yolo_images"]),
        "accept": c["accepted"] / max(seen, 1),
        "yolo_s": gen.timing["yolo_s"],
        "render_wait_s": gen.timing["wait_render_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["draft", "seed"])
    ap.add_argument(
        "--rows", type=int, default=None, help="accepted rows per run (default: draft 80, seed 40)"
    )
    ap.add_argument(
        "--rows-baseline", type=int, default=None, help="rows for the no-trick runs (default: rows/4)"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--packing", default=None, help="override render.packing for the trick runs (mosaic|single)"
    )
    a = ap.parse_args()
    shared: dict = {}
    res = []
    for preset in a.presets:
        rows = a.rows or {"draft": 80, "seed": 40}.get(preset, 40)
        base_rows = a.rows_baseline or max(4, rows // 4)
        for trick, n in ((True, rows), (False, base_rows)):
            r = run(preset, trick, n, a.workers, a.packing if trick else None, shared)
            res.append(r)
            print(f"  {preset:6s} trick={trick!s:5s}: {r['rows']} rows in {r['s']:.1f} s", flush=True)
    print(
        "\n| render | trick | packing | accepted rows | s | accepted/s | renders | YOLO images | "
        "accept rate |"
        " YOLO s | render wait s | trick/no-trick |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res:
        base = next(b for b in res if b["preset"] == r["preset"] and not b["trick"])
        ratio = r["rows_per_s"] / base["rows_per_s"]
        print(
            f"| {r['preset']} | {r['trick']} | {r['packing']} | {r['rows']} | {r['s']:.1f} | "
            f"{r['rows_per_s']:.2f} | "
            f"{r['renders']} | {r['yolo_images']} | {r['accept']:.2f} | {r['yolo_s']:.1f} | "
            f"{r['render_wait_s']:.1f} |"
            f" {ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()
