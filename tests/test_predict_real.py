"""dp-predict on the shared real frames (../shared/data/real), intrinsics from their gt.json files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import compose

from depth_pose.predict.run import predict
from depth_pose.predict.zoom import box_iou

pytestmark = [pytest.mark.real, pytest.mark.yolo]


def run(folder, out):
    from depth_pose.predictor import DEFAULT_MODEL

    overrides = [f"source={folder}", f"out={out}", f"intrinsics.calib={folder / 'gt.json'}", "progress=false"]
    if not DEFAULT_MODEL.exists():  # the real predictor code path with untrained weights: plumbing only
        from depth_pose.models.module import DepthModule
        from depth_pose.predictor import export_model

        overrides.append(f"ckpt={export_model(DepthModule(), out.parent / 'untrained.safetensors')}")
    cfg = compose("predict", overrides)
    summary = predict(cfg)
    recs = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    return summary, recs, DEFAULT_MODEL.exists()


def test_kitti_frame(real_dir, tmp_path):
    folder = real_dir / "kitti_000000"
    gt = json.loads((folder / "gt.json").read_text())
    summary, recs, trained = run(folder, tmp_path / "kitti")
    assert summary["counts"]["processed"] == 1 and summary["counts"]["failed"] == 0
    np.testing.assert_allclose(summary["sources"][0]["K"], gt["K"], rtol=1e-6)  # calib= top-level K
    person = gt["people"][0]
    iou = box_iou(
        np.asarray([person["bbox_xyxy_px"]], np.float32), np.asarray([r["box_xyxy"] for r in recs])
    )[0]
    r = recs[int(np.argmax(iou))]
    assert iou.max() > 0.6
    assert np.isfinite(r["z_m"]) and r["sigma_m"] > 0 and r["ground_from"] == "ankles"
    if not trained:
        pytest.skip(
            "depth_pose/assets/default_model.safetensors not built yet: accuracy not checked (run make model)"
        )
    assert abs(r["z_m"] - person["gt_z_m"]) / person["gt_z_m"] < 0.25
    # Ground point vs KITTI's bottom centre of the 3D box: same depth rule, so within the depth error + 0.5 m.
    g = np.asarray(person["gt_xyz_bottom_center_m"])
    assert np.linalg.norm(np.asarray(r["ground_xyz_m"]) - g) < abs(r["z_m"] - person["gt_z_m"]) * 1.2 + 0.5


def test_phone_folder_per_image_K(real_dir, tmp_path):
    folder = real_dir / "phone_3to6m"
    gt = json.loads((folder / "gt.json").read_text())
    summary, recs, trained = run(folder, tmp_path / "phone")
    c = summary["counts"]
    assert (c["processed"], c["failed"]) == (9, 0) and [
        p.endswith("gt.json") for p in summary["skipped"]
    ] == [True]
    by_image = {s["image"]: s for s in gt["samples"]}
    errors = []
    for src in summary["sources"]:
        name = src["source"].rsplit("/", 1)[-1]
        np.testing.assert_allclose(src["K"], by_image[name]["K"], rtol=1e-6)  # calib= samples[].K by name
        mine = [r for r in recs if r["source"] == name]
        assert mine, f"nobody found in {name}"
        r = max(mine, key=lambda r: r["box_xyxy"][3] - r["box_xyxy"][1])
        errors.append(
            abs(r["z_m"] - by_image[name]["person_depth_m_approx"]) / by_image[name]["person_depth_m_approx"]
        )
    if not trained:
        pytest.skip("default model not built yet: accuracy not checked")
    assert np.median(errors) < 0.25
