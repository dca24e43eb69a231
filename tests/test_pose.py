"""Pose samplers (generation/pose.py): distributions, limits, tag frequencies, tags vs geometry, mapping."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from depth_pose.keypoints import INDEX, L_ANKLE, L_HIP, L_WRIST, NOSE, R_ANKLE, R_HIP, R_WRIST
from generation.body import BodyModel
from generation.pose import (
    NAMED_POSES,
    HybridPoseSampler,
    JointSet,
    MixturePoseSampler,
    NormalPoseSampler,
    UniformPoseSampler,
    named_poses,
)
from generation.types import PoseBatch

L_KNEE = INDEX["left_knee"]


@pytest.fixture(scope="module")
def body() -> BodyModel:
    torch.set_num_threads(2)
    return BodyModel(n_bodies=64, seed=5)


@pytest.fixture(scope="module")
def hybrid_batch() -> PoseBatch:
    return HybridPoseSampler().sample(20000, torch.Generator().manual_seed(7))


def _varying(joints: JointSet):
    return [(j, k) for j in range(len(joints.names)) for k in range(3) if joints.hi[j, k] > joints.lo[j, k]]


def test_uniform_goodness_of_fit_and_limits():
    s = UniformPoseSampler()
    a = s.sample(4000, torch.Generator().manual_seed(0)).angles_deg
    J = s.joints
    assert ((a >= J.lo) & (a <= J.hi)).all()
    pvals = [
        stats.kstest(
            a[:, j, k].double().numpy(), stats.uniform(J.lo[j, k], J.hi[j, k] - J.lo[j, k]).cdf
        ).pvalue
        for j, k in _varying(J)
    ]
    assert len(pvals) > 40 and min(pvals) > 1e-4, min(pvals)
    # a wrong hypothesis (normal) is rejected: the test can fail
    j, k = _varying(J)[0]
    mid, sd = 0.5 * (J.lo[j, k] + J.hi[j, k]), 0.2 * (J.hi[j, k] - J.lo[j, k])
    assert stats.kstest(a[:, j, k].numpy(), stats.norm(mid, sd).cdf).pvalue < 1e-6


def test_normal_goodness_of_fit_and_limits():
    s = NormalPoseSampler(sigma_frac=0.3)
    a = s.sample(4000, torch.Generator().manual_seed(1)).angles_deg
    J = s.joints
    assert ((a >= J.lo) & (a <= J.hi)).all()
    pvals = []
    for j, k in _varying(J):
        lo, hi = J.lo[j, k].item(), J.hi[j, k].item()
        mu, sd = 0.5 * (lo + hi), 0.3 * (hi - lo)
        dist = stats.truncnorm((lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd)
        pvals.append(stats.kstest(a[:, j, k].double().numpy(), dist.cdf).pvalue)
    assert min(pvals) > 1e-4, min(pvals)


def test_rotations_are_rotations_and_follow_angles():
    s = UniformPoseSampler()
    b = s.sample(500, torch.Generator().manual_seed(2))
    R = b.rotations
    eye = torch.eye(3).expand_as(R)
    assert torch.allclose(R @ R.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(R.shape[:2]), atol=1e-5)
    assert torch.allclose(s.joints.rotations(b.angles_deg), R)
    assert b.bone_names == s.joints.bones and b.joint_names == s.joints.names


def test_hybrid_tag_frequencies(hybrid_batch):
    s = HybridPoseSampler()
    b, n = hybrid_batch, len(hybrid_batch)
    use_preset = torch.tensor([p != "" for p in b.preset])

    def check(count: int, trials: int, p: float) -> None:
        assert stats.binomtest(count, trials, p).pvalue > 1e-3, (count, trials, p)

    check(int(use_preset.sum()), n, s.p_preset)
    check(int(b.tags["walk"].sum()), n, (1 - s.p_preset) * (1 - s.p_both_walk))
    check(int(b.tags["both_walk"].sum()), n, (1 - s.p_preset) * s.p_both_walk)
    check(int(b.tags["spine_turn"].sum()), n, s.p_spine_turn)
    check(int(b.tags["head_turn"].sum()), n, s.p_head_turn)
    allowed = torch.tensor([p == "" or s.presets[p].hands_up for p in b.preset])
    check(int(b.tags["hands_up"][allowed].sum()), int(allowed.sum()), s.p_hands_up)
    assert not b.tags["hands_up"][~allowed].any()
    assert not (b.tags["walk"] & use_preset).any() and not (b.tags["walk"] & b.tags["both_walk"]).any()
    # presets equally likely by default
    counts = torch.tensor([sum(p == k for p in b.preset) for k in s.preset_names])
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    J = s.joints
    no_root = torch.ones(len(J.names), dtype=torch.bool)
    no_root[J.index("root")] = False
    a = b.angles_deg[:, no_root]
    assert ((a >= J.lo[no_root] - 1e-4) & (a <= J.hi[no_root] + 1e-4)).all()


def test_hybrid_configured_probabilities_are_used():
    s = HybridPoseSampler(p_preset=0.0, p_both_walk=1.0, p_spine_turn=0.0, p_hands_up=1.0, p_head_turn=1.0)
    b = s.sample(500, torch.Generator().manual_seed(3))
    assert b.tags["both_walk"].all() and b.tags["hands_up"].all() and b.tags["head_turn"].all()
    assert not b.tags["walk"].any() and not b.tags["spine_turn"].any() and all(p == "" for p in b.preset)


def test_hybrid_tags_match_geometry(body, hybrid_batch):
    b = hybrid_batch
    n = len(b)
    bi = torch.randint(len(body.shapes), (n,), generator=torch.Generator().manual_seed(8))
    kp = body.pose(bi, b).keypoints
    hu = b.tags["hands_up"]
    above = (kp[:, L_WRIST, 2] > kp[:, NOSE, 2]) & (kp[:, R_WRIST, 2] > kp[:, NOSE, 2])
    assert hu.sum() > 1000 and above[hu].all(), (
        f"{int((~above[hu]).sum())} hands_up samples with a wrist below the nose"
    )
    assert above[~hu].float().mean() < 0.1
    hip = 0.5 * (kp[:, L_HIP, 2] + kp[:, R_HIP, 2])

    def mean_hip(name: str) -> float:
        m = torch.tensor([p == name for p in b.preset])
        assert m.sum() > 200
        return hip[m].mean().item()

    standing = mean_hip("standing")
    for name in ("squat", "crouch", "kneel", "kneel_both", "sit_heels", "sit_chair", "sit_floor", "lying"):
        assert mean_hip(name) < standing - 0.15, name
    sep = (kp[:, L_ANKLE, 1] - kp[:, R_ANKLE, 1]).abs()
    stand = torch.tensor([p == "standing" for p in b.preset])
    assert sep[b.tags["walk"]].mean() > sep[stand].mean() + 0.15


def test_anatomical_mapping_directions(body):
    """One joint at a time: flexion/abduction/rotation move the limbs the anatomical way, on both sides."""
    J = JointSet.load()

    def kp(**angles):
        a = torch.zeros(1, len(J.names), 3)
        a[0] = J.relaxed
        for name, v in angles.items():
            a[0, J.index(name)] = torch.tensor(v, dtype=torch.float32)
        pb = PoseBatch(J.bones, J.rotations(a), J.names, a, "t", [""])
        return body.keypoints23(torch.tensor([0]), pb)[0]

    rest = kp()
    for side, knee, wrist, s in (("L", L_KNEE, L_WRIST, 1.0), ("R", L_KNEE + 1, R_WRIST, -1.0)):
        k = kp(**{f"hip_{side}": [90, 0, 0]})
        assert k[knee, 1] < rest[knee, 1] - 0.3  # hip flexion: knee forward (-Y)
        k = kp(**{f"hip_{side}": [0, 40, 0]})
        assert s * (k[knee, 0] - rest[knee, 0]) > 0.1  # hip abduction: knee outward
        k = kp(**{f"knee_{side}": [90, 0, 0]})
        ankle = L_ANKLE if side == "L" else R_ANKLE
        assert k[ankle, 1] > rest[ankle, 1] + 0.3  # knee flexion: ankle backward
        k = kp(**{f"shoulder_{side}": [0, 90, 0]})
        sh = 5 if side == "L" else 6
        assert abs(k[wrist, 2] - k[sh, 2]) < 0.15 and s * (k[wrist, 0] - k[sh, 0]) > 0.4  # arm sideways
        k = kp(**{f"shoulder_{side}": [90, 0, 0], f"elbow_{side}": [0, 0, 0]})
        assert k[wrist, 1] < k[sh, 1] - 0.4 and abs(k[wrist, 2] - k[sh, 2]) < 0.15  # arm forward
        k = kp(**{f"shoulder_{side}": [0, 0, 0], f"elbow_{side}": [90, 0, 0]})
        assert k[wrist, 1] < k[sh, 1] - 0.15  # elbow flexion: forearm forward
    k = kp(head=[0, 0, 35], neck01=[0, 0, 15], neck02=[0, 0, 15], neck03=[0, 0, 15])
    assert k[NOSE, 0] > rest[NOSE, 0] + 0.05  # turn left: nose to +X
    k = kp(spine03=[20, 0, 0], spine02=[18, 0, 0], spine01=[17, 0, 0])
    assert k[NOSE, 1] < rest[NOSE, 1] - 0.1  # trunk flexion: head forward
    k = kp(spine03=[0, 8, 0], spine02=[0, 8, 0], spine01=[0, 8, 0])
    assert k[NOSE, 0] > rest[NOSE, 0] + 0.05  # side bend to the left


def test_symmetric_angles_give_mirrored_skeleton(body):
    b = named_poses(["squat"], 1, torch.Generator().manual_seed(0), jitter_deg=0.0, interp_max=0.0)
    kp = body.pose(torch.tensor([0]), b).keypoints[0]
    from depth_pose.keypoints import FLIP_INDEX

    mirrored = kp[list(FLIP_INDEX)] * torch.tensor([-1.0, 1.0, 1.0])
    assert (kp - mirrored).norm(dim=-1).max() < 0.01


def test_named_poses_are_variants(body):
    g = torch.Generator().manual_seed(4)
    b = named_poses(list(NAMED_POSES), 6, g, jitter_deg=5.0)
    assert len(b) == 60 and b.preset == [n for n in NAMED_POSES for _ in range(6)]
    exact = named_poses(list(NAMED_POSES), 1, g, jitter_deg=0.0, interp_max=0.0).angles_deg
    for i, _ in enumerate(NAMED_POSES):
        v = b.angles_deg[6 * i : 6 * i + 6]
        assert (v - v[:1]).abs().amax() > 1.0  # variants, not copies
        assert (v - exact[i]).abs().mean() < 15.0  # ... of the named pose
    assert b.tags["hands_up"][[n == "hands_up" for n in b.preset]].all()
    kp = body.pose(torch.zeros(60, dtype=torch.long), b).keypoints
    hip = 0.5 * (kp[:, L_HIP, 2] + kp[:, R_HIP, 2]).reshape(10, 6).mean(1)
    assert hip[NAMED_POSES.index("lying")] < 0.35 and hip[NAMED_POSES.index("standing")] > 0.8
    with pytest.raises(KeyError):
        named_poses(["cartwheel"], 1, g)


@pytest.mark.parametrize("name", ["uniform", "normal", "hybrid", "mixture"])
def test_configs_instantiate(name):
    from helpers import compose
    from hydra.utils import instantiate

    cfg = compose("generate", [f"pose_sampling={name}"])
    s = instantiate(cfg.pose_sampling)
    assert s.name == cfg.pose_sampling.name == name
    b = s.sample(16, torch.Generator().manual_seed(0))
    assert b.strategy == name and b.rotations.shape[:2] == (16, len(b.bone_names)) and len(b.preset) == 16


def test_mixture_shares_and_components():
    """Mixture rows come from their component with the configured weights (binomial test on the hybrid share:
    every hybrid pose has a preset or a gait tag, no uniform pose has either) and keep its tags."""
    from helpers import compose
    from hydra.utils import instantiate

    cfg = compose(
        "generate",
        ["pose_sampling=mixture", "pose_sampling.weights.hybrid=0.6", "pose_sampling.weights.uniform=0.4"],
    )
    s = instantiate(cfg.pose_sampling)
    n = 20000
    b = s.sample(n, torch.Generator().manual_seed(3))
    hybrid_rows = torch.tensor([p != "" for p in b.preset]) | b.tags["walk"] | b.tags["both_walk"]
    k = int(hybrid_rows.sum())
    assert stats.binomtest(k, n, 0.6).pvalue > 1e-3, k / n
    # Hands up only on hybrid rows, with hybrid's rate there (0.3 of the rows that allow it).
    assert (
        not (b.tags["hands_up"] & ~hybrid_rows).any()
        and 0.2 < b.tags["hands_up"][hybrid_rows].float().mean() < 0.35
    )
    # Uniform rows: angles uniform within the limits (knee flexion).
    j = s.joints.index("knee_L")
    ang = b.angles_deg[~hybrid_rows, j, 0]
    lo, hi = float(s.joints.lo[j, 0]), float(s.joints.hi[j, 0])
    assert stats.kstest(ang.numpy(), stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
    b2 = s.sample(n, torch.Generator().manual_seed(3))
    assert torch.equal(b.rotations, b2.rotations) and b.preset == b2.preset  # deterministic per seed
    with pytest.raises(ValueError, match="unknown components"):
        MixturePoseSampler({"uniform": UniformPoseSampler()}, weights={"hybrid": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        MixturePoseSampler({"uniform": UniformPoseSampler()}, weights={"uniform": 0.0})
    with pytest.raises(ValueError, match="empty"):
        MixturePoseSampler({})


def test_bad_config_values():
    with pytest.raises(ValueError, match="p_hands_up"):
        HybridPoseSampler(p_hands_up=1.5)
    with pytest.raises(ValueError, match="name"):
        UniformPoseSampler(name="normal")
    with pytest.raises(FileNotFoundError):
        JointSet.load("/nonexistent/limits.yaml")


def test_contact_sheet_png(body, tmp_path):
    from PIL import Image

    from generation.contact_sheet import contact_sheet

    out = contact_sheet(
        body,
        {"uniform": UniformPoseSampler(), "hybrid": HybridPoseSampler()},
        tmp_path / "sheet.png",
        n_per=4,
        seed=1,
    )
    im = Image.open(out)
    assert im.size[0] > 400 and im.size[1] > 150


def test_empty_batches():
    g = torch.Generator().manual_seed(0)
    for s in (UniformPoseSampler(), NormalPoseSampler(), HybridPoseSampler()):
        b = s.sample(0, g)
        assert len(b) == 0 and b.preset == [] and all(len(v) == 0 for v in b.tags.values())


def _tensors(x, seen=None):
    """Every tensor held by ``x`` (attributes, containers, nested samplers and dataclasses)."""
    seen = set() if seen is None else seen
    if id(x) in seen:
        return
    seen.add(id(x))
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v, seen)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v, seen)
    elif hasattr(x, "__dict__") and type(x).__module__.startswith("generation"):
        for v in vars(x).values():
            yield from _tensors(v, seen)


@pytest.mark.parametrize("name", ["uniform", "normal", "hybrid", "mixture"])
def test_sampler_follows_its_generators_device(name):
    """pose_device=device (a GPU's generator draws the poses there): ``to`` moves every table a sampler holds,
    a mixture's components too, and leaves the original on the CPU; drawing with a CPU generator afterwards
    gives the same poses as before (the CPU path is unchanged)."""
    import copy

    from helpers import compose
    from hydra.utils import instantiate

    s = instantiate(compose("generate", [f"pose_sampling={name}"]).pose_sampling)
    a = s.sample(300, torch.Generator().manual_seed(4))
    held = list(_tensors(s))
    assert held and all(t.device.type == "cpu" for t in held)
    m = copy.deepcopy(s).to("meta")
    moved = list(_tensors(m))
    assert m.device.type == "meta" and len(moved) >= len(held)
    assert all(t.device.type == "meta" for t in moved), [t.shape for t in moved if t.device.type != "meta"]
    assert all(t.device.type == "cpu" for t in _tensors(s))
    b = s.to("cpu").sample(300, torch.Generator().manual_seed(4))
    assert torch.equal(a.rotations, b.rotations) and a.preset == b.preset
    assert all(torch.equal(a.tags[k], b.tags[k]) for k in a.tags)


@pytest.mark.parametrize("name", ["uniform", "normal"])
def test_sampler_draws_on_another_device(name):
    """The GPU path's logic on the CPU: a sampler moved to another device (``meta``: shapes only, and any CPU
    tensor mixed in raises as CUDA would) draws and builds its rotations there under the default-device
    context that ``sample`` uses. (hybrid / mixture read their preset choices back as data, which meta has
    not; the GPU run checks them against the CPU path's statistics: docs/bench_gpu.md.)"""
    from helpers import compose
    from hydra.utils import instantiate

    s = instantiate(compose("generate", [f"pose_sampling={name}"]).pose_sampling).to("meta")
    with torch.device("meta"):
        angles, preset, tags = s.sample_angles(50, torch.Generator().manual_seed(0))
        batch = s.to_batch(angles, preset, tags)
    assert batch.rotations.device.type == "meta" and batch.rotations.shape[:2] == (50, len(batch.bone_names))
    assert all(t.device.type == "meta" for t in batch.tags.values())
