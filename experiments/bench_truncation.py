"""Truncation benchmark (issue 19): the truncation suite (``dp-eval suite=truncation``: standing and walking
people with the frame cut at the ankles, knees, hips, waist, chest or beside one shoulder) for a list of
models, as one Markdown table with the issue's targets and PASS/FAIL.

    .venv/bin/python experiments/bench_truncation.py [HYDRA_OVERRIDE ...] [--models A.safetensors ...]
        [--out TABLE.md] [--work DIR]    (quick run: e.g. invariance.n_bodies=4 invariance.n_per_pose=3)
    (overrides go before --models, which takes every name after it)

The first model is the reference (default: the shipped model, ``depth_pose/assets/default_model``). Per cut
and noise variant (``border``: YOLO's border behaviour, out-of-frame joints clamped onto the border with
moderate confidence; ``no_border``: those joints unseen): median |z/true - 1| / median bias of z/true - 1 /
median over the full-body median / 1 sigma coverage / share of rows with an out-of-frame joint reported
visible.

Targets (border variant; shown for every model): 'cut at the hips' median <= 1.5x the full-body median; no cut
with |median bias| > 3%; and, for every model but the reference, the full-body median no worse than the
reference's (<= 1.05x).
"""

from __future__ import annotations

from pathlib import Path

from model_bench import evaluate_quietly, pct, suite_bench_main, verdict

from depth_pose.env import REPO_ROOT

DEFAULT_MODELS = [REPO_ROOT / "depth_pose" / "assets" / "default_model.safetensors"]
VS_REF = 1.05
BORDER = "border"


def run_model(path: Path, work: Path, overrides: list[str]) -> dict:
    """The truncation suite's metrics for one model."""
    return evaluate_quietly(
        [
            "suite=truncation",
            f"out={work / 'truncation' / 'samples.jsonl'}",
            f"ckpt={path}",
            "progress=false",
            "plots=false",
            *overrides,
        ]
    )


def table(results: dict[str, dict]) -> str:
    """The Markdown table (one row per cut, one column per model and noise variant) and the targets."""
    names = list(results)
    ref = names[0]
    r0 = results[ref]
    cols = [(f"{name} ({v})", name, v) for name in names for v in results[name]["variants"]]
    lines = [
        "Truncation suite: per cut median |z/true−1| / median bias / ×full-body median / ≤1σ coverage / rows "
        f"with an out-of-frame joint seen ({r0['n_samples']} samples per model and variant: {r0['n_bodies']} "
        f"bodies, poses {r0['poses']}, depths {r0['depths_m']} m, yaws {r0['yaws_deg']} deg, image "
        f"{r0['image_wh']} before the cut, noise {r0['noise']}).",
        "",
        "| cut | n | " + " | ".join(c[0] for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for cut in r0["cuts"]:
        cells = []
        for _, name, v in cols:
            r = results[name]["per_cut"][v][cut]
            cells.append(
                f"{pct(r['median'])} / {pct(r['bias_median'], True)} / {r['over_full']:.2f}× / "
                f"{r['coverage_1sigma']:.0%} / {r['out_of_frame_seen']:.0%}"
            )
        lines.append(f"| {cut} | {r0['per_cut'][r0['variants'][0]][cut]['n']} | " + " | ".join(cells) + " |")
    lines += ["", "| model | target | value | limit | result |", "|---|---|---|---|---|"]
    ref_full = r0["targets"][BORDER]["full_median"]
    for i, name in enumerate(names):
        t = results[name]["targets"][BORDER]
        h, b = t["hips_over_full"], t["max_abs_bias"]
        lines.append(
            f"| {name} | hips / full-body median (border) | {h['value']:.2f}× | ≤ {h['limit']}× | "
            f"{verdict(h['pass'])} |"
        )
        lines.append(
            f"| {name} | largest \\|median bias\\| of a cut (border) | {pct(b['value'], True)} "
            f"({b['cut']}) | ≤ {pct(b['limit'])} | {verdict(b['pass'])} |"
        )
        full = t["full_median"]
        if i == 0:
            lines.append(f"| {name} | full-body median (border) | {pct(full)} | reference | – |")
        else:
            lines.append(
                f"| {name} | full-body median vs reference | {pct(full)} = {full / ref_full:.3f}× | "
                f"≤ {VS_REF}× ({pct(ref_full)}) | {verdict(full <= VS_REF * ref_full)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    return suite_bench_main(
        argv, __doc__, "bench_truncation", DEFAULT_MODELS, "model files; first = reference", run_model, table
    )


if __name__ == "__main__":
    main()
