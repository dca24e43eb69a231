"""Markdown tables of evaluation metrics (``report.md`` and the table printed to stdout)."""

from __future__ import annotations

from depth_pose.eval.metrics import ALP_THRESHOLDS_M

METHOD_TITLES = {
    "model": "model",
    "box_height": "box-height pinhole (1.71 m, keypoint extent)",
    "shoulder_hip": "shoulder-hip pinhole (0.48 m)",
    "floor": "floor (stature variation, 0.046 x z)",
}


def _num(v, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _pct1(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _rows(methods: dict[str, dict], same: dict[str, dict] | None) -> list[tuple[str, dict]]:
    """Table rows: each method, and after each baseline the model on exactly that baseline's people."""
    rows = []
    n_model = methods.get("model", {}).get("n")
    for name, m in methods.items():
        rows.append((METHOD_TITLES.get(name, name), m))
        if same and name in same and same[name]["n"] != n_model:
            rows.append((f"↳ model on the same {same[name]['n']} people", same[name]))
    return rows


def methods_table(methods: dict[str, dict], same: dict[str, dict] | None = None) -> str:
    """One row per method: n, ALE, median, relative error, bias, delta<1.25, ALP, sigma coverage."""
    alps = [f"ALP<{a:g} m" for a in ALP_THRESHOLDS_M]
    head = ["method", "n", "ALE (m)", "median (m)", "rel. err", "bias", "δ<1.25", *alps, "≤1σ", "≤2σ"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for title, m in _rows(methods, same):
        row = [
            title,
            f"{m['n']}/{m['n_total']}",
            _num(m["ale_m"]),
            _num(m["median_abs_m"]),
            _pct1(m["rel_err"]),
            _pct1(m["bias_rel"]),
            _pct(m["delta_1.25"]),
            *(_pct(m[f"alp_{a:g}m"]) for a in ALP_THRESHOLDS_M),
            _pct(m.get("cov_1sigma")),
            _pct(m.get("cov_2sigma")),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def bands_table(methods: dict[str, dict], same: dict[str, dict] | None = None) -> str:
    """ALE (m) per true-depth band, one row per method, with the number of people in each cell."""
    bands = list(next(iter(methods.values()))["bands"])
    head = ["ALE (m) per band", *(f"{b} m" for b in bands)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for title, m in _rows(methods, same):
        cells = [f"{_num(m['bands'][b]['ale_m'])} (n={m['bands'][b]['n']})" for b in bands]
        lines.append("| " + " | ".join([title, *cells]) + " |")
    return "\n".join(lines)


def group_table(by: dict[str, dict[str, dict]], what: str) -> str:
    """Errors per label (pose, arms, ...) of the model and the box-height rule on a labelled (synthetic)
    set."""
    lines = [
        f"## Per {what} (synthetic labels)",
        "",
        f"| {what} | n | model median \\|pred/true−1\\| | model ALE (m) | model bias | ≤1σ | "
        "box-height median \\|pred/true−1\\| | box-height n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, m in by["model"].items():
        b = by["box_height"].get(label, {})
        lines.append(
            f"| {label} | {m['n']} | {_pct1(m['median_rel'])} | {_num(m['ale_m'])} | "
            f"{_pct1(m['bias_rel'])} | "
            f"{_pct(m.get('cov_1sigma'))} | {_pct1(b.get('median_rel'))} | {b.get('n', 0)} |"
        )
    return "\n".join(lines)


def people_report(metrics: dict) -> str:
    """The Markdown report of a keypoint or image set evaluation."""
    parts = [
        f"# Evaluation: {metrics['input']}",
        "",
        f"- model: `{metrics['model']}`",
        f"- people scored: {metrics['n_scored']} of {metrics['n_input']} input entries "
        f"({metrics['n_skipped']} left out), {metrics['n_with_gt']} with ground truth",
        "",
    ]
    if metrics.get("methods"):
        same = metrics.get("model_on_baseline_people")
        parts += [
            "## Overall",
            "",
            methods_table(metrics["methods"], same),
            "",
            "## Per distance band",
            "",
            bands_table(metrics["methods"], same),
            "",
        ]
        by_px = metrics.get("model_by_person_px")
        if by_px:
            parts += [
                "## Model per person size (pixel height of the confident keypoints)",
                "",
                "| person height (px) | n | ALE (m) | mean rel. error | mean bias | ≤1σ |",
                "|---|---|---|---|---|---|",
            ]
            parts += [
                f"| {b} | {m['n']} | {_num(m['ale_m'])} | {_pct1(m['rel_err'])} | {_pct1(m['bias_rel'])} | "
                f"{_pct(m.get('cov_1sigma'))} |"
                for b, m in by_px.items()
                if m["n"]
            ]
            parts += [""]
        for what, by in (metrics.get("by_group") or {}).items():
            parts += [group_table(by, what), ""]
        cal = metrics.get("calibration_curve")
        if cal:
            parts += [
                "## Uncertainty calibration (share with |err| ≤ kσ)",
                "",
                "| k | " + " | ".join(f"{k:g}" for k in cal["k"]) + " |",
                "|---|" + "---|" * len(cal["k"]),
                "| observed | " + " | ".join(_pct(v) for v in cal["observed"]) + " |",
                "| Gaussian ideal | " + " | ".join(_pct(v) for v in cal["ideal"]) + " |",
                "",
            ]
    if metrics.get("skipped"):
        parts += ["## Left out", ""] + [f"- {s['where']}: {s['why']}" for s in metrics["skipped"]] + [""]
    return "\n".join(parts)


def invariance_report(res: dict) -> str:
    """The Markdown report of the pose-invariance suite."""
    lines = [
        "# Pose invariance (synthetic, held-out bodies)",
        "",
        f"- model: `{res['model']}`",
        f"- {res['n_samples']} samples: {res['n_bodies']} bodies (seed {res['seed']}), "
        f"depths {res['depths_m']} m, "
        f"yaws {res['yaws_deg']} deg, {res['n_per_pose']} pose variants per name "
        f"(jitter {res['jitter_deg']} deg), "
        f"noise: {res['noise']}",
        "",
        "| pose | n | model median \\|pred/true−1\\| | model IQR | model median bias | box-height median | "
        "box-height IQR | box-height n/a | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pose, r in res["per_pose"].items():
        m, b = r["model"], r["box_height"]
        ratio = b["median"] / m["median"] if m["median"] else float("nan")
        lines.append(
            f"| {pose} | {r['n']} | {_pct1(m['median'])} | {_pct1(m['iqr'])} | "
            f"{_pct1(m.get('bias_median'))} | "
            f"{_pct1(b['median'])} | "
            f"{_pct1(b['iqr'])} | {b['n_na']} | {ratio:.1f}× |"
        )
    o = res["overall_non_standing"]
    lines += [
        "",
        f"**Non-standing poses**: model median {_pct1(o['model_median'])}, "
        f"box-height {_pct1(o['box_height_median'])}"
        f" → ratio {o['ratio']:.1f}× (target ≥ 3× and model ≤ 3%).",
        "",
        f"**1σ coverage** (all poses): {_pct(res['coverage_1sigma'])} (target 60–76%, Gaussian 68%); "
        f"2σ: {_pct(res['coverage_2sigma'])}.",
        "",
        "| depth (m) | model median | box-height median | ≤1σ |",
        "|---|---|---|---|",
    ]
    for d, r in res["per_depth"].items():
        lines.append(
            f"| {d} | {_pct1(r['model_median'])} | {_pct1(r['box_height_median'])} | "
            f"{_pct(r['coverage_1sigma'])} |"
        )
    return "\n".join(lines) + "\n"
