"""People cut by the frame (issue 19): the frame cut of the generator (generation/framing_cut.py), YOLO's
border behaviour of the noise model (clamped joints with moderate confidence), byte-identical data when both
are off, and the truncation suite (``dp-eval suite=truncation``) end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import compose, standing

from depth_pose.keypoints import COCO_NAMES, INDEX
from generation import config, dataset, kernels
from generation.framing_cut import FramingCut, crop_cameras, cut_window
from generation.generator import Generator
from generation.noise import DetectorNoise
from generation.project import observe

THR = 0.1
SMALL_GEN = ["body.n_bodies=64", "progress=false", "paths.root_dir=/tmp"]
LOWER = [INDEX[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle")]
QUIET = dict(swap_prob=0.0, flip_prob=0.0, forced_complete_share=0.0, occluder_prob=0.0, drop_prob=0.0)


def level_people(n: int):
    """``n`` copies of the standing adult 4 m in front of a level 1280x720 camera (60 deg), whole in view."""
    from depth_pose.suites.invariance import fixed_cameras

    posed = standing(n)
    cams = fixed_cameras(posed, torch.full((n,), 4.0), torch.zeros(n), 60.0, 1280, 720, 1.5)
    return posed, cams


def cut_at_hips(posed, cams):
    """The frame's bottom edge just above the hips (hips, knees, ankles outside): cropped cameras."""
    full = observe(posed, cams)
    h = full.gt_px[:, [INDEX["left_hip"], INDEX["right_hip"]], 1].amin(1).floor().long()
    zero = torch.zeros_like(h)
    return crop_cameras(cams, zero, zero, cams.img_w.clone(), h)


def test_truncated_person_gets_border_clamped_joints():
    """Bottom cut above the hips: with the border behaviour every joint below the cut is reported on the last
    pixel row, at a confidence in [border_conf_min, border_conf_max] (seen); without it, unseen."""
    posed, cams = level_people(400)
    cut = cut_at_hips(posed, cams)
    obs = observe(posed, cut)
    below = obs.gt_px[..., 1] >= cut.img_h[:, None]
    assert below[:, LOWER].all() and not obs.gt_visible[below].any()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    on = DetectorNoise(border_clamp_prob=1.0, border_conf_min=0.25, border_conf_max=0.45, **QUIET)
    det = on(obs, g(), cut)
    last_row = (cut.img_h - 1).float()[:, None].expand_as(below)
    assert torch.equal(det[..., 1][below], last_row[below])
    conf = det[..., 2][below]
    assert conf.min() >= 0.25 and conf.max() <= 0.45 and conf.std() > 0.03  # drawn across the range
    x = det[..., 0][below]
    assert (x >= 0).all() and (x <= 1279).all()
    # along the border: near the true column (the usual jitter), not pinned
    dx = (x - obs.gt_px[..., 0][below]).abs()
    assert dx.median() < 10 and dx.max() > 0
    # joints inside the frame are untouched by the option: same draws, same values
    off = DetectorNoise(border_clamp_prob=0.0, **QUIET)(obs, g(), cut)
    torch.testing.assert_close(det[~below], off[~below], equal_nan=True)
    assert (off[..., 2][below] < THR).all()
    # a probability < 1 clamps about that share; the decay lowers it far outside the frame
    part = DetectorNoise(border_clamp_prob=0.5, **QUIET)(obs, g(), cut)[..., 2][below]
    assert 0.4 < (part >= THR).float().mean() < 0.6
    far = DetectorNoise(border_clamp_prob=1.0, border_clamp_decay=0.3, **QUIET)(obs, g(), cut)
    knees = far[:, [INDEX["left_knee"], INDEX["right_knee"]], 2] >= THR
    ankles = far[:, [INDEX["left_ankle"], INDEX["right_ankle"]], 2] >= THR
    assert knees.float().mean() > ankles.float().mean() + 0.1  # ankles lie farther outside
    # the logistic shape measured on renders: hips just below the cut nearly always, ankles far out rarely
    lg = DetectorNoise(border_clamp_prob=1.0, border_clamp_midpoint=0.37, border_clamp_width=0.06, **QUIET)
    det = lg(obs, g(), cut)
    hips = det[:, [INDEX["left_hip"], INDEX["right_hip"]], 2] >= THR
    ankles = det[:, [INDEX["left_ankle"], INDEX["right_ankle"]], 2] >= THR
    assert hips.float().mean() > 0.95 and ankles.float().mean() < 0.25  # renders: 1.0 and 0.19
    with pytest.raises(ValueError, match="not both"):
        DetectorNoise(border_clamp_decay=0.3, border_clamp_midpoint=0.37)


def test_yolo_border_preset_and_bad_values():
    node = compose("noise/yolo_border", ["+vis_threshold=0.1"]).noise
    assert node.name == "yolo_border" and node.border_clamp_prob > 0
    assert 0.1 < node.border_conf_min <= node.border_conf_max < 1.0  # above the threshold: looks seen
    like = compose("noise/yolo_like", ["+vis_threshold=0.1"]).noise
    assert like.border_clamp_prob == 0.0
    with pytest.raises(ValueError, match="border_conf_min <= border_conf_max"):
        DetectorNoise(border_conf_min=0.6, border_conf_max=0.5)
    with pytest.raises(ValueError, match="border_clamp_prob"):
        DetectorNoise(border_clamp_prob=1.5)
    with pytest.raises(ValueError, match="framing_cut.share"):
        FramingCut(share=2.0)
    bad = config.with_defaults(compose("generate", [*SMALL_GEN, "framing_cut.bottom=[0.9,0.1]"]))
    with pytest.raises(config.GenerationConfigError, match="framing_cut.bottom"):
        config.build_framing_cut(bad)
    bad = config.with_defaults(compose("generate", [*SMALL_GEN, "framing_cut.share=1.5"]))
    with pytest.raises(config.GenerationConfigError, match="framing_cut.share"):
        config.validate(bad)


def test_crop_keeps_every_camera_ray():
    """A cropped camera is the same camera with a smaller sensor window: the pixel of a joint moves by the
    window's origin and its ray K^-1 (u, v, 1) is unchanged; the frame cut's projections are exact."""
    from depth_pose.geometry import planar
    from generation.camera import CameraSampler

    n = 500
    posed = standing(n)
    cams, proj = CameraSampler().sample(posed, torch.Generator().manual_seed(2), return_projection=True)
    g = torch.Generator().manual_seed(5)
    x0 = (torch.rand(n, generator=g) * 100).long()
    y0 = (torch.rand(n, generator=g) * 100).long()
    w, h = cams.img_w - x0 - 10, cams.img_h - y0 - 10
    cropped = crop_cameras(cams, x0, y0, w, h)
    a, b = observe(posed, cams), observe(posed, cropped)
    shift = torch.stack((x0, y0), 1).float()[:, None]
    torch.testing.assert_close(b.gt_px, a.gt_px - shift, atol=1e-3, rtol=0, equal_nan=True)

    def ray(px, K):
        homog = torch.cat((px, torch.ones_like(px[..., :1])), -1).double()
        return torch.einsum("nij,nkj->nki", torch.linalg.inv(K.double()), homog)

    torch.testing.assert_close(
        ray(b.gt_px, cropped.K), ray(a.gt_px, cams.K), atol=1e-6, rtol=1e-6, equal_nan=True
    )
    inside = (b.gt_px >= 0).all(-1) & (b.gt_px < torch.stack((w, h), 1)[:, None]).all(-1)
    assert torch.equal(b.gt_visible, inside & a.gt_visible)  # only the window changed (self-occlusion kept)
    torch.testing.assert_close(b.z_m, a.z_m)
    # FramingCut: the shifted projection it hands on equals projecting through its cropped cameras
    fc = FramingCut(share=1.0, min_visible_keypoints=0, min_size_px=1)
    cams2, proj2 = fc(posed, cams, proj, torch.Generator().manual_seed(1))
    assert ((cams2.img_w < cams.img_w) | (cams2.img_h < cams.img_h)).float().mean() > 0.5
    again = observe(posed, cams2)
    torch.testing.assert_close(planar(proj2[1]), planar(again.gt_px), atol=1e-3, rtol=0, equal_nan=True)


def test_cut_window_edges():
    """Each edge keeps the asked fraction of the keypoint extent from the far side; never past the image."""
    px = (
        torch.tensor([[100.0, 200.0], [300.0, 600.0]])[:, :, None].expand(2, 2, 4).clone()
    )  # u 100-200, v 300-600
    px = torch.cat((px, px), 1)  # (2, 4, B): four joints
    w, h = torch.full((4,), 1000), torch.full((4,), 500)
    edge = torch.tensor([0, 1, 2, 3])  # bottom, left, right, top
    x0, y0, ww, hh = cut_window(px, w, h, edge, torch.full((4,), 0.5))
    assert hh[0] == 450 and ww[0] == 1000  # bottom edge at v = 300 + 0.5 x 300
    assert x0[1] == 151 and ww[1] == 849  # left edge just right of u = 150
    assert ww[2] == 150 and x0[2] == 0  # right edge at u = 150
    assert y0[3] == 451 and hh[3] == 49  # top edge just below v = 450 (image 500 high)
    assert (ww <= w).all() and (hh <= h).all() and (x0 >= 0).all() and (y0 >= 0).all()


@pytest.fixture(scope="module")
def shards():
    """One small shard per config: default, with the new keys at their off values, without them, and on."""
    base = compose("generate", SMALL_GEN)

    def shard(cfg, n=600):
        cfg = config.with_defaults(cfg)
        return Generator(cfg).shard(0, n, 0, 0, int(cfg.seed)), cfg

    without = compose("generate", SMALL_GEN)
    from omegaconf import OmegaConf

    OmegaConf.set_struct(without, False)
    del without["framing_cut"]
    for k in dataset.BORDER_NOISE_KEYS:
        del without.noise[k]
    explicit = compose("generate", [*SMALL_GEN, "framing_cut.share=0.0", "noise.border_clamp_prob=0.0"])
    on = compose("generate", [*SMALL_GEN, "framing_cut.share=1.0", "noise=yolo_border"])
    return {
        name: shard(c)
        for name, c in (("base", base), ("without", without), ("explicit", explicit), ("on", on))
    }


def test_options_off_give_identical_data_and_id(shards):
    """The default config, the new keys at their off values and no new keys at all: byte-identical columns,
    one dataset id; switching them on changes the id."""
    (base, cb), (without, cw), (explicit, ce), (_, con) = (
        shards[k] for k in ("base", "without", "explicit", "on")
    )
    assert dataset.dataset_id(cb) == dataset.dataset_id(cw) == dataset.dataset_id(ce)
    assert "framing_cut" not in dataset.id_payload(cb)
    assert "framing_cut" in dataset.id_payload(con) and dataset.dataset_id(con) != dataset.dataset_id(cb)
    for other in (without, explicit):
        assert set(other) == set(base)
        for k, v in base.items():
            a, b = np.asarray(v), np.asarray(other[k])
            assert a.dtype == b.dtype, k
            assert a.tolist() == b.tolist() if a.dtype == object else a.tobytes() == b.tobytes(), k


def test_generated_cut_rows_get_border_clamped_joints(shards):
    """framing_cut.share=1 + noise=yolo_border: most rows get a smaller image (same cameras: rays kept), every
    row keeps >= min_visible_keypoints joints in the frame, and cut-off joints are either on the border with a
    confidence in [border_conf_min, border_conf_max] or unseen."""
    base, _ = shards["base"]
    on, cfg = shards["on"]
    cut = (on["img_w"] < base["img_w"]) | (on["img_h"] < base["img_h"])
    assert 0.5 < cut.mean() and (on["img_w"] <= base["img_w"]).all() and (on["img_h"] <= base["img_h"]).all()
    assert np.array_equal(on["fx"], base["fx"]) and np.array_equal(on["z_m"], base["z_m"])
    gx = np.stack([on[f"gt_{n}_x"] for n in COCO_NAMES], 1)
    gy = np.stack([on[f"gt_{n}_y"] for n in COCO_NAMES], 1)
    x = np.stack([on[f"{n}_x"] for n in COCO_NAMES], 1)
    y = np.stack([on[f"{n}_y"] for n in COCO_NAMES], 1)
    c = np.stack([on[f"{n}_c"] for n in COCO_NAMES], 1)
    w, h = on["img_w"][:, None], on["img_h"][:, None]
    inside = (gx >= 0) & (gx < w) & (gy >= 0) & (gy < h)
    n_min = int(cfg.framing_cut.min_visible_keypoints)
    assert (inside[cut].sum(1) >= n_min).all()
    vis = (on["gt_vis_mask"][:, None] >> np.arange(17)) & 1
    assert not (vis.astype(bool) & ~inside).any()
    out = cut[:, None] & ~inside & np.isfinite(gx)
    seen = out & (c >= THR)
    assert 0.2 < seen.sum() / out.sum() < 0.9  # border_clamp_prob, decreasing with the distance outside
    # clamped joints lie on the border (a rare left/right swap moves a seen joint's values: allow 2%)
    on_border = np.isclose(x, 0) | np.isclose(x, w - 1) | np.isclose(y, 0) | np.isclose(y, h - 1)
    moderate = (c >= cfg.noise.border_conf_min) & (c <= cfg.noise.border_conf_max)
    assert (on_border & moderate)[seen].mean() > 0.98


@pytest.mark.slow  # torch.compile of the noise kernel
def test_border_behaviour_compiled_matches_eager():
    posed, cams = level_people(300)
    cut = cut_at_hips(posed, cams)
    obs = observe(posed, cut)
    noise = DetectorNoise(border_clamp_prob=0.7, border_clamp_decay=0.5)
    before = kernels.enabled()
    try:
        eager = noise(obs, torch.Generator().manual_seed(3), cut)
        assert kernels.configure(True)
        comp = noise(obs, torch.Generator().manual_seed(3), cut)
        assert kernels.enabled(), "the compiled noise kernel fell back to eager"
    finally:
        kernels.configure(before)
    assert torch.equal(comp[..., 2] >= THR, eager[..., 2] >= THR)
    torch.testing.assert_close(comp, eager, atol=1e-3, rtol=1e-4, equal_nan=True)


TINY_SUITE = [
    "progress=false",
    "plots=false",
    "invariance.n_bodies=2",
    "invariance.n_per_pose=1",
    "invariance.depths_m=[5.0]",
    "invariance.yaws_deg=[0.0,90.0]",
]


def test_truncation_suite_end_to_end(tmp_path):
    """dp-eval suite=truncation on a tiny config with the shipped model: every cut reported for both noise
    variants, the cut-off joints out of the frame, seen only with the border behaviour, the targets judged."""
    from depth_pose.evaluate import evaluate
    from depth_pose.suites.truncation import CUTS

    out = tmp_path / "samples.jsonl"
    res = evaluate(compose("eval", ["suite=truncation", f"out={out}", *TINY_SUITE]))
    assert res["exit_code"] == 0 and res["cuts"] == list(CUTS) and res["variants"] == ["border", "no_border"]
    n_people = 2  # standing + walking, one each
    assert res["n_samples"] == n_people * 2 * len(CUTS)
    for v in res["variants"]:
        for c in CUTS:
            r = res["per_cut"][v][c]
            assert r["n"] == n_people * 2 and np.isfinite(r["median"]) and np.isfinite(r["bias_median"])
            assert 0 <= r["coverage_1sigma"] <= 1 and r["over_full"] >= 0
        assert (
            res["per_cut"][v]["full"]["rows_out_of_frame"] == 0
            and res["per_cut"][v]["full"]["over_full"] == 1
        )
        assert {"hips_over_full", "max_abs_bias"} <= set(res["targets"][v])
    for c in CUTS[1:]:
        assert res["per_cut"]["border"][c]["rows_out_of_frame"] == 1
    assert res["per_cut"]["border"]["hips"]["out_of_frame_seen"] > 0
    assert res["per_cut"]["no_border"]["hips"]["out_of_frame_seen"] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    hips = [r for r in rows if r["cut"] == "hips"]
    assert all(r["joints_out_of_frame"] >= 6 and r["image_wh"][1] < 720 for r in hips)  # hips, knees, ankles
    side = [r for r in rows if r["cut"] == "side_left"]
    assert all(r["image_wh"][0] < 1280 and r["image_wh"][1] == 720 for r in side)
    report = (tmp_path / "report.md").read_text()
    assert all(f"| {c} |" in report for c in CUTS) and "hips / full" in report
    assert json.loads((tmp_path / "metrics.json").read_text())["suite"] == "truncation"
