"""Camera sampling (generation/camera.py) and analytic projection (generation/project.py) on a hand-built
standing skeleton (no body model needed)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import STANDING, compose, standing
from hydra.utils import instantiate

from depth_pose import geometry
from generation.camera import CameraSampler
from generation.project import observe, self_occluded
from generation.types import PosedBodies


def camera_cfg(name: str):
    return compose(f"camera/{name}").camera


def test_placement_is_exact_and_ranges_hold():
    n = 20000
    posed = standing(n)
    sampler = instantiate(camera_cfg("default"))
    cams = sampler.sample(posed, torch.Generator().manual_seed(1))
    obs = observe(posed, cams)
    # The target z is the sampled depth, inside the configured range, roughly uniform.
    assert obs.z_m.min() >= 1.0 and obs.z_m.max() <= 60.0
    assert abs(obs.z_m.mean().item() - 30.5) < 0.5  # resampling keeps the sampled depth: still uniform
    hist = torch.histc(obs.z_m, bins=6, min=1.0, max=60.0) / n
    assert (hist - 1 / 6).abs().max() < 0.02
    # Camera centre in the person's frame sits at the sampled height; rotation is orthonormal.
    centre = -(cams.R.transpose(1, 2) @ cams.t[:, :, None])[..., 0]
    torch.testing.assert_close(centre[:, 2], cams.height_m, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        cams.R @ cams.R.transpose(1, 2), torch.eye(3).expand(n, 3, 3), atol=1e-5, rtol=0
    )
    assert cams.height_m.min() >= 0.3 and cams.height_m.max() <= 6.0
    high = (cams.height_m > 3.0).float().mean().item()
    assert 0.05 < high < 0.16  # high_share 0.1 (slightly shifted by resampling)
    assert cams.tilt_deg.min() >= -30 and cams.tilt_deg.max() <= 10 and cams.roll_deg.abs().max() <= 5
    assert cams.hfov_deg.min() >= 30 and cams.hfov_deg.max() <= 100
    torch.testing.assert_close(
        geometry.hfov_from_intrinsics(cams.K, cams.img_w.float()), cams.hfov_deg, atol=1e-3, rtol=0
    )
    # People appear across the whole width, not only centred; the hip stays at the sampled u.
    u = (geometry.project(obs.hip_cam[:, None], cams.K)[:, 0, 0] / cams.img_w).sort().values
    assert u[int(0.05 * n)] < 0.1 and u[int(0.95 * n)] > 0.9
    # Ground point: world floor below the hip, i.e. hip height along the world up axis.
    torch.testing.assert_close(
        (obs.hip_cam - obs.ground_cam).norm(dim=-1), torch.full((n,), 0.92), atol=1e-4, rtol=0
    )
    # Resampling: nearly all cameras see at least min_visible_keypoints in the image.
    inside = obs.gt_visible | self_occluded(obs.keypoints_cam, obs.gt_px)
    assert ((inside.sum(1) >= 6).float().mean().item()) > 0.98
    # ... and a person big enough for a detector (keypoint box >= min_person_px = 16 px).
    box = (obs.gt_px.amax(1) - obs.gt_px.amin(1)).amax(-1)
    assert (box >= 16).float().mean().item() > 0.995


def test_log_uniform_depth_and_bad_ranges():
    sampler = CameraSampler(depth_distribution="log_uniform", min_visible_keypoints=0)
    cams = sampler.sample(standing(20000), torch.Generator().manual_seed(0))
    z = observe(standing(20000), cams).z_m
    # Median of log-uniform on [1, 60] is sqrt(60).
    assert abs(z.median().item() - math.sqrt(60)) < 0.5
    with pytest.raises(ValueError, match="depth_min_m"):
        CameraSampler(depth_min_m=10, depth_max_m=5)
    with pytest.raises(ValueError, match="tilt"):
        CameraSampler(tilt_min_deg=20, tilt_max_deg=10)
    with pytest.raises(ValueError, match="image_sizes"):
        CameraSampler(image_sizes=[[0, 10]])


def test_kitti_camera_is_level_and_upright_person_projects_plausibly():
    n = 2000
    posed = standing(n)
    cams = instantiate(camera_cfg("kitti")).sample(posed, torch.Generator().manual_seed(0))
    obs = observe(posed, cams)
    assert torch.all(cams.img_w == 1242) and torch.all(cams.img_h == 375)
    torch.testing.assert_close(cams.K[:, 0, 0], torch.full((n,), 721.0), atol=0.5, rtol=0)
    # Level camera at 1.65 m: the floor below the hip is 1.65 m below the camera (camera y down).
    torch.testing.assert_close(obs.ground_cam[:, 1], torch.full((n,), 1.65), atol=1e-4, rtol=0)
    torch.testing.assert_close(obs.ground_cam[:, 2], obs.z_m, atol=1e-4, rtol=0)
    # Pinhole: beyond 5 m the ankle->nose pixel extent is f * 1.54 m / z (level camera, upright person).
    far = obs.z_m > 5
    extent = obs.gt_px[far, 15:17, 1].mean(1) - obs.gt_px[far, 0, 1]
    torch.testing.assert_close(extent, 721.0 * 1.54 / obs.z_m[far], rtol=0.03, atol=0.5)


def test_self_occlusion_rules():
    # Seen from behind (person yaw 180 deg: facing the camera's +z): face hidden; from the front: visible.
    n = 2
    posed = standing(n)
    sampler = CameraSampler(
        tilt_min_deg=0,
        tilt_max_deg=0,
        roll_max_deg=0,
        height_min_m=1.5,
        height_max_m=1.5,
        high_share=0,
        depth_min_m=5,
        depth_max_m=5.0001,
        lateral_min=0.5,
        lateral_max=0.5,
        image_sizes=[[1920, 1080]],
        min_visible_keypoints=0,
    )
    cams = sampler.sample(posed, torch.Generator().manual_seed(0))
    deg = math.pi / 180
    Rc = geometry.camera_rotation(torch.zeros(n), torch.zeros(n))
    cams.R = Rc @ geometry.rot_z(torch.tensor([0.0, 180.0]) * deg)
    obs = observe(posed, cams)
    # yaw 0: body faces -Y (towards the level camera looking along +Y) -> face visible.
    assert obs.gt_visible[0, :5].all()
    assert not obs.gt_visible[1, :3].any()  # back view: nose and eyes hidden
    # A wrist behind the torso is hidden in the front view.
    kp = STANDING.clone()
    kp[9] = torch.tensor([0.05, 0.15, 1.1])  # left wrist behind the back, inside the torso outline
    obs2 = observe(
        PosedBodies(keypoints=kp[None].expand(n, 17, 3).clone(), body_index=torch.zeros(n).long()), cams
    )
    assert not obs2.gt_visible[0, 9] and obs2.gt_visible[1, 9]
    assert observe(posed, cams, self_occlusion=False).gt_visible.all()


def test_reused_projection_matches_fresh_one():
    posed = standing(5000)
    cams, proj = CameraSampler().sample(posed, torch.Generator().manual_seed(5), return_projection=True)
    a, b = observe(posed, cams), observe(posed, cams, projection=proj)
    torch.testing.assert_close(a.gt_px, b.gt_px, equal_nan=True, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(a.keypoints_cam, b.keypoints_cam, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.gt_visible, b.gt_visible) and torch.equal(a.z_m, b.z_m)
    # Same seed -> same cameras, with or without the projection returned.
    again = CameraSampler().sample(posed, torch.Generator().manual_seed(5))
    assert torch.equal(again.K, cams.K) and torch.equal(again.t, cams.t)


# --- cameras as they are mounted (issue 15) ---------------------------------------------------------
def test_ceiling_mount_sees_people_inside_the_image_and_below_the_camera():
    n = 20000
    posed = standing(n)
    sampler = instantiate(camera_cfg("ceiling"))
    cams, _ = sampler.sample(posed, torch.Generator().manual_seed(2), return_projection=True)
    obs = observe(posed, cams)
    top = posed.keypoints[..., 2].amax(1)
    # The camera is above everyone it sees (clearance from the config), within its height range.
    assert (cams.height_m >= top + 0.3 - 1e-4).all()
    assert cams.height_m.min() >= 2.2 - 1e-4 and cams.height_m.max() <= 25.0 + 1e-3
    # Looking down 15-75 degrees; steep views are present, not resampled away.
    assert cams.tilt_deg.max() <= -15.0 + 1e-4 and cams.tilt_deg.min() >= -75.0 - 1e-4
    assert (cams.tilt_deg < -50).float().mean() > 0.15
    # People inside the image: the hip projects inside the frame on (nearly) every row.
    hip_px = geometry.project(obs.hip_cam[:, None], cams.K)[:, 0]
    inside = (
        (hip_px[:, 0] >= 0) & (hip_px[:, 0] < cams.img_w) & (hip_px[:, 1] >= 0) & (hip_px[:, 1] < cams.img_h)
    )
    assert inside.float().mean() > 0.97
    assert (obs.gt_visible.sum(1) >= 6).float().mean() > 0.97
    # The camera centre sits at its reported height above the person's floor, and up_cam is R's Z column.
    centre = -(cams.R.transpose(1, 2) @ cams.t[:, :, None])[..., 0]
    torch.testing.assert_close(centre[:, 2], cams.height_m, atol=1e-3, rtol=0)
    torch.testing.assert_close(
        cams.R[:, :, 2], geometry.up_from_pitch_roll(cams.tilt_deg, cams.roll_deg), atol=1e-5, rtol=0
    )


def test_mounted_mixture_draws_every_component_with_its_weight():
    n = 20000
    posed = standing(n)
    mix = instantiate(camera_cfg("mounted"))
    cams, proj = mix.sample(posed, torch.Generator().manual_seed(3), return_projection=True)
    assert len(cams) == n and proj is not None
    # The projection handed on equals projecting again with the returned cameras.
    obs = observe(posed, cams)
    torch.testing.assert_close(proj[1], obs.gt_px, atol=1e-3, rtol=0, equal_nan=True)
    steep = (cams.tilt_deg < -30).float().mean().item()  # only ceiling cameras look this far down
    looking_up = (cams.tilt_deg > 10).float().mean().item()  # only low cameras look up past 10
    rolled = (cams.roll_deg.abs() > 5).float().mean().item()  # only phones roll past 5
    assert 0.25 < steep < 0.45 and 0.02 < looking_up < 0.1 and 0.05 < rolled < 0.15
    assert cams.roll_deg.abs().max() <= 15.0 + 1e-4 and cams.tilt_deg.max() <= 20.0 + 1e-4


def test_camera_mixture_refuses_bad_weights():
    comps = {"a": CameraSampler(), "b": CameraSampler(tilt_min_deg=-60, tilt_max_deg=-20)}
    from generation.camera import CameraMixture

    with pytest.raises(ValueError, match="unknown components"):
        CameraMixture(comps, weights={"a": 1.0, "c": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        CameraMixture(comps, weights={"a": 0.0, "b": 0.0})
    with pytest.raises(ValueError, match="vertical_min and vertical_max"):
        CameraSampler(vertical_min=0.1)
