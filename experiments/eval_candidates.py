"""Score candidate models the way an adoption decision needs (issues 19, 20): the rendered + YOLO held-out
set, KITTI dev, the invariance suite (old non-standing poses and the floor group), the truncation suite and
the phone frames, one table, the same commands for every model.

    .venv/bin/python experiments/eval_candidates.py --models A.safetensors B.safetensors [--names a b]
        [--out outputs/cand_eval/NAME] [--skip truncation,phone]

Each model's outputs go to ``OUT/<name>/`` (``dp-eval`` metrics, logs); the summary to ``OUT/summary.md``
and ``OUT/summary.json``. KITTI and the phone frames need ``../shared/data/real`` (skipped without it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from depth_pose.env import real_data_dir

ROOT = Path(__file__).resolve().parents[1]
REAL = real_data_dir()
BIN = ROOT / ".venv" / "bin"
STEPS = ("rendered", "kitti", "invariance", "truncation", "phone")


def run(cmd: list[str], log: Path) -> str:
    """Run ``cmd`` (one thread, logged); its stdout; a failure is reported with the log's last line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ANNY_CACHE_DIR": str(ROOT / ".cache" / "anny")}
    log.parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    log.write_text(f"$ {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {last} (log {log})")
    return p.stdout


def score(model: Path, out: Path, skip: set[str]) -> dict:
    """The five evaluations of one model -> a flat dict of the numbers the summary shows."""
    r: dict = {}
    ev = [str(BIN / "dp-eval"), f"ckpt={model}", "plots=false", "progress=false"]
    if "rendered" not in skip:
        run([*ev, "suite=rendered", f"out={out / 'rendered' / 'samples.jsonl'}"], out / "rendered.log")
        m = json.loads((out / "rendered" / "metrics.json").read_text())
        for g in ("all", "full", "truncated", "floor"):
            s = m["all"] if g == "all" else m["groups"][g]
            r[f"rendered_{g}"] = s["median_rel"]
        r["rendered_bias"] = m["all"]["bias_rel"]
        r["rendered_cov1"] = m["all"]["cover_1sigma"]
        r["rendered_gross_out2"] = m["all"]["gross_outside_2sigma"]
    kitti = REAL / "kitti_pedestrians_dev.jsonl"
    if "kitti" not in skip and kitti.is_file():
        run([*ev, f"keypoints={kitti}", f"out={out / 'kitti' / 'pred.jsonl'}"], out / "kitti.log")
        k = json.loads((out / "kitti" / "metrics.json").read_text())["methods"]["model"]
        r.update(kitti_ale=k["ale_m"], kitti_cov1=k["cov_1sigma"], kitti_bias=k["bias_rel"])
    if "invariance" not in skip:
        run([*ev, "suite=invariance", f"out={out / 'inv' / 'samples.jsonl'}"], out / "inv.log")
        m = json.loads((out / "inv" / "metrics.json").read_text())
        r.update(
            inv_old=m["overall_non_standing"]["model_median"],
            inv_floor=m["floor"]["overall_non_standing"]["model_median"],
            inv_cov1=m["coverage_1sigma"],
        )
    if "phone" not in skip and REAL.is_dir():
        text = run(
            [str(BIN / "python"), "experiments/bench_predict.py", "real", "--ckpt", str(model), "--out",
             str(out / "phone")],
            out / "phone.log",
        )  # fmt: skip
        phone = text.split("kitti_000000")[0]  # the phone frames' table (the KITTI frame follows)
        rel = [float(x) for x in re.findall(r"mean abs rel ([\d.]+)%", phone)]
        worst = [abs(float(x)) for x in re.findall(r"\| ([+-][\d.]+)% \|", phone)]
        if rel:
            r.update(phone_mean=rel[0] / 100, phone_worst=max(worst) / 100 if worst else None)
    return r


ROWS = (
    ("rendered_all", "rendered set: median abs rel, all", "pct"),
    ("rendered_full", "  full body", "pct"),
    ("rendered_truncated", "  truncated", "pct"),
    ("rendered_floor", "  floor", "pct"),
    ("rendered_bias", "  median bias", "pct"),
    ("rendered_cov1", "  1 sigma coverage (60-76%)", "pct"),
    ("rendered_gross_out2", "  gross (>20%) outside 2 sigma (>= 50%)", "pct"),
    ("kitti_ale", "KITTI dev ALE (m)", "m"),
    ("kitti_cov1", "KITTI 1 sigma coverage (60-76%)", "pct"),
    ("kitti_bias", "KITTI median bias", "pct"),
    ("inv_old", "invariance: old non-standing poses", "pct"),
    ("inv_floor", "invariance: floor group", "pct"),
    ("inv_cov1", "invariance: 1 sigma coverage", "pct"),
    ("phone_mean", "phone frames: mean abs rel", "pct"),
    ("phone_worst", "phone frames: worst", "pct"),
)


def table(names: list[str], res: dict[str, dict]) -> str:
    def cell(v, kind: str) -> str:
        if v is None:
            return "–"
        return f"{v:.3f}" if kind == "m" else f"{100 * v:.1f}%"

    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, label, kind in ROWS:
        if any(key in res[n] for n in names):
            lines.append(f"| {label} | " + " | ".join(cell(res[n].get(key), kind) for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, nargs="+", required=True)
    ap.add_argument("--names", nargs="+")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "cand_eval" / "candidates")
    ap.add_argument("--skip", default="", help=f"comma-separated steps to skip: {','.join(STEPS)}")
    a = ap.parse_args(argv)
    names = a.names or [m.parent.name for m in a.models]
    if len(names) != len(a.models) or len(set(names)) != len(names):
        print("eval_candidates: --names must give one distinct name per model", file=sys.stderr)
        return 2
    missing = [str(m) for m in a.models if not m.is_file()]
    if missing:
        print(f"eval_candidates: model file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    skip = {s for s in a.skip.split(",") if s}
    res = {}
    for name, model in zip(names, a.models):
        print(f"[{name}] {model}", file=sys.stderr, flush=True)
        res[name] = score(model.resolve(), a.out / name, skip)
    body = table(names, res)
    if "truncation" not in skip:
        run(
            [str(BIN / "python"), "experiments/bench_truncation.py", "--models", *map(str, a.models), "--out",
             str(a.out / "truncation.md"), "--work", str(a.out / "truncation")],
            a.out / "truncation.log",
        )  # fmt: skip
        body += "\nTruncation suite:\n\n" + (a.out / "truncation.md").read_text()
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "summary.md").write_text(body)
    (a.out / "summary.json").write_text(json.dumps(res, indent=1))
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
