"""Rendered + YOLO suite (issue 19): the committed held-out set of people rendered with ``render=draft`` and
labelled by YOLO with its gross errors kept (``depth_pose/assets/rendered_yolo/``, built by
``python -m generation.render.testset``), so every model is scored on the same people.

Only READS the set: ``people.jsonl.gz`` (the dp-eval keypoints JSONL contract plus ``group`` = full |
truncated | floor, ``pose``, ``image_wh``, ``pitch_deg`` / ``roll_deg``, ``missed``) is checked against the
sha256 in its ``manifest.json`` first (a mismatch is one error line). People YOLO missed are counted per
group, not scored. Per group and per pose: n, median |z/true - 1|, median bias z/true - 1, 1 sigma
coverage, and the share of gross errors (|z/true - 1| > 20 %) that lie outside 2 sigma (a gross error the
model did not flag). The model gets each person's keypoints, K, the true up direction and the image size
(``predictor.predict(kp, K, up=..., image_wh=...)``; models without gravity / border inputs ignore them).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

from depth_pose.eval.io import EvalInputError, atomic_write_json, atomic_write_jsonl, parse_person
from depth_pose.eval.metrics import relative_abs_error
from depth_pose.geometry import up_from_pitch_roll

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "rendered_yolo"
MANIFEST = "manifest.json"
GROSS = 0.2  # a gross depth error: |z/true - 1| above this
SIZE_BANDS = ((0.0, 60.0), (60.0, 100.0), (100.0, 200.0), (200.0, 1e9))  # person height as YOLO sees it, px


class RenderedSetError(EvalInputError):
    """The committed rendered set is missing, unreadable or not the file its manifest names (exit 2)."""


def verify(folder: str | Path | None = None) -> tuple[Path, dict]:
    """The data file of the set in ``folder`` (default :data:`ASSET_DIR`) and its manifest, after checking
    the file's sha256 against the manifest."""
    folder = Path(folder) if folder else ASSET_DIR
    mpath = folder / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
        data = folder / str(manifest["file"])
        digest = hashlib.sha256(data.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RenderedSetError(
            f"rendered test set '{folder}': cannot read it ({type(e).__name__}: {e})"
        ) from e
    if digest != manifest.get("sha256"):
        raise RenderedSetError(
            f"rendered test set '{data}': sha256 {digest[:12]}... does not match its manifest "
            f"({str(manifest.get('sha256'))[:12]}...): the file was modified; rebuild it with "
            "python -m generation.render.testset"
        )
    return data, manifest


def read_rendered(path: str | Path) -> dict:
    """The people of a (gzip or plain) rendered-set JSONL: ids, keypoints (N, 17, 3), K (N, 3, 3), gt_z (N,),
    image_wh (N, 2), up (N, 3), group, pose (N,) str, missed (N,) bool and det_px (N,): the exact keypoints'
    height at the detector's scale (NaN when the line does not say)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    keys = ("ids", "kp", "K", "gt_z", "wh", "up", "group", "pose", "missed", "det_px")
    out: dict[str, list] = {k: [] for k in keys}
    with opener(path, "rt") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                pid, kp, K, gt = parse_person(obj, f"line{n}")
                wh = [float(v) for v in obj["image_wh"]]
                pitch, roll = float(obj["pitch_deg"]), float(obj.get("roll_deg") or 0.0)
                group, pose = str(obj["group"]), str(obj["pose"])
            except (ValueError, KeyError, TypeError) as e:
                raise RenderedSetError(f"rendered test set '{path}' line {n}: {e}") from e
            out["ids"].append(pid)
            out["kp"].append(kp)
            out["K"].append(K)
            out["gt_z"].append(gt)
            out["wh"].append(wh)
            out["up"].append(up_from_pitch_roll(pitch, roll).numpy())
            out["group"].append(group)
            out["pose"].append(pose)
            out["missed"].append(bool(obj.get("missed", False)))
            px, scale = obj.get("person_px"), obj.get("detector_scale", 1.0)
            out["det_px"].append(float(px) * float(scale) if px is not None else float("nan"))
    if not out["ids"]:
        raise RenderedSetError(f"rendered test set '{path}' has no people")
    arr = {k: np.asarray(v) for k, v in out.items() if k != "ids"}
    arr["ids"] = out["ids"]
    return arr


def summary(z: np.ndarray, sigma: np.ndarray, true: np.ndarray) -> dict:
    """n, median |z/true - 1|, median bias, 1 sigma coverage, gross-error share and the share of gross errors
    outside 2 sigma, over the people with a finite prediction."""
    ok = np.isfinite(z) & np.isfinite(true)
    z, sigma, true = z[ok], sigma[ok], true[ok]
    if not len(z):
        return {"n": 0}
    rel = relative_abs_error(z, true)
    err = np.abs(z - true)
    gross = rel > GROSS
    return {
        "n": int(len(z)),
        "median_rel": float(np.median(rel)),
        "bias_rel": float(np.median(z / true - 1.0)),
        "cover_1sigma": float(np.mean(err <= sigma)) if np.isfinite(sigma).all() else None,
        "gross_share": float(gross.mean()),
        "gross_outside_2sigma": float(np.mean(err[gross] > 2 * sigma[gross])) if gross.any() else None,
    }


def run_rendered(predictor, cfg, out_jsonl: Path | None = None) -> dict:
    """Score ``predictor`` on the committed set (``cfg.path``: another set folder, null = the committed one);
    per group, person size and ``group/pose``; writes per-person rows to ``out_jsonl`` and ``metrics.json``
    beside it."""
    folder = cfg.get("path") if cfg is not None else None
    data, manifest = verify(folder)
    s = read_rendered(data)
    det = ~s["missed"]
    z = np.full(len(s["ids"]), np.nan)
    sigma = np.full(len(s["ids"]), np.nan)
    status = np.full(len(s["ids"]), "missed", dtype=object)
    if det.any():
        pred = predictor.predict(s["kp"][det], s["K"][det], up=s["up"][det], image_wh=s["wh"][det])
        z[det], sigma[det] = pred.z_m, pred.sigma_m
        status[det] = pred.status
    res: dict = {
        "set": {"file": str(data), "sha256": manifest["sha256"], "people": len(s["ids"])},
        "all": summary(z, sigma, s["gt_z"]),
        "groups": {},
        "poses": {},
        "sizes": {},
        "status": {str(k): int(v) for k, v in zip(*np.unique(status.astype(str), return_counts=True))},
    }
    for g in sorted(set(s["group"])):
        m = s["group"] == g
        res["groups"][g] = {
            **summary(z[m], sigma[m], s["gt_z"][m]),
            "people": int(m.sum()),
            "missed": int(s["missed"][m].sum()),
        }
    for lo, hi in SIZE_BANDS:
        m = (s["det_px"] >= lo) & (s["det_px"] < hi)
        if m.any():
            res["sizes"][f"{lo:g}-{hi:g} px" if hi < 1e9 else f">= {lo:g} px"] = {
                **summary(z[m], sigma[m], s["gt_z"][m]),
                "missed": int(s["missed"][m].sum()),
            }
    keys = np.char.add(np.char.add(s["group"].astype(str), "/"), s["pose"].astype(str))
    for key in sorted(set(keys)):
        m = keys == key
        res["poses"][key] = {**summary(z[m], sigma[m], s["gt_z"][m]), "missed": int(s["missed"][m].sum())}
    if out_jsonl is not None:
        rows = [
            {
                "id": s["ids"][i],
                "group": str(s["group"][i]),
                "pose": str(s["pose"][i]),
                "z_m": z[i],
                "sigma_m": sigma[i],
                "status": str(status[i]),
                "gt_z_m": float(s["gt_z"][i]),
            }
            for i in range(len(s["ids"]))
        ]
        atomic_write_jsonl(out_jsonl, rows)
        res["out"] = str(out_jsonl)
        atomic_write_json(out_jsonl.parent / "metrics.json", res)
    return res


def _cell(v, pct: bool = True) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else str(v)


def rendered_report(res: dict) -> str:
    """Markdown tables of :func:`run_rendered`'s result."""
    head = (
        "| {} | n scored | missed | median abs rel | median bias | 1 sigma coverage | gross (>20%) | "
        "gross outside 2 sigma |\n|---|---|---|---|---|---|---|---|"
    )

    def row(name: str, r: dict) -> str:
        return (
            f"| {name} | {r.get('n', 0)} | {r.get('missed', '-')} | {_cell(r.get('median_rel'))} | "
            f"{_cell(r.get('bias_rel'))} | {_cell(r.get('cover_1sigma'))} | {_cell(r.get('gross_share'))} | "
            f"{_cell(r.get('gross_outside_2sigma'))} |"
        )

    L = [
        f"# Rendered + YOLO suite ({res['set']['people']} people, sha256 {res['set']['sha256'][:12]})",
        "",
        head.format("group"),
        row("all", res["all"]),
        *[row(g, r) for g, r in res["groups"].items()],
        "",
        head.format("person px (detector scale)"),
        *[row(b, r) for b, r in res["sizes"].items()],
        "",
        head.format("group/pose"),
        *[row(p, r) for p, r in res["poses"].items()],
        "",
        "Statuses: " + ", ".join(f"{k} {v}" for k, v in res["status"].items()),
        "",
    ]
    return "\n".join(L)
