"""Train the default recipe and export it to ``depth_pose/assets/default_model.{safetensors,json}`` (atomic).

    python -m depth_pose.make_default_model [hydra overrides...]     # what `make model` runs
    python -m depth_pose.make_default_model --from-ckpt RUN/checkpoints/last.ckpt   # export a finished run

Config: ``conf/train.yaml`` + ``experiment=default_model`` (+ overrides). The JSON metadata records the
resolved config, the dataset id, the synthetic val/test metrics, the keypoint normalisation, timings and the
training set's ranges (``training_ranges``, :mod:`depth_pose.ranges`: what the predictor flags
``out_of_range`` against).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import depth_pose  # noqa: F401
from depth_pose.env import REPO_ROOT, config_dir
from depth_pose.predictor import DEFAULT_MODEL, export_model
from depth_pose.ranges import compute_ranges

log = logging.getLogger(__name__)
CONF_DIR = config_dir()


def compose_config(overrides: list[str]):
    """``train`` config with ``experiment=default_model`` and ``overrides`` (usable outside a Hydra app)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    base = ["experiment=default_model", f"paths.output_dir={REPO_ROOT / 'outputs' / 'default_model' / stamp}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*base, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def _data_config(data_dir: str | Path | None) -> dict | None:
    """The generation config recorded in the dataset's manifest (what the model was trained on)."""
    from depth_pose.shards import load_manifest

    try:
        cfg = load_manifest(data_dir)["config"] if data_dir else None
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return {k: v for k, v in cfg.items() if k not in ("paths", "out_dir", "progress")} if cfg else None


def _training_ranges(data_dir: str | Path | None, normaliser) -> dict | None:
    """:func:`depth_pose.ranges.compute_ranges` of the training set, or None (logged) when it is not there."""
    if not data_dir or not (Path(data_dir) / "manifest.json").is_file():
        log.warning("training set %s not found: no training_ranges in the JSON (defaults)", data_dir)
        return None
    return compute_ranges(data_dir, threshold=normaliser.threshold, min_visible=normaliser.min_visible)


def make_default_model(
    overrides: list[str] | None = None, out: str | Path = DEFAULT_MODEL
) -> tuple[Path, dict]:
    """Train, reload the best checkpoint (weights only) and export it with provenance; returns
    (path, metadata)."""
    from depth_pose.train import resolved_config, train

    cfg = compose_config(list(overrides or []))
    t0 = time.perf_counter()
    metrics, objs = train(cfg)
    wall = time.perf_counter() - t0
    model = objs["model"]
    if objs["best_ckpt"]:
        state = torch.load(objs["best_ckpt"], map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(state)
    meta: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": "conf/train.yaml + experiment=default_model " + " ".join(overrides or []),
        "data_id": objs["data_id"],
        "data_dir": str(objs["data_dir"]),
        "data_config": _data_config(objs["data_dir"]),
        "metrics": metrics,
        "train_wall_s": round(wall, 1),
        "best_ckpt": str(objs["best_ckpt"]),
        "torch": torch.__version__,
        "config": resolved_config(cfg),
    }
    if (ranges := _training_ranges(objs["data_dir"], model.normaliser)) is not None:
        meta["training_ranges"] = ranges
    path = export_model(model, out, meta)
    log.info(
        "exported %s (%.0f KB); val ALE %.3f m", path, path.stat().st_size / 1024, metrics.get("best_val", -1)
    )
    return path, meta


def export_checkpoint(ckpt: str | Path, out: str | Path = DEFAULT_MODEL, note: str = "") -> tuple[Path, dict]:
    """Export an existing Lightning checkpoint of a train run (weights only) with its stored provenance."""
    from depth_pose.predictor import DepthPredictor

    pred = DepthPredictor.load(ckpt)
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    monitor = {k: v for k, v in ck.get("callbacks", {}).items() if "ModelCheckpoint" in k}
    scores = {
        k: float(v["best_model_score"]) for k, v in monitor.items() if v.get("best_model_score") is not None
    }
    meta: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": "conf/train.yaml + experiment=default_model (exported from a checkpoint) " + note,
        "data_id": pred.metadata.get("data_id"),
        "data_dir": pred.metadata.get("data_dir"),
        "data_config": _data_config(pred.metadata.get("data_dir")),
        "metrics": {"best_val_ale_so_far": min(scores.values()) if scores else None},
        "epoch": ck.get("epoch"),
        "global_step": ck.get("global_step"),
        "best_ckpt": str(ckpt),
        "torch": torch.__version__,
        "config": pred.metadata.get("config"),
    }
    ranges = _training_ranges(pred.metadata.get("data_dir"), pred.normaliser)
    if ranges is not None or "training_ranges" in pred.metadata:
        meta["training_ranges"] = ranges if ranges is not None else pred.metadata["training_ranges"]
    return export_model(pred.module, out, meta), meta


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    if len(sys.argv) == 3 and sys.argv[1] == "--from-ckpt":
        path, meta = export_checkpoint(sys.argv[2])
        print(json.dumps({"model": str(path), "data_id": meta["data_id"], "epoch": meta["epoch"]}, indent=1))
        return
    path, meta = make_default_model(sys.argv[1:])
    print(
        json.dumps(
            {
                "model": str(path),
                "data_id": meta["data_id"],
                "metrics": {k: round(v, 4) for k, v in meta["metrics"].items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
