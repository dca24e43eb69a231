"""dp-eval on image sets end to end (YOLO pose -> matched person -> depth), and the shipped model on KITTI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import compose


@pytest.fixture(scope="module")
def bus_set(tmp_path_factory) -> Path:
    """ultralytics' bundled bus.jpg with a hand-made gt.json in the 'samples' layout (no box: largest
    person)."""
    import ultralytics

    src = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    d = tmp_path_factory.mktemp("bus")
    shutil.copy(src, d / "bus.jpg")
    f = 810 / (2 * np.tan(np.deg2rad(70) / 2))  # 810 x 1080 image, assumed 70 deg hfov
    gt = {
        "samples": [
            {"image": "bus.jpg", "K": [[f, 0, 405], [0, f, 540], [0, 0, 1]], "person_depth_m_approx": 4.0},
            {
                "image": "missing.jpg",
                "K": [[f, 0, 405], [0, f, 540], [0, 0, 1]],
                "person_depth_m_approx": 4.0,
            },
        ]
    }
    (d / "gt.json").write_text(json.dumps(gt))
    return d


def test_images_generated_set(tmp_path, tiny_model, bus_set):
    from depth_pose.evaluate import evaluate

    cfg = compose(
        "eval",
        [
            f"images={bus_set}",
            f"out={tmp_path / 'pred.jsonl'}",
            f"ckpt={tiny_model}",
            "progress=false",
            "plots=false",
        ],
    )
    m = evaluate(cfg)
    assert m["exit_code"] == 3 and m["n_scored"] == 1  # missing.jpg is left out, by name
    assert m["skipped"] == [{"where": "image missing.jpg", "why": "image missing or unreadable"}]
    row = json.loads((tmp_path / "pred.jsonl").read_text())
    assert row["id"] == "bus" and np.isfinite(row["z_pred_m"]) and row["gt_z_m"] == 4.0
    # The largest detection in bus.jpg is a pedestrian ~2/3 of the image tall: a few metres away.
    x0, y0, x1, y1 = row["det_box_xyxy_px"]
    assert (y1 - y0) > 400 and row["det_score"] > 0.5
    assert 1.5 < row["z_box_height_m"] < 8.0


def test_images_kitti_000000(real_dir, tmp_path, tiny_model):
    real = real_dir
    if not (real / "kitti_000000" / "gt.json").is_file():
        pytest.skip("../shared/data/real/kitti_000000 not present (set DEPTH_POSE_REAL_DATA)")
    from depth_pose.evaluate import evaluate

    cfg = compose(
        "eval",
        [
            f"images={real / 'kitti_000000'}",
            f"out={tmp_path / 'pred.jsonl'}",
            f"ckpt={tiny_model}",
            "progress=false",
            "plots=false",
        ],
    )
    m = evaluate(cfg)
    assert m["exit_code"] == 0 and m["n_scored"] == 1
    row = json.loads((tmp_path / "pred.jsonl").read_text())
    assert row["id"] == "000000" and row["gt_z_m"] == pytest.approx(8.41) and row["iou"] >= 0.5
    assert np.isfinite(row["z_pred_m"]) and row["abs_err_m"] == pytest.approx(
        abs(row["z_pred_m"] - 8.41), abs=1e-3
    )
    # The pinhole baselines on the YOLO keypoints land near the truth (8.41 m): the detection is the right
    # person.
    assert abs(row["z_box_height_m"] - 8.41) < 1.5 and abs(row["z_shoulder_hip_m"] - 8.41) < 2.0


def test_default_model_on_kitti_dev(real_dir, tmp_path):
    """The shipped model on the 178 KITTI dev pedestrians: every person predicted, error well below naive."""
    from depth_pose.predictor import DEFAULT_MODEL

    real = real_dir
    if not (real / "kitti_pedestrians_dev.jsonl").is_file():
        pytest.skip("../shared/data/real/kitti_pedestrians_dev.jsonl not present")
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"shipped default model {DEFAULT_MODEL} not built yet (make model)")
    from depth_pose.evaluate import evaluate

    cfg = compose(
        "eval",
        [
            f"keypoints={real / 'kitti_pedestrians_dev.jsonl'}",
            f"out={tmp_path / 'pred.jsonl'}",
            "progress=false",
        ],
    )
    m = evaluate(cfg)
    assert m["exit_code"] == 0 and m["n_scored"] == 178 and m["methods"]["model"]["n"] == 178
    assert m["methods"]["shoulder_hip"]["n"] == 161
    assert m["methods"]["shoulder_hip"]["ale_m"] == pytest.approx(1.15, abs=0.01)
    model = m["methods"]["model"]
    assert model["ale_m"] < 1.5 and model["delta_1.25"] > 0.85
    assert 0.4 < model["cov_1sigma"] < 0.95


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"gt_z_m": -8.41}, r"people\[0\]: gt_z_m must be a positive finite number .* got -8\.41"),
        ({"gt_z_m": "abc"}, r"people\[0\]: gt_z_m must be a positive finite number .* got 'abc'"),
        (
            {"gt_z_m": None, "person_depth_m_approx": True},
            r"people\[0\]: person_depth_m_approx must be .* got True",
        ),
        ({"bbox_xyxy_px": [1, 2, 3]}, r"people\[0\]: bbox_xyxy_px must have shape \(4,\)"),
    ],
)
def test_a_bad_label_in_gt_json_is_named_not_dropped(tmp_path, change, pattern):
    """A label that is not a depth (or a box that is not four numbers) was read as "no label": the person
    silently left the scores. It is an unusable input, named."""
    from depth_pose.eval.images import read_image_set
    from depth_pose.eval.io import EvalInputError

    person = {"gt_z_m": 8.41, "bbox_xyxy_px": [10, 20, 60, 200]} | change
    gt = {"image": "a.png", "K": [[700, 0, 600], [0, 700, 180], [0, 0, 1]], "people": [person]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.raises(EvalInputError, match=pattern):
        read_image_set(tmp_path)
    (tmp_path / "gt.json").write_text(json.dumps(gt | {"people": [{"gt_z_m": None}]}))
    assert np.isnan(read_image_set(tmp_path)[0].gt_z)  # null: an unlabelled person, as before
