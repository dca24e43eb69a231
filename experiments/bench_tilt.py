"""Tilt benchmark: the tilt suite (``dp-eval suite=tilt``) and the pose-invariance suite for a list of models,
as one Markdown table with the gravity targets and PASS/FAIL.

    .venv/bin/python experiments/bench_tilt.py [HYDRA_OVERRIDE ...] [--models A.safetensors B.safetensors ...]
        [--out TABLE.md] [--work DIR]    (quick run: e.g. invariance.n_bodies=8 tilt.depths_m=[3,20])
    (overrides go before --models, which takes every name after it)

The first model is the reference (default: the shipped model as of commit 48458f8,
``outputs/models/model_48458f8``); every model is scored without the up direction (``no up``) and, if it takes
gravity, with each camera's true up direction (``up``). Per tilt bin: median |z/true - 1| / median bias of
z/true - 1 / 1 sigma coverage; then the worst tilt bin's median over the level bin's, and the invariance
suite's non-standing median (scored without up: its cameras are level).

Targets (for every model but the reference; the ratios are shown for the reference too):
- worst/level <= 1.3x without up, <= 1.15x with up;
- level-bin median (each variant) and invariance non-standing median <= 1.05x the reference's (no more than
  5% worse; better passes).
"""

from __future__ import annotations

from pathlib import Path

from model_bench import evaluate_quietly, pct, suite_bench_main, verdict

from depth_pose.env import REPO_ROOT

DEFAULT_MODELS = [
    REPO_ROOT / "outputs" / "models" / "model_48458f8" / "default_model.safetensors",
    REPO_ROOT / "depth_pose" / "assets" / "default_model.safetensors",
]
RATIO_NO_UP, RATIO_UP, VS_REF = 1.3, 1.15, 1.05


def run_model(path: Path, work: Path, overrides: list[str]) -> dict:
    """Both suites for one model: ``{"tilt": metrics, "invariance": metrics}``."""
    common = [f"ckpt={path}", "progress=false", "plots=false", *overrides]
    return {
        suite: evaluate_quietly([f"suite={suite}", f"out={work / suite / 'samples.jsonl'}", *common])
        for suite in ("tilt", "invariance")
    }


def table(results: dict[str, dict]) -> str:
    """The Markdown table (per tilt bin per column) and the targets with PASS/FAIL."""
    names = list(results)
    ref = names[0]
    cols = []  # (column title, model name, variant)
    for i, name in enumerate(names):
        variants = results[name]["tilt"]["variants"]
        for v in variants:
            what = "reference" if i == 0 else ("no up" if v == "no_up" else "with up")
            cols.append((f"{name} ({what})" if i else f"{name} (reference, no up)", name, v))
    tilt0 = results[ref]["tilt"]
    lines = [
        "Tilt suite: per tilt bin median |z/true−1| / median bias / ≤1σ coverage "
        f"({tilt0['n_samples']} samples per model and variant: {tilt0['n_bodies']} bodies, "
        f"depths {tilt0['depths_m']} m, yaws {tilt0['yaws_deg']} deg, noise {tilt0['noise']}).",
        "",
        "| tilt (deg) | " + " | ".join(c[0] for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for key in tilt0["per_tilt"][tilt0["variants"][0]]:
        cells = []
        for _, name, v in cols:
            r = results[name]["tilt"]["per_tilt"][v][key]
            cells.append(f"{pct(r['median'])} / {pct(r['bias_median'], True)} / {r['coverage_1sigma']:.0%}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    ratio_cells = []
    for _, name, v in cols:
        w = results[name]["tilt"]["worst_over_level"][v]
        ratio_cells.append(f"{w['ratio']:.2f}× (worst {w['worst_tilt_deg']:g}°)")
    lines.append("| **worst / level** | " + " | ".join(ratio_cells) + " |")
    inv_cells = [
        pct(results[name]["invariance"]["overall_non_standing"]["model_median"])
        if v == "no_up"
        else "(no up only)"
        for _, name, v in cols
    ]
    lines.append("| **invariance non-standing median** | " + " | ".join(inv_cells) + " |")
    lines += ["", "| model | target | value | limit | result |", "|---|---|---|---|---|"]
    ref_tilt, ref_inv = (
        results[ref]["tilt"],
        results[ref]["invariance"]["overall_non_standing"]["model_median"],
    )
    ref_level = ref_tilt["worst_over_level"]["no_up"]["level_median"]
    for i, name in enumerate(names):
        t = results[name]["tilt"]
        for v in t["variants"]:
            limit = RATIO_NO_UP if v == "no_up" else RATIO_UP
            r = t["worst_over_level"][v]["ratio"]
            what = "without up" if v == "no_up" else "with up"
            lines.append(
                f"| {name} | worst/level {what} | {r:.2f}× | ≤ {limit}× | "
                f"{verdict(r <= limit)}{' (reference)' if i == 0 else ''} |"
            )
        if i == 0:
            continue
        for v in t["variants"]:
            lv = t["worst_over_level"][v]["level_median"]
            what = "without up" if v == "no_up" else "with up"
            lines.append(
                f"| {name} | level-bin median {what} vs reference | {pct(lv)} = {lv / ref_level:.3f}× "
                f"| ≤ {VS_REF}× ({pct(ref_level)}) | {verdict(lv <= VS_REF * ref_level)} |"
            )
        inv = results[name]["invariance"]["overall_non_standing"]["model_median"]
        lines.append(
            f"| {name} | invariance non-standing median vs reference | {pct(inv)} = {inv / ref_inv:.3f}× "
            f"| ≤ {VS_REF}× ({pct(ref_inv)}) | {verdict(inv <= VS_REF * ref_inv)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    return suite_bench_main(
        argv, __doc__, "bench_tilt", DEFAULT_MODELS, "model files; first = reference", run_model, table
    )


if __name__ == "__main__":
    main()
