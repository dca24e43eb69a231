"""Detector-noise model (generation/noise.py): statistics of jitter, misses, swaps and confidence patterns."""

from __future__ import annotations

import pytest
import torch
from helpers import compose, standing
from hydra.utils import instantiate

from generation.camera import CameraSampler
from generation.noise import DetectorNoise
from generation.project import observe

THR = 0.1


@pytest.fixture(scope="module")
def scene():
    n = 40000
    posed = standing(n)
    cams = CameraSampler().sample(posed, torch.Generator().manual_seed(3))
    return cams, observe(posed, cams)


def noise_cfg(name: str):
    return compose(f"noise/{name}", ["+vis_threshold=0.1"]).noise  # the one threshold lives at the top level


def test_none_is_exact(scene):
    cams, obs = scene
    det = instantiate(noise_cfg("none"))(obs, torch.Generator().manual_seed(0), cams)
    torch.testing.assert_close(det[..., :2], obs.gt_px)
    assert torch.equal(det[..., 2] >= THR, obs.gt_visible)


def test_yolo_like_statistics(scene):
    cams, obs = scene
    noise = instantiate(noise_cfg("yolo_like"))
    det = noise(obs, torch.Generator().manual_seed(0), cams)
    conf, seen = det[..., 2], det[..., 2] >= THR
    # Same seed -> same output.
    torch.testing.assert_close(det, noise(obs, torch.Generator().manual_seed(0), cams), equal_nan=True)
    # Confidences on the right side of the threshold, with margin, and plausible.
    assert conf[seen].min() >= 0.25 and conf[seen].max() <= 0.99 and conf[~seen].max() < 0.05
    assert 0.35 < conf[seen].median() < 0.9
    # Misses: more than the exact visibility, and many more for small people; NaN only for unseen joints.
    assert (~seen).float().mean() > (~obs.gt_visible).float().mean() + 0.05
    size = obs.person_px_height
    small, big = size < 40, size > 200
    miss_small = (~seen[small] & obs.gt_visible[small]).float().mean()
    miss_big = (~seen[big] & obs.gt_visible[big]).float().mean()
    assert miss_small > 3 * miss_big
    assert not torch.isnan(det[seen]).any()
    # Face dropped more than hips for small people (per-joint weights).
    assert (~seen[small, 1]).float().mean() > 2 * (~seen[small, 11]).float().mean()
    # Jitter: median error of visible joints a few percent of the person size (YOLO on renders: 0.04-0.06 of
    # the height for the body joints at >= 90 px, docs/bench_render.md), hips noisier than eyes.
    err = (det[..., :2] - obs.gt_px).norm(dim=-1) / size[:, None].clamp_min(1)
    ok = seen & obs.gt_visible & (size[:, None] > 100)
    med = err[ok].median().item()
    assert 0.015 < med < 0.06
    assert err[:, 11][ok[:, 11]].median() > 1.5 * err[:, 1][ok[:, 1]].median()  # (3 px floor on the eyes)
    # Heavy tail: the 99.5th percentile is far beyond a Gaussian's (~3.3 sigma vs median 1.18 sigma).
    assert err[ok].quantile(0.995) > 6 * med


def test_unseen_patterns_share_and_swaps(scene):
    cams, obs = scene
    noise = DetectorNoise(forced_complete_share=0.4, nan_share=0.3, swap_prob=0.0, flip_prob=0.0)
    det = noise(obs, torch.Generator().manual_seed(1), cams)
    conf = det[..., 2]
    unseen = conf < THR
    # Outside the image (or self-occluded) is always unseen.
    assert unseen[~obs.gt_visible].all()
    # Forced-complete rows: all unseen joints at conf ~0.01 with finite guessed positions inside the image.
    rows = unseen.any(1)
    forced = rows & ((conf >= 0.005) & (conf < 0.015) | ~unseen).all(1) & ~torch.isnan(det[..., 0]).any(1)
    yolo = rows & ~forced
    share = forced[rows].float().mean().item()
    assert abs(share - 0.4) < 0.05
    f = det[forced][unseen[forced]]
    assert torch.isfinite(f).all()
    w = cams.img_w[forced, None].expand(-1, 17)[unseen[forced]]
    assert (f[:, 0] >= 0).all() and (f[:, 0] <= w - 1).all()
    # YOLO-like unseen joints: NaN coordinates for ~nan_share of them.
    nan_share = torch.isnan(det[yolo][unseen[yolo]][:, 0]).float().mean().item()
    assert abs(nan_share - 0.3) < 0.03
    # Swaps: with flip_prob = 1, every detection is mirrored left/right.
    flip = DetectorNoise(
        flip_prob=1.0,
        swap_prob=0.0,
        drop_prob=0,
        occluder_prob=0,
        small_drop_max=0,
        rel_sigma=0,
        floor_px=0,
        outlier_prob=0,
        hip_shift=0.0,
    )
    d = flip(obs, torch.Generator().manual_seed(0), cams)
    both = obs.gt_visible[:, 5] & obs.gt_visible[:, 6] & obs.gt_visible[:, 0]
    torch.testing.assert_close(d[both, 5, :2], obs.gt_px[both, 6])
    torch.testing.assert_close(d[both, 0, :2], obs.gt_px[both, 0])
    one = DetectorNoise(swap_prob=0.5, flip_prob=0.0, rel_sigma=0, floor_px=0, outlier_prob=0, hip_shift=0.0)
    d = one(obs, torch.Generator().manual_seed(0), cams)
    swapped = ((d[..., :2] - obs.gt_px).abs().amax(-1) > 1e-3) & (d[..., 2] >= THR)
    frac = swapped.any(1).float().mean().item()
    assert 0.3 < frac < 0.5  # ~0.5 of rows, minus swaps of pairs that are unseen


def test_hip_shift_moves_only_the_hips_toward_the_shoulders(scene):
    cams, obs = scene
    quiet = dict(
        swap_prob=0.0,
        flip_prob=0.0,
        drop_prob=0,
        occluder_prob=0,
        small_drop_max=0,
        rel_sigma=0,
        floor_px=0,
        outlier_prob=0,
        quality_log_std=0,
    )
    g = torch.Generator
    base = DetectorNoise(hip_shift=0.0, **quiet)(obs, g().manual_seed(0), cams)
    det = DetectorNoise(hip_shift=0.1, **quiet)(obs, g().manual_seed(0), cams)
    ok = obs.gt_visible[:, [5, 6, 11, 12]].all(1)
    px = obs.gt_px[ok]
    torso = 0.5 * (px[:, 5] + px[:, 6] - px[:, 11] - px[:, 12])
    torch.testing.assert_close(det[ok][:, 11:13, :2], px[:, 11:13] + 0.1 * torso[:, None], atol=1e-3, rtol=0)
    others = [j for j in range(17) if j not in (11, 12)]
    torch.testing.assert_close(det[ok][:, others, :2], base[ok][:, others, :2], equal_nan=True)
    # Upright people: hips move up in the image (y down), by ~0.1 of the torso's projected length.
    assert (det[ok][:, 11:13, 1] < base[ok][:, 11:13, 1]).float().mean() > 0.95
    with pytest.raises(ValueError, match="hip_shift"):
        DetectorNoise(hip_shift=0.8)


def test_outlier_probability_per_joint(scene):
    cams, obs = scene
    quiet = dict(
        swap_prob=0.0,
        flip_prob=0.0,
        drop_prob=0,
        occluder_prob=0,
        small_drop_max=0,
        quality_log_std=0,
        floor_px=0.0,
        hip_shift=0.0,
        outlier_scale=10.0,
    )
    p = [0.0] * 11 + [0.3] * 6  # gross errors on the legs only
    det = DetectorNoise(outlier_prob=p, **quiet)(obs, torch.Generator().manual_seed(0), cams)
    ok = obs.gt_visible & (obs.person_px_height[:, None] > 100)
    far = (det[..., :2] - obs.gt_px).norm(dim=-1) > 4 * 0.02 * 2.2 * obs.person_px_height[
        :, None
    ]  # > 4 sigma of ankles
    legs, upper = far[:, 11:][ok[:, 11:]].float().mean(), far[:, :11][ok[:, :11]].float().mean()
    assert 0.15 < legs < 0.35 and upper < 0.01
    with pytest.raises(ValueError, match="outlier_prob"):
        DetectorNoise(outlier_prob=[0.1] * 5)
    with pytest.raises(ValueError, match="outlier_prob"):
        DetectorNoise(outlier_prob=1.5)


def test_bad_noise_config():
    with pytest.raises(ValueError, match="threshold"):
        DetectorNoise(visible_conf_min=0.05)
    with pytest.raises(ValueError, match="forced_share|probability"):
        DetectorNoise(forced_complete_share=1.5)
    with pytest.raises(ValueError, match="joint_scale"):
        DetectorNoise(joint_scale=[1.0] * 5)
