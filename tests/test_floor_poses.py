"""Poses on and near the floor (issue 19): presets inside the joint limits, bodies resting on the floor, the
hybrid sampler drawing every preset at its weight (and the presets' own arms), the dataset id following the
preset files, and the invariance suite's floor group leaving the other poses' samples as they were."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml
from helpers import compose
from omegaconf import OmegaConf
from scipy import stats

from depth_pose.eval.report import invariance_report
from depth_pose.keypoints import INDEX
from generation import dataset
from generation.anny_model import DEFAULT_PRESETS
from generation.body import BodyModel
from generation.pose import FLOOR_POSES, NAMED_POSES, HybridPoseSampler, JointSet, load_presets, named_poses

NEW_PRESETS = (
    "reclining",
    "reclining_leg_up",
    "sit_floor_legs_raised",
    "lying_front",
    "pick_up",
    "climb_step",
)
LYING = ("lying", "lying_front", "lying_side")
SH, HIP = [INDEX["left_shoulder"], INDEX["right_shoulder"]], [INDEX["left_hip"], INDEX["right_hip"]]


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel(n_bodies=8, seed=5)


@pytest.fixture(scope="module")
def exact(body) -> dict[str, torch.Tensor]:
    """Keypoints (17, 3) of every preset exactly (no jitter, no interpolation) on body 0, by name."""
    names = sorted(HybridPoseSampler().presets)
    b = named_poses(names, 1, torch.Generator().manual_seed(0), jitter_deg=0.0, interp_max=0.0)
    posed = body.pose(torch.zeros(len(b), dtype=torch.long), b)
    assert float(torch.cat((posed.keypoints, posed.extra_points), 1)[..., 2].amin(1).abs().max()) < 1e-5
    return dict(zip(names, posed.keypoints))


def test_every_preset_file_is_inside_the_joint_limits():
    """The raw YAML values of every preset (old and new) are inside the limits (the root rotates freely)."""
    J = JointSet.load()
    files = sorted(DEFAULT_PRESETS.glob("*.yaml"))
    assert {f.stem for f in files} >= set(NEW_PRESETS) | {"lying", "sit_cross", "kneel"}
    for f in files:
        spec = yaml.safe_load(f.read_text())
        assert f.read_text().startswith("# "), f"{f.name}: starts with a one-line comment saying what it is"
        for joint, v in spec["angles"].items():
            if joint == "root":
                continue
            for t in [joint] if joint in J.names else [f"{joint}_L", f"{joint}_R"]:
                i = J.index(t)
                a = torch.tensor([float(x) for x in v])
                assert bool(((a >= J.lo[i]) & (a <= J.hi[i])).all()), f"{f.name}: {t} {v} outside the limits"


def test_out_of_limit_preset_is_refused(tmp_path):
    shutil.copytree(DEFAULT_PRESETS, tmp_path / "p")
    (tmp_path / "p" / "bad.yaml").write_text("name: bad\nangles:\n  knee: [170, 0, 0]\n")
    with pytest.raises(
        ValueError, match=r"bad.yaml: angles of \['knee_L', 'knee_R'\] outside the joint limits"
    ):
        load_presets(JointSet.load(), tmp_path / "p")


def test_sampled_floor_presets_stay_inside_the_limits():
    """After interpolation, jitter and the clamp, every non-root angle of every preset draw is inside."""
    s = HybridPoseSampler(p_preset=1.0, jitter_deg=10.0)
    b = s.sample(3000, torch.Generator().manual_seed(3))
    J, a = s.joints, b.angles_deg
    keep = torch.ones(len(J.names), dtype=torch.bool)
    keep[J.index("root")] = False
    assert bool(((a >= J.lo) & (a <= J.hi))[:, keep].all())
    assert set(b.preset) == set(s.preset_names)


def test_sampler_draws_every_preset_at_its_weight():
    """Equal by default; ``preset_weights`` sets the shares (chi-square; a wrong hypothesis is rejected)."""
    g = torch.Generator().manual_seed(11)
    s = HybridPoseSampler(p_preset=1.0)
    assert set(NEW_PRESETS) <= set(s.preset_names)
    counts = np.array([sum(p == k for p in s.sample(6000, g).preset) for k in s.preset_names])
    assert stats.chisquare(counts).pvalue > 1e-3, counts
    w = {k: 3.0 if k in NEW_PRESETS else 1.0 for k in s.preset_names}
    sw = HybridPoseSampler(p_preset=1.0, preset_weights=w)
    counts = np.array([sum(p == k for p in sw.sample(6000, g).preset) for k in sw.preset_names])
    expected = np.array([w[k] for k in sw.preset_names]) / sum(w.values()) * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-3, counts
    assert stats.chisquare(counts).pvalue < 1e-6  # equal shares are rejected: the test can fail


def test_sampler_keeps_the_arms_a_preset_sets():
    """``reclining`` sets the arms (propped on the elbows): its draws keep them (jittered), never hands up;
    a preset without arms gets the random arms."""
    g = torch.Generator().manual_seed(5)
    up = HybridPoseSampler(p_preset=1.0, p_hands_up=1.0).sample(3000, g)
    rec = torch.tensor([p == "reclining" for p in up.preset])
    squat = torch.tensor([p == "squat" for p in up.preset])
    assert rec.sum() > 50 and squat.sum() > 50
    assert not bool(up.tags["hands_up"][rec].any()) and bool(up.tags["hands_up"][squat].all())
    s = HybridPoseSampler(p_preset=1.0, p_hands_up=0.0)
    b = s.sample(3000, g)
    sh = s.joints.index("shoulder_L")
    rec = torch.tensor([p == "reclining" for p in b.preset])
    squat = torch.tensor([p == "squat" for p in b.preset])
    assert float((b.angles_deg[rec, sh, 0] - -48.0).abs().median()) < 12.0  # interpolation: up to half way
    assert float(b.angles_deg[rec, sh, 0].std()) < 15.0 < float(b.angles_deg[squat, sh, 0].std())


def test_named_poses_know_the_floor_poses():
    g = torch.Generator().manual_seed(0)
    b = named_poses(list(FLOOR_POSES), 2, g)
    assert b.preset == [n for n in FLOOR_POSES for _ in range(2)]
    assert set(NEW_PRESETS) <= set(FLOOR_POSES) and not set(FLOOR_POSES) & set(NAMED_POSES)
    with pytest.raises(KeyError, match="unknown named pose 'lying_back'"):
        named_poses(["lying_back"], 1, g)


def test_new_presets_leave_the_old_named_poses_as_they_were(tmp_path):
    """The invariance suite's poses draw the same variants with or without the new preset files (the old
    presets' neighbours and contents are unchanged; the new ones only join the list)."""
    d = tmp_path / "old"
    d.mkdir()
    for f in DEFAULT_PRESETS.glob("*.yaml"):
        if f.stem not in NEW_PRESETS:
            shutil.copy(f, d / f.name)
    now = named_poses(list(NAMED_POSES), 3, torch.Generator().manual_seed(0), jitter_deg=8.0)
    before = named_poses(
        list(NAMED_POSES), 3, torch.Generator().manual_seed(0), jitter_deg=8.0, presets_dir=d
    )
    assert torch.equal(now.angles_deg, before.angles_deg) and now.preset == before.preset
    (d / "sit_cross.yaml").write_text(
        (d / "sit_cross.yaml").read_text().replace("[80, 40, -35]", "[90, 40, -35]")
    )
    edited = named_poses(
        list(NAMED_POSES), 3, torch.Generator().manual_seed(0), jitter_deg=8.0, presets_dir=d
    )
    assert not torch.equal(now.angles_deg, edited.angles_deg)  # sit_floor interpolates toward sit_cross


def test_lying_presets_rest_on_the_floor(exact):
    """Lying on the back / front / side: the lowest keypoint on the floor (the lowest of all 23 points at
    Z = 0), the trunk flat on it (not floating), the back one face up and the front one face down."""
    for name in LYING:
        kp = exact[name]
        z = kp[:, 2]
        assert float(z.min()) < 0.06, name
        assert float(kp[SH + HIP, 2].max()) < 0.6, name
        assert float(z.max()) < 0.7, name
    for name in ("lying", "lying_front"):
        assert float(exact[name][SH + HIP, 2].max()) < 0.2, name
    # the face: supine nose above the shoulders' height, prone nose at or below it
    assert float(exact["lying"][INDEX["nose"], 2] - exact["lying"][SH, 2].mean()) > 0.08
    assert float(exact["lying_front"][INDEX["nose"], 2] - exact["lying_front"][SH, 2].mean()) < 0.0


def test_floor_presets_look_like_their_names(exact):
    z = {n: kp[:, 2] for n, kp in exact.items()}
    hip = {n: float(kp[HIP, 2].mean()) for n, kp in exact.items()}
    # reclining: hips and elbows near the floor, shoulders raised; the leg-up variant lifts the left ankle
    for n in ("reclining", "reclining_leg_up"):
        assert hip[n] < 0.2 and float(z[n][[INDEX["left_elbow"], INDEX["right_elbow"]]].max()) < 0.15
        assert 0.2 < float(exact[n][SH, 2].mean()) < 0.5
    assert (
        float(z["reclining_leg_up"][INDEX["left_ankle"]] - z["reclining_leg_up"][INDEX["right_ankle"]]) > 0.2
    )
    # sitting on the floor with the knees up: hips low, knees well above them
    n = "sit_floor_legs_raised"
    assert hip[n] < 0.2 and float(z[n][[INDEX["left_knee"], INDEX["right_knee"]]].min()) > hip[n] + 0.15
    # picking up: hips high, trunk bent over (shoulders barely above the hips), right hand low
    assert hip["pick_up"] > 0.5 and float(exact["pick_up"][SH, 2].mean()) < hip["pick_up"] + 0.25
    assert float(z["pick_up"][INDEX["right_wrist"]]) < 0.4
    # climbing a step: the left foot 0.15-0.45 m above the standing right foot
    step = float(z["climb_step"][INDEX["left_ankle"]] - z["climb_step"][INDEX["right_ankle"]])
    assert 0.15 < step < 0.45, step


def _id(presets_dir) -> str:
    return dataset.dataset_id(
        compose("generate", ["paths.root_dir=/tmp", f"pose_sampling.presets_dir={presets_dir}"])
    )


def test_dataset_id_follows_the_preset_files(tmp_path):
    """Adding, editing or removing a preset file changes the id; the same files give the same id."""
    d = tmp_path / "presets"
    shutil.copytree(DEFAULT_PRESETS, d)
    first = _id(d)
    assert _id(d) == first
    shutil.copy(d / "lying.yaml", d / "lying_copy.yaml")
    (d / "lying_copy.yaml").write_text((d / "lying.yaml").read_text().replace("name: lying", "name: lying2"))
    added = _id(d)
    assert added != first
    (d / "lying_copy.yaml").write_text((d / "lying_copy.yaml").read_text().replace("[5, 0, 0]", "[6, 0, 0]"))
    edited = _id(d)
    assert edited not in (first, added)
    (d / "lying_copy.yaml").unlink()
    assert _id(d) == first
    # a mixture's hybrid component reads presets too
    cfg = compose("generate", ["paths.root_dir=/tmp", "pose_sampling=mixture"])
    OmegaConf.update(cfg, "pose_sampling.components.hybrid.presets_dir", str(d))
    before = dataset.dataset_id(cfg)
    shutil.copy(d / "lying.yaml", d / "zz.yaml")
    (d / "zz.yaml").write_text((d / "lying.yaml").read_text().replace("name: lying", "name: zz"))
    assert dataset.dataset_id(cfg) != before


def _suite_cfg(floor: list[str]):
    return OmegaConf.create(
        {
            "seed": 917,
            "n_bodies": 3,
            "poses": ["standing", "lying"],
            "floor_poses": floor,
            "n_per_pose": 2,
            "jitter_deg": 8.0,
            "depths_m": [5.0, 15.0],
            "yaws_deg": [0.0, 90.0],
            "hfov_deg": 60.0,
            "img_w": 1280,
            "img_h": 720,
            "cam_height_m": 1.5,
            "noise": OmegaConf.to_container(compose("eval").invariance.noise, resolve=True),
        }
    )


def test_invariance_floor_group_leaves_the_other_poses_as_they_were():
    """Adding the floor group appends rows made from their own draws: the other poses' rows are the same
    bytes; the summary and report keep the other poses' numbers and add the floor group's."""
    from depth_pose.suites.invariance import build_suite, summarise

    old = build_suite(_suite_cfg([]), progress=False)
    new = build_suite(_suite_cfg(["reclining", "lying_front", "lying"]), progress=False)  # lying: old group
    n = len(old["pose"])
    assert len(new["pose"]) == n + 2 * 2 * 2 * 2 and set(new["pose"][n:]) == {"reclining", "lying_front"}
    for k, v in old.items():
        assert np.array_equal(new[k][:n], v, equal_nan=v.dtype.kind == "f"), k
    assert np.isfinite(new["keypoints"][n:, :, :2]).any()
    # the report: the other poses' numbers, then the floor group on its own
    z = new["z_true"] * 1.05
    sel = np.arange(len(z)) < n
    res = summarise(
        {k: v[sel] for k, v in new.items()}, z[sel], z[sel] * 0.1, z[sel] * 1.5, ["standing", "lying"]
    )
    floor = summarise({k: v[~sel] for k, v in new.items()}, z[~sel], z[~sel] * 0.1, z[~sel], ["reclining"])
    res["per_pose"].update(floor["per_pose"])
    res |= {
        "model": "m",
        "n_samples": len(z),
        "n_bodies": 3,
        "seed": 917,
        "depths_m": [5, 15],
        "yaws_deg": [0],
    }
    res |= {"n_per_pose": 2, "jitter_deg": 8.0, "noise": "x"}
    res["floor"] = {"poses": ["reclining"], "seed": 918} | {
        k: floor[k] for k in ("overall_non_standing", "coverage_1sigma", "coverage_2sigma", "per_depth")
    }
    text = invariance_report(res)
    assert "**Floor poses overall**: model median 5.0%" in text and "**Non-standing non-floor poses**" in text
    assert text.index("| lying |") < text.index("**Floor poses**") < text.index("| reclining |")
