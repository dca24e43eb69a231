"""Markdown tables of evaluation metrics (``report.md`` and the table printed to stdout)."""

from __future__ import annotations

from depth_pose.eval.metrics import ALP_THRESHOLDS_M

# a scene calibration's errors, as the scene suite reports them
CALIB_PARAMS = ("pitch", "roll", "height_rel")


def calibration_coverage_cell(c: dict) -> str:
    """``62.0% (90.0%) / ...``: the share of scenes whose stated pitch / roll / height sigma covered the error
    within 1 (2) sigmas (a scene suite calibration block's ``covered``; – where none was known)."""
    cov = c.get("covered", {})
    return " / ".join(
        f"{_pct1(v['1sigma'])} ({_pct1(v['2sigma'])})" if v.get("n") else "–"
        for v in (cov.get(k, {}) for k in CALIB_PARAMS)
    )


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


def _rows(
    methods: dict[str, dict], same: dict[str, dict] | None, ok: dict | None = None
) -> list[tuple[str, dict]]:
    """Table rows: each method, after the model its ``ok`` people only (``ok``, when given), and after each
    baseline the model on exactly that baseline's people."""
    rows = []
    n_model = methods.get("model", {}).get("n")
    for name, m in methods.items():
        rows.append((METHOD_TITLES.get(name, name), m))
        if name == "model" and ok:
            rows.append((f"↳ model, status ok only ({ok['n']} people)", ok))
        if same and name in same and same[name]["n"] != n_model:
            rows.append((f"↳ model on the same {same[name]['n']} people", same[name]))
    return rows


def methods_table(
    methods: dict[str, dict], same: dict[str, dict] | None = None, ok: dict | None = None
) -> str:
    """One row per method: n, ALE, median, relative error, bias, delta<1.25, ALP, sigma coverage (``ok``: the
    model on its ``ok`` people, a row after the model's)."""
    alps = [f"ALP<{a:g} m" for a in ALP_THRESHOLDS_M]
    head = ["method", "n", "ALE (m)", "median (m)", "rel. err", "bias", "δ<1.25", *alps, "≤1σ", "≤2σ"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for title, m in _rows(methods, same, ok):
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
    ]
    counts = metrics.get("status_counts")
    if counts:
        parts.append(
            "- status (what the model knows): "
            + ", ".join(f"{k} {v}" for k, v in counts.items() if v or k == "ok")
            + " (ALE over everyone with a joint; the `ok` row: only people inside the training ranges)"
        )
    parts.append("")
    if metrics.get("methods"):
        same = metrics.get("model_on_baseline_people")
        parts += [
            "## Overall",
            "",
            methods_table(metrics["methods"], same, metrics.get("model_ok_only")),
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
    floor = res.get("floor") or {}
    floor_names = set(floor.get("poses", []))
    rows = {"old": [], "floor": []}
    for pose, r in res["per_pose"].items():
        m, b = r["model"], r["box_height"]
        ratio = b["median"] / m["median"] if m["median"] else float("nan")
        rows["floor" if pose in floor_names else "old"].append(
            f"| {pose} | {r['n']} | {_pct1(m['median'])} | {_pct1(m['iqr'])} | "
            f"{_pct1(m.get('bias_median'))} | "
            f"{_pct1(b['median'])} | "
            f"{_pct1(b['iqr'])} | {b['n_na']} | {ratio:.1f}× |"
        )
    header = lines[-2:]
    lines += rows["old"]
    floor_lines = []
    if floor:
        fo = floor["overall_non_standing"]
        floor_lines = [
            "",
            f"**Floor poses** (issue 19; own draws, seed {floor['seed']}; every number above is the other "
            "poses' alone):",
            "",
            *header,
            *rows["floor"],
            "",
            f"**Floor poses overall**: model median {_pct1(fo['model_median'])}, "
            f"box-height {_pct1(fo['box_height_median'])} → ratio {fo['ratio']:.1f}× (target: model ≤ 8%); "
            f"1σ coverage {_pct(floor['coverage_1sigma'])}, 2σ {_pct(floor['coverage_2sigma'])}; per depth "
            + ", ".join(f"{d} m {_pct1(r['model_median'])}" for d, r in floor["per_depth"].items())
            + ".",
        ]
    o = res["overall_non_standing"]
    scope = "non-floor " if floor else ""
    lines += [
        "",
        f"**Non-standing {scope}poses**: model median {_pct1(o['model_median'])}, "
        f"box-height {_pct1(o['box_height_median'])}"
        f" → ratio {o['ratio']:.1f}× (target ≥ 3× and model ≤ 3%).",
        "",
        f"**1σ coverage** (all {scope}poses): {_pct(res['coverage_1sigma'])} (target 60–76%, Gaussian 68%); "
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
    return "\n".join(lines + floor_lines) + "\n"


def tilt_report(res: dict) -> str:
    """The Markdown report of the tilt suite: per tilt bin and variant (``no_up``, ``up``) median / IQR /
    bias / 1 sigma coverage, the worst-over-level ratios and the per tilt x depth medians."""
    variants = res["variants"]
    lines = [
        "# Camera tilt (synthetic, held-out bodies, mid-hip on the optical axis)",
        "",
        f"- model: `{res['model']}` (takes the up direction: {'yes' if res['uses_gravity'] else 'no'})",
        f"- {res['n_samples']} samples: {res['n_bodies']} bodies (seed {res['seed']}), "
        + f"tilts {res['tilts_deg']} deg, depths {res['depths_m']} m, yaws {res['yaws_deg']} deg, "
        + f"{res['n_per_pose']} pose variants per name, noise: {res['noise']}",
        "",
        "| tilt (deg) | pitch | camera height (m) | n | "
        + " | ".join(f"{v}: median | {v}: IQR | {v}: bias | {v}: ≤1σ" for v in variants)
        + " |",
        "|---|---|---|---|" + "---|---|---|---|" * len(variants),
    ]
    for key, cam in res["cameras"].items():
        cells = []
        for v in variants:
            r = res["per_tilt"][v][key]
            cells += [
                _pct1(r["median"]),
                _pct1(r["iqr"]),
                _pct1(r["bias_median"]),
                _pct(r["coverage_1sigma"]),
            ]
        n = res["per_tilt"][variants[0]][key]["n"]
        lines.append(
            f"| {key} | {cam['pitch_deg_median']:.1f}° | "
            f"{cam['cam_height_m_min']:.1f}–{cam['cam_height_m_max']:.1f} | {n} | " + " | ".join(cells) + " |"
        )
    lines.append("")
    for v in variants:
        r = res["worst_over_level"][v]
        lines.append(
            f"**{v}**: worst tilt {r['worst_tilt_deg']:g}° median {_pct1(r['worst_median'])} / level "
            f"({r['level_tilt_deg']:g}°) {_pct1(r['level_median'])} = {r['ratio']:.2f}×; overall median "
            f"{_pct1(res['overall'][v]['median'])}, ≤1σ {_pct(res['overall'][v]['coverage_1sigma'])}."
        )
    for v in variants:
        depths = list(next(iter(res["per_tilt_depth"][v].values())))
        lines += [
            "",
            f"Median |pred/true−1| per tilt × depth ({v}):",
            "",
            "| tilt (deg) | " + " | ".join(f"{d} m" for d in depths) + " |",
            "|---|" + "---|" * len(depths),
        ]
        for key, row in res["per_tilt_depth"][v].items():
            lines.append(f"| {key} | " + " | ".join(_pct1(row[d]) for d in depths) + " |")
    return "\n".join(lines) + "\n"


def _deg(v) -> str:
    return "–" if v is None else f"{v:.2f}°"


def upright_medians(res: dict, floor: str, mount: str) -> tuple[float | None, float | None]:
    """Single-frame and scene-aware medians of the scene suite's standing / walking people (None, None when
    the metrics have none)."""
    up = res.get("per_mount_upright", {}).get(floor, {}).get(mount)
    if not up:
        return None, None
    return up[res["methods"][0]]["median"], up[res["scene_aware"]]["median"]


def scene_target_cells(name: str, t: dict) -> tuple[str, str]:
    """``(value, limit)`` cells of one scene-suite target (``metrics["targets"][name]``)."""
    v, lim = t["value"], t["limit"]
    if name.startswith(("calibration_pitch", "calibration_roll")):
        return f"{_deg(v)} ({t['n']}/{t['n_scenes']} scenes)", f"median ≤ {lim:g}°, all scenes"
    if name.startswith("calibration_height"):
        return f"{_pct1(v)} ({t['n']}/{t['n_scenes']} scenes)", f"median ≤ {100 * lim:g}%, all scenes"
    raw = t.get("unsmoothed")
    if name.startswith("non_planar"):
        worst = "–" if v is None else f"worst scene {v:.3f}× ({t['n_pass']}/{t['n']} pass)"
        if raw is not None and v is not None:
            worst += f"; without the time filter {raw:.3f}× ({t['n_pass_unsmoothed']}/{t['n']})"
        return worst, f"≤ {lim:g}× in every scene"
    return _pct1(v) + ("" if raw is None else f" (without the time filter {_pct1(raw)})"), f"≤ {100 * lim:g}%"


def scenes_report(res: dict) -> str:
    """The Markdown report of the scene suite: per floor the median |z/true − 1| per mount and method, the
    error against the person-frames seen, the calibration errors per checkpoint, the non-planar floors' per
    scene ratios and the targets with PASS / FAIL."""
    methods = res["methods"]
    same = set(res.get("same_as_single", []))
    title = {m: f"{m} (= single)" if m in same else m for m in methods}
    bank = res["bodies"]
    lines = [
        "# Scene suite (fixed cameras, people walking, self-calibration)",
        "",
        f"- model: `{res['model']}` (takes the up direction: {'yes' if res['uses_gravity'] else 'no'})",
        f"- {res['n_scenes']} scenes x {len(res['mounts'])} mounts x floors {res['floors']}; "
        f"{res['n_people']} people, {res['n_frames']} frames at {res['fps']:g} fps; "
        f"hfov {res['hfov_deg']} deg, {res['image_wh'][0]}x{res['image_wh'][1]}; noise: {res['noise']}",
        f"- bodies: {bank['source']}, {bank['n_bodies']} ({bank['n_children']} children; "
        f"{bank['children_in_scenes']} child tracks in the scenes)",
        f"- person-frames: {res['n_person_frames']} simulated, {res['n_detected']} detected, "
        f"{res['n_scored']} scored (after the first {res['warmup_person_frames']} of each scene); "
        f"calibrated at {res['calib_at']} person-frames, fusion every {res['fusion_every_frames']} frames",
    ]
    for floor, by_mount in res["per_mount"].items():
        lines += [
            "",
            f"## Floor: {floor}: median |z/true − 1| (bias of the scene-aware `{res['scene_aware']}`)",
            "",
            "| mount | n | "
            + " | ".join(title[m] for m in methods)
            + " | bias | standing / walking: single → scene-aware |",
            "|---|---|" + "---|" * (len(methods) + 2),
        ]
        for mount, st in by_mount.items():
            cells = [_pct1(st[m]["median"]) for m in methods]
            u1, us = upright_medians(res, floor, mount)
            lines.append(
                f"| {mount} | {st[methods[0]]['n']} | "
                + " | ".join(cells)
                + f" | {_pct1(st[res['scene_aware']]['bias_median'])} | {_pct1(u1)} → {_pct1(us)} |"
            )
    flat = res["per_seen"].get("flat", {})
    if flat:
        keys = list(next(iter(flat.values())))
        lines += [
            "",
            "## Flat floor: median |z/true − 1| vs person-frames seen (single → scene-aware)",
            "",
            "| mount | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for mount, bins in flat.items():
            cells = [
                f"{_pct1(bins[k].get('single'))} → {_pct1(bins[k].get(res['scene_aware']))}"
                if bins[k]["n"]
                else "–"
                for k in keys
            ]
            lines.append(f"| {mount} | " + " | ".join(cells) + " |")
    for floor, by_mount in res["calibration"].items():
        lines += [
            "",
            f"## Calibration ({floor} floor): median (p90) over scenes of |pitch|, |roll|, |height/true − 1|",
            "",
            "| mount | person-frames | calibrated | height | planar | up within 1° | pitch | roll "
            "| height error | stated σ covers pitch / roll / height, 1σ (2σ) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for mount, cps in by_mount.items():
            for cp, c in cps.items():
                p, r, h = c["pitch_abs_deg"], c["roll_abs_deg"], c["height_abs_rel"]
                lines.append(
                    f"| {mount} | {cp} | {c['n_calibrated']}/{c['n_scenes']} | {c['n_height']} | "
                    f"{c['n_planar']} | {c['n_up_precise']} | "
                    f"{_deg(p['median'])} ({_deg(p['p90'])}) | {_deg(r['median'])} ({_deg(r['p90'])}) | "
                    f"{_pct1(h['median'])} ({_pct1(h['p90'])}) | {calibration_coverage_cell(c)} |"
                )
    kinds = ["none", "fallback", "model", "track", "ground"]
    lines += [
        "",
        "## Where the scene-aware depths came from (share of scored person-frames)",
        "",
        "none: no calibration yet; fallback: no level floor found (model depths); model: level floor but no "
        "usable ground contact or track scale; track: model x the track's scale; ground: fused with the "
        "ground contact.",
        "",
        "| floor | mount | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for floor, by_mount in res.get("scene_aware_sources", {}).items():
        for mount, share in by_mount.items():
            lines.append(
                f"| {floor} | {mount} | " + " | ".join(_pct(share.get(k, 0.0)) for k in kinds) + " |"
            )
    lines += ["", "## Targets", "", "| target | value | limit | verdict |", "|---|---|---|---|"]
    for name, t in res["targets"].items():
        vs, ls = scene_target_cells(name, t)
        lines.append(f"| {name} | {vs} | {ls} | {'PASS' if t['pass'] else 'FAIL'} |")
    if "runtime_s" in res:
        lines += ["", f"Runtime: {res['runtime_s']}"]
    return "\n".join(lines) + "\n"


def truncation_report(res: dict) -> str:
    """The Markdown report of the truncation suite (issue 19): per cut and noise variant (``border``,
    ``no_border``) n, median |z/true - 1|, median bias, the median over the full-body median, 1 sigma coverage
    and the share of rows with an out-of-frame joint reported visible; then the issue's targets."""
    lines = [
        "# People cut by the frame (synthetic, held-out bodies, level camera)",
        "",
        f"- model: `{res['model']}` (takes the image size: {'yes' if res['uses_border'] else 'no'})",
        f"- {res['n_samples']} samples: {res['n_bodies']} bodies (seed {res['seed']}), poses {res['poses']} "
        + f"({res['n_per_pose']} each), depths {res['depths_m']} m, yaws {res['yaws_deg']} deg, "
        + f"image {res['image_wh']} cut per row, noise: {res['noise']}",
        "",
        truncation_table(res),
        "",
    ]
    for v, t in res["targets"].items():
        h, b = t["hips_over_full"], t["max_abs_bias"]
        lines.append(
            f"**{v}**: hips / full {h['value']:.2f}× (≤ {h['limit']}×: {'PASS' if h['pass'] else 'FAIL'}); "
            f"largest |bias| {_pct1(b['value'])} at {b['cut']} (≤ {_pct1(b['limit'])}: "
            f"{'PASS' if b['pass'] else 'FAIL'}); full-body median {_pct1(t['full_median'])}."
        )
    return "\n".join(lines) + "\n"


def truncation_table(res: dict) -> str:
    """The per-cut table of :func:`truncation_report` (one column group per noise variant)."""
    variants = res["variants"]
    head = " | ".join(
        f"{v}: median | {v}: bias | {v}: ×full | {v}: ≤1σ | {v}: out-of-frame seen" for v in variants
    )
    lines = [f"| cut | n | {head} |", "|---|---|" + "---|---|---|---|---|" * len(variants)]
    for c in res["cuts"]:
        cells = []
        for v in variants:
            r = res["per_cut"][v][c]
            cells += [
                _pct1(r["median"]),
                "–" if r["bias_median"] is None else f"{100 * r['bias_median']:+.1f}%",
                f"{r['over_full']:.2f}×",
                _pct(r["coverage_1sigma"]),
                _pct(r["out_of_frame_seen"]),
            ]
        lines.append(f"| {c} | {res['per_cut'][variants[0]][c]['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
