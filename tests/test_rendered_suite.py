"""The rendered + YOLO test set (issue 19): the builder's pure pieces, the manifest check, the suite."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from depth_pose.suites import rendered as suite
from generation.render import testset as ts

# A standing person in camera axes (x right, y down), metres from the mid-hip, COCO order.
SKELETON_M = np.array(
    [
        [0.0, -0.65, -0.08],
        [-0.03, -0.68, -0.06],
        [0.03, -0.68, -0.06],
        [-0.07, -0.66, 0.0],
        [0.07, -0.66, 0.0],
        [-0.18, -0.45, 0.0],
        [0.18, -0.45, 0.0],
        [-0.22, -0.18, 0.0],
        [0.22, -0.18, 0.0],
        [-0.24, 0.08, 0.0],
        [0.24, 0.08, 0.0],
        [-0.1, 0.0, 0.0],
        [0.1, 0.0, 0.0],
        [-0.1, 0.45, 0.0],
        [0.1, 0.45, 0.0],
        [-0.1, 0.87, 0.0],
        [0.1, 0.87, 0.0],
    ]
)
K0 = np.array([[1000.0, 0.0, 960.0], [0.0, 1000.0, 540.0], [0.0, 0.0, 1.0]])


def person_line(i: int, z: float, group: str, pose: str = "standing", missed: bool = False) -> dict:
    """One line of the set's contract: the skeleton at mid-hip depth ``z`` seen by ``K0`` (exact)."""
    p = SKELETON_M + [0.0, 0.0, z]
    uv = (p @ K0.T)[:, :2] / p[:, 2:3]
    kp = [[None, None, 0.0]] * 17 if missed else [[float(x), float(y), 0.9] for x, y in uv]
    return {
        "id": f"p{i}",
        "group": group,
        "pose": pose,
        "keypoints_xyc": kp,
        "K": K0.tolist(),
        "gt_z_m": z,
        "image_wh": [1920, 1080],
        "pitch_deg": 0.0,
        "roll_deg": 0.0,
        "missed": missed,
        "person_px": float(np.ptp(uv[:, 1])),
        "detector_scale": 1 / 3,
    }


def write_set(folder: Path, lines: list[dict]) -> Path:
    """A set made like the builder makes it: parts -> finalize (gzip + manifest)."""
    work = folder / "work"
    (work / "parts").mkdir(parents=True)
    (work / "parts" / "part_00000.jsonl").write_text("".join(json.dumps(o) + "\n" for o in lines))
    ts.finalize(work, folder / "set", None, "test", {})
    return folder / "set"


# ------------------------------------------------------------------------------------------ builder pieces
def test_crop_view_moves_keypoints_and_principal_point_together():
    rng = np.random.default_rng(0)
    p = rng.uniform([-1, -1, 4], [1, 1, 8], (17, 3))
    K = np.array([[500.0, 0.0, 160.0], [0.0, 500.0, 150.0], [0.0, 0.0, 1.0]])
    uv = (p @ K.T)[:, :2] / p[:, 2:3]
    kp, K2 = ts.crop_view(uv, K, (30, 40, 200, 260))
    np.testing.assert_allclose(kp, (p @ K2.T)[:, :2] / p[:, 2:3], atol=1e-9)
    np.testing.assert_allclose(kp, uv - [30, 40])
    assert K[0, 2] == 160.0  # the input is not modified


def test_cut_box_each_side_and_minimum_size():
    assert ts.cut_box("bottom", 200.4, 320, 300) == (0, 0, 320, 200)
    assert ts.cut_box("top", 100, 320, 300) == (0, 100, 320, 300)
    assert ts.cut_box("right", 150, 320, 300) == (0, 0, 150, 300)
    assert ts.cut_box("left", 150, 320, 300) == (150, 0, 320, 300)
    assert ts.cut_box("bottom", 3, 320, 300) == (0, 0, 320, ts.MIN_CROP_PX)
    assert ts.cut_box("left", 319, 320, 300) == (320 - ts.MIN_CROP_PX, 0, 320, 300)
    with pytest.raises(ValueError, match="cut side"):
        ts.cut_box("middle", 10, 320, 300)


def test_random_cut_truncates_the_person_on_its_side():
    p = SKELETON_M + [0, 0, 5.0]
    K = np.array([[400.0, 0.0, 320.0], [0.0, 400.0, 300.0], [0.0, 0.0, 1.0]])
    uv = (p @ K.T)[:, :2] / p[:, 2:3]
    rng = np.random.default_rng(3)
    sides = set()
    for _ in range(60):
        side, frac, (x0, y0, x1, y1) = ts.random_cut(uv, 640, 600, rng)
        sides.add(side)
        inside = (uv[:, 0] >= x0) & (uv[:, 0] < x1) & (uv[:, 1] >= y0) & (uv[:, 1] < y1)
        assert 0 < inside.sum() < 17, (side, frac)  # some joints kept, some cut off
    assert sides == set(ts.CUT_SIDES)


def test_groups_floor_presets_and_windows():
    g1 = ts.assign_groups(500, np.random.default_rng(ts.part_seed(4)))
    g2 = ts.assign_groups(500, np.random.default_rng(ts.part_seed(4)))
    assert g1 == g2 and set(g1) == set(ts.GROUPS)
    names = [
        "standing",
        "lying",
        "lying_side",
        "sit_floor_legs_raised",
        "sit_chair",
        "kneel",
        "one_knee",
        "squat",
    ]
    assert ts.floor_presets(names) == ["kneel", "lying", "lying_side", "one_knee", "sit_floor_legs_raised"]
    assert ts.detector_scale(1920, 1080) == pytest.approx(1 / 3) and ts.detector_scale(320, 240) == 1.0
    win = ts.person_window(np.array([100.0, 0.0, 140.0, 100.0]), (0.0, 0.0, 640.0, 360.0))
    assert win == (40, 0, 200, 130)  # 1.6 x 100 -> 160 px, centred on (120, 50), cut by the frame's top
    canvas = ts.paste(np.zeros((130, 160, 3), np.uint8), win, (0.0, 0.0, 640.0, 360.0))
    assert canvas.shape == (360, 640, 3) and canvas[0, 40].max() == 0 and canvas[0, 39].min() == 114
    assert ts.person_window(np.array([700.0, 50.0, 740.0, 150.0]), (0.0, 0.0, 640.0, 360.0)) is None


def test_body_seed_is_held_out_from_every_config():
    """No config under conf/ draws anything with the test set's body seed."""
    conf = Path(__file__).resolve().parents[1] / "conf"
    seeds = set()
    for f in conf.rglob("*.yaml"):
        seeds |= {int(m) for m in re.findall(r"seed\w*:\s*(\d+)", f.read_text())}
    assert seeds and ts.BODY_SEED not in seeds


# ------------------------------------------------------------------------------------------ manifest + suite
def test_pair_campaigns_use_other_bodies_and_never_the_test_sets_folder(tmp_path, capsys):
    """Another body seed (training bodies: (exact, YOLO) pairs for a detector model) needs its own --dest,
    and a work folder keeps the seed it started with (a rerun with another seed would mix two banks)."""
    assert ts.main([str(tmp_path / "w"), "--body-seed", "0", "--n", "1"]) == 2
    assert "--dest" in capsys.readouterr().err
    work = tmp_path / "pairs"
    assert ts.check_work_seed(work, 0) and ts.check_work_seed(work, 0)
    assert not ts.check_work_seed(work, ts.BODY_SEED)
    assert "body seed 0" in capsys.readouterr().err
    assert ts.part_seed(3, 0) != ts.part_seed(3)


def test_manifest_refuses_a_modified_file_in_one_line(tmp_path):
    folder = write_set(tmp_path, [person_line(0, 8.0, "full"), person_line(1, 9.0, "floor", "lying")])
    data, manifest = suite.verify(folder)
    assert manifest["people"] == 2 and manifest["groups"]["floor"] == {"people": 1, "missed": 0}
    raw = gzip.decompress(data.read_bytes()).replace(b'"gt_z_m": 8.0', b'"gt_z_m": 8.5')
    data.write_bytes(gzip.compress(raw))
    with pytest.raises(suite.RenderedSetError) as e:
        suite.verify(folder)
    msg = str(e.value)
    assert "\n" not in msg and "sha256" in msg and "does not match its manifest" in msg
    (folder / "manifest.json").unlink()
    with pytest.raises(suite.RenderedSetError, match="cannot read"):
        suite.verify(folder)


def test_finalize_is_byte_identical(tmp_path):
    lines = [person_line(i, 5.0 + i, "full") for i in range(3)]
    a = write_set(tmp_path / "a", lines)
    b = write_set(tmp_path / "b", lines)
    assert (a / ts.DATA_FILE).read_bytes() == (b / ts.DATA_FILE).read_bytes()


def test_summary_numbers():
    z = np.array([10.0, 13.0, 10.5, np.nan])
    sigma = np.array([1.0, 1.0, 1.0, 1.0])
    true = np.array([10.0, 10.0, 10.0, 10.0])
    s = suite.summary(z, sigma, true)
    assert s["n"] == 3 and s["median_rel"] == pytest.approx(0.05) and s["bias_rel"] == pytest.approx(0.05)
    assert s["cover_1sigma"] == pytest.approx(2 / 3) and s["gross_share"] == pytest.approx(1 / 3)
    assert s["gross_outside_2sigma"] == 1.0  # the 30 % error is 3 sigma out


def test_suite_scores_a_tiny_set_per_group_and_pose(tmp_path):
    from depth_pose.predictor import DepthPredictor

    lines = [person_line(i, z, "full") for i, z in enumerate([4.0, 8.0, 12.0, 20.0])]
    lines += [person_line(10 + i, z, "truncated", "walk") for i, z in enumerate([6.0, 9.0])]
    lines += [person_line(20, 7.0, "floor", "lying", missed=True)]
    folder = write_set(tmp_path, lines)
    res = suite.run_rendered(DepthPredictor.load(), {"path": str(folder)}, out_jsonl=tmp_path / "o.jsonl")
    assert res["groups"]["full"]["n"] == 4 and res["groups"]["truncated"]["n"] == 2
    assert res["groups"]["floor"] == {"n": 0, "people": 1, "missed": 1}
    assert res["status"]["missed"] == 1 and sum(res["status"].values()) == 7
    assert set(res["poses"]) == {"full/standing", "truncated/walk", "floor/lying"}
    # 1.52 m of keypoints at 4-20 m and f = 1000 px, a third of that for the detector: 25-127 px
    assert set(res["sizes"]) == {"0-60 px", "60-100 px", "100-200 px"}
    assert sum(r["n"] + r["missed"] for r in res["sizes"].values()) == 7
    assert res["all"]["median_rel"] < 0.3  # the shipped model on exact keypoints of a standing adult
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 7 and rows[-1]["status"] == "missed" and rows[-1]["z_m"] is None
    assert json.loads((tmp_path / "metrics.json").read_text())["groups"]["floor"]["missed"] == 1
    report = suite.rendered_report(res)
    assert "| full |" in report and "| floor/lying |" in report


def test_committed_set_matches_its_manifest():
    data, manifest = suite.verify()
    assert data.stat().st_size <= 10 * 2**20 and manifest["people"] == sum(
        g["people"] for g in manifest["groups"].values()
    )


@pytest.mark.slow
def test_builder_renders_a_tiny_part_and_resumes(tmp_path):
    """Two people through Blender + YOLO; a rerun renders nothing and joins the same part."""
    args = [
        str(tmp_path / "w"),
        "--n",
        "2",
        "--part-size",
        "2",
        "--dest",
        str(tmp_path / "d"),
        "--workers",
        "1",
    ]
    assert ts.main(args) == 0
    part = tmp_path / "w" / "parts" / "part_00000.jsonl"
    objs = [json.loads(x) for x in part.read_text().splitlines()]
    assert objs and all(o["group"] in ts.GROUPS and len(o["keypoints_xyc"]) == 17 for o in objs)
    mtime = part.stat().st_mtime_ns
    assert ts.main(args) == 0 and part.stat().st_mtime_ns == mtime
    suite.verify(tmp_path / "d")
