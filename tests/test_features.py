"""The one keypoint normalisation: camera invariance, visibility, flip, augmentation, version check."""

from __future__ import annotations

import math

import pytest
import torch

from depth_pose import geometry
from depth_pose.features import Augment, Normaliser, Observed, from_config
from depth_pose.keypoints import FLIP_INDEX


def _person(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Random camera-frame 3D keypoints (n, 17, 3) of a ~1.7 m person 4-30 m ahead."""
    g = torch.Generator().manual_seed(seed)
    body = torch.randn(n, 17, 3, generator=g) * torch.tensor([0.25, 0.5, 0.15])
    z = 4 + 26 * torch.rand(n, generator=g)
    x = (torch.rand(n, generator=g) - 0.5) * 0.6 * z
    return body + torch.stack([x, torch.full_like(z, 0.3), z], -1)[:, None, :]


def _xyc(px: torch.Tensor, conf: float = 0.9) -> torch.Tensor:
    return torch.cat([px, torch.full_like(px[..., :1], conf)], -1)


def test_features_do_not_depend_on_the_camera():
    pts = _person()
    K1 = geometry.intrinsics(700.0, 700.0, 620.0, 190.0)
    K2 = geometry.intrinsics(1450.0, 1400.0, 960.0, 540.0)
    norm = Normaliser()
    f1, r1, m1 = norm(_xyc(geometry.project(pts, K1)), K1.expand(len(pts), 3, 3))
    f2, r2, m2 = norm(_xyc(geometry.project(pts, K2)), K2)
    assert f1.shape == (len(pts), norm.in_dim) == (len(pts), 54)
    assert m1.all() and m2.all()
    assert torch.allclose(f1, f2, atol=1e-4) and torch.allclose(r1, r2, atol=1e-5)


def test_depth_scales_log_ref_and_keeps_shape():
    pts = _person()
    K = geometry.intrinsics(700.0, 700.0, 620.0, 190.0)
    norm = Normaliser()
    f1, r1, _ = norm(_xyc(geometry.project(pts, K)), K)
    f2, r2, _ = norm(_xyc(geometry.project(pts * 2.0, K)), K)  # same person, twice as big and far: same image
    assert torch.allclose(f1, f2, atol=1e-4)
    pts_far = pts.clone()
    pts_far[..., 2] *= 3.0  # three times farther (approximately a three times smaller image)
    _, r3, _ = norm(_xyc(geometry.project(pts_far, K)), K)
    # log_ref = -log(size) tracks log depth: about +log 3 (perspective makes it approximate)
    assert torch.allclose(r3 - r1, torch.full_like(r1, math.log(3.0)), atol=0.05)


def test_visibility_uses_threshold_and_nan_and_hides_confidences():
    pts = _person(4)
    K = geometry.intrinsics(700.0, 700.0, 620.0, 190.0)
    kp = _xyc(geometry.project(pts, K))
    kp[0, 3, 2] = 0.05  # below the default threshold 0.1
    kp[1, 5, :2] = float("nan")
    kp[2, :, 2] = 0.5  # another confidence, same mask -> same features
    norm = Normaliser()
    f, _, m = norm(kp, K)
    assert not m[0, 3] and not m[1, 5] and m.sum() == 4 * 17 - 2
    assert torch.isfinite(f).all()
    assert (f[0, 6:8] == 0).all() and (f[1, 10:12] == 0).all()  # masked joints' coordinates are zeroed
    f_ref, _, _ = norm(_xyc(geometry.project(pts, K)), K)
    assert torch.allclose(f[2], f_ref[2]) and torch.allclose(f[3], f_ref[3])
    # all joints unseen and no coordinates: features stay finite, mask all zero
    kp[3, :, 2] = 0.0
    kp[3, :, :2] = float("nan")
    f, r, m = norm(kp, K)
    assert torch.isfinite(f).all() and torch.isfinite(r).all() and not m[3].any()
    # fewer than min_visible confident joints: every finite joint counts (a forced-complete detector's
    # guesses)
    m_hi = Normaliser(threshold=0.6)(kp, K)[2]
    assert m_hi[2].all() and m_hi[1].sum() == 16  # sample 1: 16 finite coordinates
    assert not Normaliser(threshold=0.6, min_visible=0)(kp, K)[2][2].any()


def test_scale_is_bounded_with_one_visible_joint():
    K = geometry.intrinsics(700.0, 700.0, 620.0, 190.0)
    kp = _xyc(geometry.project(_person(2), K))
    kp[:, 1:, :2] = float("nan")  # one joint left, nothing to guess from
    f, r, m = Normaliser()(kp, K)
    assert m[:, 0].all() and m.sum() == 2
    assert torch.isfinite(f).all() and (r <= -math.log(1e-3) + 1e-4).all()  # log_ref = -log(max(s, S_MIN))


def test_flip_equals_observing_the_mirrored_image():
    pts = _person(16)
    K = geometry.intrinsics(700.0, 700.0, 620.0, 190.0)
    px = geometry.project(pts, K)
    norm = Normaliser()
    obs = norm.observe(_xyc(px), K)
    flipped = Augment(p_flip=1.0)(obs)
    mirrored = px.clone()
    mirrored[..., 0] = 2 * 620.0 - mirrored[..., 0]  # mirror the image about the principal point
    mirrored = mirrored[:, list(FLIP_INDEX)]  # a mirrored left joint is the detector's right joint
    obs_m = norm.observe(_xyc(mirrored), K)
    assert torch.allclose(flipped.xy, obs_m.xy, atol=1e-5)
    assert torch.allclose(norm.encode(flipped)[1], norm.encode(obs)[1])  # same size -> same depth prior


def test_augment_only_hides_visible_joints_and_keeps_min_visible():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(4096, 17, generator=g) < 0.8
    obs = Observed(xy=torch.randn(4096, 17, 2, generator=g), mask=mask)
    out = Augment(p_drop=1.0, max_drop=6, p_truncate=0.5, min_visible=4)(obs, generator=g)
    assert not (out.mask & ~mask).any()  # never reveals a joint
    lost = (mask.sum(1) - out.mask.sum(1)).float()
    assert lost.mean() > 2.0
    assert ((out.mask.sum(1) >= 4) | (out.mask == mask).all(1)).all()
    assert torch.equal(Augment()(obs).mask, mask)  # default: no-op


def test_raw_pixels_variant_and_config():
    norm, aug = from_config({"name": "raw_pixels", "threshold": 0.2, "augment": {"p_drop": 0.1}})
    assert norm.in_dim == 51 and aug.p_drop == 0.1
    kp = torch.tensor([[[621.0, 187.5, 0.9]] * 17])
    f, r, _ = norm(kp, torch.eye(3))
    assert torch.allclose(f[0, :2], torch.tensor([0.5, 0.5])) and r.abs().sum() == 0
    with pytest.raises(ValueError, match="unknown features name"):
        Normaliser(name="bogus")


def test_stored_normalisation_must_match():
    stored = Normaliser().to_dict()
    Normaliser().check_compatible(stored)
    with pytest.raises(ValueError, match="version"):
        Normaliser().check_compatible({**stored, "version": 999}, source="old.ckpt")


# --- the optional gravity input (issue 15) ---------------------------------------------------------
def _gravity_batch(n: int = 32):
    pts = _person(n, seed=5)
    K = geometry.intrinsics(900.0, 900.0, 640.0, 360.0)
    up = geometry.up_from_pitch_roll(torch.linspace(-70, 15, n), torch.linspace(-10, 10, n))
    return _xyc(geometry.project(pts, K)), K.expand(n, 3, 3), up


def test_gravity_inputs_masked_equals_not_given():
    kp, K, up = _gravity_batch()
    norm = Normaliser(gravity=True)
    assert norm.in_dim == 54 + 5 and Normaliser().in_dim == 54
    f_none, r_none, _ = norm(kp, K)
    f_nan, r_nan, _ = norm(kp, K, torch.full_like(up, float("nan")))
    f_up, r_up, _ = norm(kp, K, up)
    assert torch.equal(f_none, f_nan) and torch.equal(r_none, r_up)
    assert (f_none[:, 54:] == 0).all()  # unknown: five zeros
    assert torch.equal(f_up[:, :54], f_none[:, :54])  # the keypoint part does not change
    torch.testing.assert_close(f_up[:, 54:57], up)
    assert (f_up[:, 58] == 1).all()
    # Training hides the up direction on a share of samples: those rows encode exactly like "not given".
    aug = Augment(p_hide_up=0.5)
    obs = aug(norm.observe(kp, K, up), flip_ok=False, generator=torch.Generator().manual_seed(0))
    hidden = torch.isnan(obs.up).all(1)
    assert 0 < int(hidden.sum()) < len(hidden)
    f_aug, _ = norm.encode(obs)
    assert torch.equal(f_aug[hidden], f_none[hidden])
    # A model without gravity ignores a given up direction entirely.
    f_plain, _, _ = Normaliser()(kp, K, up)
    assert torch.equal(f_plain, f_none[:, :54])


def test_gravity_sine_of_elevation_and_flip():
    kp, K, up = _gravity_batch()
    norm = Normaliser(gravity=True)
    obs = norm.observe(kp, K, up)
    feats, _ = norm.encode(obs)
    # Elevation of the ray through the keypoints' centroid: sin = up . ray / |ray|.
    c = feats[:, 51:53]
    ray = torch.cat((c, torch.ones(len(c), 1)), 1)
    torch.testing.assert_close(feats[:, 57], (ray * up).sum(1) / ray.norm(dim=1))
    # Level camera, person straight ahead: elevation 0; camera 30 deg down, person on the axis: -30.
    c0 = torch.zeros(2, 2)
    ups = geometry.up_from_pitch_roll(torch.tensor([0.0, -30.0]), torch.zeros(2))
    from depth_pose.features import gravity_inputs

    torch.testing.assert_close(gravity_inputs(ups, c0)[:, 3], torch.tensor([0.0, -0.5]), atol=1e-6, rtol=0)
    # The mirror image of a rolled camera is the opposite roll: flip negates up's x.
    from depth_pose.features import flip

    f = flip(obs)
    torch.testing.assert_close(f.up[:, 0], -up[:, 0])
    torch.testing.assert_close(f.up[:, 1:], up[:, 1:])
    _, roll_f = geometry.pitch_roll_from_up(f.up)
    torch.testing.assert_close(roll_f, -geometry.pitch_roll_from_up(up)[1], atol=1e-4, rtol=0)


def test_pitch_roll_conventions_round_trip():
    # pitch negative = looking down: the world's up has a negative forward (z) component in the camera.
    up = geometry.up_from_pitch_roll(torch.tensor(-30.0), torch.tensor(0.0))
    torch.testing.assert_close(up, torch.tensor([0.0, -math.cos(math.pi / 6), -0.5]))
    # roll positive = scene rotated clockwise in the image: up points to the image's upper right (x > 0).
    up = geometry.up_from_pitch_roll(torch.tensor(0.0), torch.tensor(10.0))
    assert up[0] > 0 and up[1] < 0
    # Same as the generator's camera rotation (column 2 = world Z in camera coordinates), and invertible.
    p, r = torch.tensor([-75.0, -20.0, 0.0, 15.0]), torch.tensor([3.0, -12.0, 0.0, 7.0])
    R = geometry.camera_rotation(torch.deg2rad(p), torch.deg2rad(r))
    torch.testing.assert_close(R[:, :, 2], geometry.up_from_pitch_roll(p, r), atol=1e-6, rtol=0)
    p2, r2 = geometry.pitch_roll_from_up(R[:, :, 2] * 3.0)
    torch.testing.assert_close(p2, p, atol=1e-4, rtol=0)
    torch.testing.assert_close(r2, r, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="gravity"):
        Normaliser(name="raw_pixels", gravity=True)
