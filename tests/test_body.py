"""Body bank and fast keypoint path (generation/body.py): exactness against Anny, placement, statures."""

from __future__ import annotations

import pytest
import torch

from depth_pose.keypoints import L_HIP, L_WRIST, NOSE, R_HIP
from generation.anny_model import load_anny
from generation.body import BodyModel
from generation.pose import JointSet, UniformPoseSampler
from generation.types import PoseBatch


@pytest.fixture(scope="module")
def body() -> BodyModel:
    torch.set_num_threads(2)
    return BodyModel(n_bodies=48, seed=3, child_share=0.2, elderly_share=0.2)


def _anny_keypoints(body: BodyModel, bi: torch.Tensor, poses: PoseBatch) -> torch.Tensor:
    """Reference: Anny's full forward (all 13,718 vertices) + COCO regressor, unplaced (B, 23, 3)."""
    model, reg = load_anny()
    H = torch.eye(4).repeat(len(bi), model.bone_count, 1, 1)
    idx = {b: i for i, b in enumerate(model.bone_labels)}
    H[:, [idx[b] for b in poses.bone_names], :3, :3] = poses.rotations
    with torch.no_grad():
        return reg(model(pose_parameters=H, phenotype_kwargs=body.shapes.phenotypes[bi]))


def _random_poses(body: BodyModel, n: int, seed: int) -> PoseBatch:
    """Uniform anatomical poses plus a random whole-body (root) rotation."""
    g = torch.Generator().manual_seed(seed)
    poses = UniformPoseSampler().sample(n, g)
    import roma

    r = poses.bone_names.index("root")
    poses.rotations[:, r] = roma.rotvec_to_rotmat(torch.randn(n, 3, generator=g))
    return poses


def test_fast_path_equals_anny_full_forward(body):
    poses = _random_poses(body, 24, seed=0)
    bi = torch.randint(len(body.shapes), (24,), generator=torch.Generator().manual_seed(1))
    fast = body.keypoints23(bi, poses, chunk=7)  # chunk boundary inside the batch on purpose
    ref = _anny_keypoints(body, bi, poses)
    err = (fast - ref).norm(dim=-1).max().item()
    assert err < 1e-3, f"fast path differs from Anny by {err * 1000:.3f} mm"


def test_fast_path_subset_of_bones_and_generic_rotations(body):
    """A PoseBatch posing only some bones, with arbitrary rotations, in another bone order."""
    import roma

    g = torch.Generator().manual_seed(2)
    bones = ["head", "lowerleg01.R", "upperarm01.L", "spine03"]
    poses = PoseBatch(
        bone_names=bones,
        rotations=roma.rotvec_to_rotmat(0.6 * torch.randn(10, 4, 3, generator=g)),
        joint_names=[],
        angles_deg=torch.zeros(10, 0, 3),
        strategy="t",
        preset=[""] * 10,
    )
    bi = torch.arange(10)
    err = (body.keypoints23(bi, poses) - _anny_keypoints(body, bi, poses)).norm(dim=-1).max().item()
    assert err < 1e-3


def test_pose_placement_and_mesh_agree(body):
    _, reg = load_anny()
    poses = _random_poses(body, 6, seed=4)
    bi = torch.tensor([0, 5, 9, 17, 33, 47])
    posed = body.pose(bi, poses)
    kp23 = torch.cat([posed.keypoints, posed.extra_points], 1)
    assert posed.keypoints.shape == (6, 17, 3) and posed.extra_points.shape == (6, 6, 3)
    assert torch.allclose(kp23[..., 2].amin(1), torch.zeros(6), atol=1e-5)  # lowest point on the floor
    mid = 0.5 * (posed.keypoints[:, L_HIP] + posed.keypoints[:, R_HIP])
    assert mid[:, :2].abs().max() < 1e-5  # mid-hip at X = Y = 0
    v, faces = body.mesh(bi, poses)
    assert v.shape == (6, 13718, 3) and faces.shape[1] == 3 and int(faces.max()) < 13718
    err = (reg({"vertices": v}) - kp23).norm(dim=-1).max().item()
    assert err < 1e-3, f"mesh() placement differs from pose() by {err * 1000:.3f} mm"


def test_rest_pose_faces_minus_y_left_is_plus_x(body):
    posed = body.pose(torch.tensor([0]), body.identity_poses(1))
    kp = posed.keypoints[0]
    assert kp[L_HIP, 0] > 0.03 and kp[L_WRIST, 0] > 0.2  # left = +X
    assert kp[NOSE, 1] < kp[L_HIP, 1] - 0.03  # nose in front of the hips (facing -Y)
    assert abs(kp[:, 2].max().item() - body.shapes.stature_m[0].item()) < 0.2


def test_statures_measured_and_within_range(body):
    lo, hi = body.stature_range_m
    s = body.shapes.stature_m
    assert ((s >= lo) & (s <= hi)).all()
    model, _ = load_anny()
    with torch.no_grad():  # independent measurement: Anny's (unposed) rest mesh, floor to top of head
        coeffs = model.get_phenotype_blendshape_coefficients(
            **{k: body.shapes.phenotypes[:, i] for i, k in enumerate(body.shapes.phenotype_labels)}
        )
        z = model.get_rest_vertices(coeffs)[..., 2]
    assert torch.allclose(z.amax(1) - z.amin(1), s, atol=1e-4)
    age = body.shapes.age_years
    assert ((age >= 5) & (age <= 90)).all() and (age < 18).any() and (age >= 65).any()


def test_stature_distribution_and_clamp():
    bank = BodyModel(n_bodies=400, seed=11, child_share=0.0, elderly_share=0.0)
    s, female = bank.shapes.stature_m, bank.shapes.gender > 0.5
    assert abs(female.float().mean().item() - 0.5) < 0.08
    assert abs(s[~female].mean().item() - 1.75) < 0.02 and abs(s[female].mean().item() - 1.62) < 0.02
    assert 0.05 < s[~female].std().item() < 0.10
    tight = BodyModel(n_bodies=64, seed=1, stature_range_m=(1.6, 1.7))
    assert tight.shapes.stature_m.min() >= 1.6 and tight.shapes.stature_m.max() <= 1.7


def test_bad_inputs(body):
    poses = body.identity_poses(2)
    with pytest.raises(IndexError):
        body.pose(torch.tensor([0, len(body.shapes)]), poses)
    with pytest.raises(ValueError, match="rows"):
        body.pose(torch.tensor([0]), poses)
    bad = PoseBatch(
        bone_names=["finger1-1.L"],
        rotations=torch.eye(3).expand(2, 1, 3, 3),
        joint_names=[],
        angles_deg=torch.zeros(2, 0, 3),
        strategy="t",
        preset=["", ""],
    )
    with pytest.raises(ValueError, match="cannot pose"):
        body.pose(torch.tensor([0, 1]), bad)
    with pytest.raises(ValueError, match="stature_range_m"):
        BodyModel(n_bodies=4, stature_range_m=(1.9, 1.5))


def test_posable_bones_cover_joint_limits(body):
    assert set(JointSet.load().bones) <= set(body.bone_names)


def test_body_config_instantiates():
    from helpers import compose
    from hydra.utils import instantiate

    cfg = compose("generate", ["body.n_bodies=16"])
    bank = instantiate(cfg.body, seed=0, device="cpu")
    assert isinstance(bank, BodyModel) and len(bank.shapes) == 16
    posed = bank.pose(torch.arange(4), UniformPoseSampler().sample(4, torch.Generator().manual_seed(0)))
    assert torch.isfinite(posed.keypoints).all()
