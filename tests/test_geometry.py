"""depth_pose.geometry: projection, K^-1, intrinsics transforms, camera rotation conventions."""

from __future__ import annotations

import math

import pytest
import torch

from depth_pose import geometry


def test_project_known_point():
    K = geometry.intrinsics(1000.0, 800.0, 640.0, 360.0)
    p = torch.tensor([[[1.0, -0.5, 10.0], [0.0, 0.0, 2.0], [0.0, 0.0, -1.0]]])
    px = geometry.project(p, K[None])
    assert px[0, 0].tolist() == pytest.approx([640 + 1000 * 0.1, 360 - 800 * 0.05])
    assert px[0, 1].tolist() == pytest.approx([640.0, 360.0])
    assert torch.isnan(px[0, 2]).all()  # behind the camera


def test_normalise_pixels_inverts_project_with_skew():
    g = torch.Generator().manual_seed(0)
    K = geometry.intrinsics(
        torch.rand(5, generator=g) * 1000 + 300,
        torch.rand(5, generator=g) * 1000 + 300,
        torch.rand(5, generator=g) * 600,
        torch.rand(5, generator=g) * 400,
    )
    K[:, 0, 1] = torch.randn(5, generator=g)  # skew
    p = torch.randn(5, 17, 3, generator=g)
    p[..., 2] = p[..., 2].abs() * 10 + 1
    rays = geometry.normalise_pixels(geometry.project(p, K), K)
    torch.testing.assert_close(rays, p[..., :2] / p[..., 2:], atol=1e-5, rtol=1e-5)
    back = geometry.backproject(geometry.project(p, K), p[..., 2], K)
    torch.testing.assert_close(back, p, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("scale,offset", [(0.5, (0.0, 0.0)), (2.0, (-100.0, 30.0)), (0.37, (12.5, -7.0))])
def test_transform_intrinsics_agrees_with_transform_pixels(scale, offset):
    K = geometry.intrinsics(900.0, 910.0, 620.0, 187.0)
    p = torch.tensor([[[0.3, -0.2, 5.0], [-1.0, 0.8, 12.0], [0.0, 0.0, 3.0]]])
    px = geometry.project(p, K[None])
    K2 = geometry.transform_intrinsics(K, scale, offset)
    torch.testing.assert_close(geometry.project(p, K2[None]), geometry.transform_pixels(px, scale, offset))


def test_camera_rotation_tilt_sign_and_level():
    zero = torch.tensor(0.0)
    R = geometry.camera_rotation(zero, zero)
    # Level camera looks along world +Y; world up (+Z) is camera -y (y down).
    torch.testing.assert_close(R @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(R @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 0.0]))
    # Positive tilt looks up: a point ahead and above the horizon moves to the image centre.
    tilt = torch.tensor(math.radians(20.0))
    Rt = geometry.camera_rotation(tilt, zero)
    ahead_up = torch.tensor([0.0, math.cos(tilt), math.sin(tilt)])
    torch.testing.assert_close(Rt @ ahead_up, torch.tensor([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)
    # ... and a level point ahead then appears below the centre (camera y > 0).
    assert (Rt @ torch.tensor([0.0, 1.0, 0.0]))[1] > 0.3
    # Roll turns about the optical axis only.
    Rr = geometry.camera_rotation(zero, torch.tensor(0.1))
    torch.testing.assert_close(Rr @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(Rt @ Rt.T, torch.eye(3), atol=1e-6, rtol=0)


def test_camera_rotation_closed_form_equals_the_product():
    g = torch.Generator().manual_seed(0)
    tilt, roll = (torch.rand(2, 100, generator=g) - 0.5) * 2.0
    product = geometry.rot_z(roll) @ geometry.rot_x(-tilt) @ geometry.WORLD_TO_LEVEL_CAMERA
    torch.testing.assert_close(geometry.camera_rotation(tilt, roll), product, atol=1e-6, rtol=0)
    pan = torch.zeros(100)  # the pan variant goes through the product and agrees at pan = 0
    torch.testing.assert_close(geometry.camera_rotation(tilt, roll, pan), product, atol=1e-6, rtol=0)


def test_intrinsics_from_hfov():
    K = geometry.intrinsics_from_hfov(90.0, 1280, 720)
    assert K[0, 0].item() == pytest.approx(640.0, rel=1e-5)
    assert K[1, 1].item() == pytest.approx(640.0, rel=1e-5)
    assert (K[0, 2].item(), K[1, 2].item()) == (640.0, 360.0)
    assert geometry.hfov_from_intrinsics(K, 1280).item() == pytest.approx(90.0, rel=1e-5)
    # KITTI: fx 721 on 1242 px -> 81.45 degrees.
    assert geometry.focal_from_hfov(81.45, 1242).item() == pytest.approx(721.0, rel=2e-3)
    assert geometry.check_intrinsics(K) is None
    assert "focal" in geometry.check_intrinsics(geometry.intrinsics(-1.0, 1.0, 0.0, 0.0))
