"""The rendered detector model (generation/detector_model.py, ``noise=rendered``): the committed asset and its
checks, fitting on synthetic pairs, samples vs the stored held-out statistics, output patterns, the config."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import CONF, compose, standing
from hydra.utils import instantiate

from depth_pose.errors import InputError
from depth_pose.keypoints import FLIP_INDEX, INDEX
from generation import dataset
from generation import detector_fit as dfit
from generation import detector_model as dm
from generation.camera import CameraSampler
from generation.project import observe

THR = 0.1
ASSET = dm.resolve_asset("data/detector_rendered")


def rendered_cfg(**over):
    cfg = compose("noise/rendered", ["+vis_threshold=0.1"]).noise
    return instantiate(cfg, **over)


@pytest.fixture(scope="module")
def scene():
    posed = standing(4000)
    cams = CameraSampler().sample(posed, torch.Generator().manual_seed(3))
    return cams, observe(posed, cams)


def test_committed_asset_loads_and_is_checked(tmp_path):
    arrays, manifest = dm.load_asset(ASSET)
    yaml_sha = next(
        line.split()[1]
        for line in (CONF / "noise/rendered.yaml").read_text().splitlines()
        if line.startswith("sha256:")
    )
    assert manifest["sha256"] == dm.sha256_file(ASSET / dm.TENSOR_FILE) == yaml_sha
    assert (ASSET / dm.TENSOR_FILE).stat().st_size < 1_000_000
    assert arrays["bank"].dtype == np.float16 and arrays["bank"].shape[1:] == (17, 3)
    for key in ("source", "n_people_train", "command", "git_commit", "date", "heldout_stats_conditions"):
        assert key in manifest
    bad = tmp_path / "bad"
    shutil.copytree(ASSET, bad)
    data = bytearray((bad / dm.TENSOR_FILE).read_bytes())
    data[len(data) // 2] ^= 1
    (bad / dm.TENSOR_FILE).write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"{bad / dm.TENSOR_FILE} has sha256"):
        dm.load_asset(bad)
    (bad / dm.TENSOR_FILE).unlink()
    with pytest.raises(InputError, match=f"missing file {bad / dm.TENSOR_FILE}"):
        dm.load_asset(bad)
    with pytest.raises(InputError, match="the noise config says"):  # the config's sha256 is checked too
        dm.RenderedNoise(asset=str(ASSET), sha256="0" * 64)


def synthetic_lines(cams, obs, sigma: float, p_miss: float, p_person: float, seed: int) -> list[dict]:
    """Render-pair lines whose YOLO keypoints are the exact ones + N(0, sigma x size) per coordinate,
    confidence 0.8 (0.05: a missed joint, prob ``p_miss``), whole people missed with prob ``p_person``."""
    rng = np.random.default_rng(seed)
    gt = obs.gt_px.double().numpy()
    img = torch.stack((cams.img_w, cams.img_h), -1).double()
    size = dm.person_frame(obs.gt_px.double(), img)["size"].numpy()
    lines = []
    for i in range(len(gt)):
        det = gt[i] + rng.normal(0.0, sigma * size[i], gt[i].shape)
        conf = np.where(rng.random(17) < p_miss, 0.05, 0.8)
        missed = bool(rng.random() < p_person)
        kp = np.concatenate((det, conf[:, None]), 1).round(3).tolist()
        lines.append(
            {
                "gt_xy": gt[i].tolist(),
                "keypoints_xyc": [[None, None, 0.0]] * 17 if missed else kp,
                "image_wh": img[i].tolist(),
                "detector_scale": 1.0,
                "missed": missed,
            }
        )
    return lines


def test_fit_recovers_a_known_detector(tmp_path, scene):
    cams, obs = scene
    lines = synthetic_lines(cams, obs, sigma=0.03, p_miss=0.1, p_person=0.05, seed=0)
    model = dfit.fit(lines)
    assert model["person_miss"].max() > 0 and model["person_miss"].max() < 0.2
    dfit.save_asset(model, tmp_path / "asset", {"what": "test"})
    nz = dm.RenderedNoise(asset=str(tmp_path / "asset"), forced_complete_share=0.0)
    det = nz(obs, torch.Generator().manual_seed(1), cams).double()
    img = torch.stack((cams.img_w, cams.img_h), -1).double()
    size = dm.person_frame(obs.gt_px.double(), img)["size"]
    inn = dm.inside(obs.gt_px, img)
    rep = det[..., 2] >= THR
    res = ((det[..., :2] - obs.gt_px) / size[:, None, None])[inn & rep]
    std = res.abs().median().item() / 0.6745  # robust sigma per coordinate
    assert 0.85 * 0.03 < std < 1.2 * 0.03, std
    miss = (~rep & inn).sum().item() / inn.sum().item()
    assert abs(miss - 0.1) < 0.025, miss
    assert abs(det[..., 2][inn & rep].median().item() - 0.8) < 0.03


def test_samples_reproduce_the_stored_heldout_statistics():
    """Draws on the stored held-out conditions vs real YOLO's statistics on the same people (fit time)."""
    nz = rendered_cfg(forced_complete_share=0.0)  # the real data is pure YOLO
    a = nz.arrays
    gt, img, scale = a["heldout_gt"].double(), a["heldout_img"].double(), a["heldout_scale"].double()
    reps = 8
    obs, cams = dfit.observations(gt.repeat(reps, 1, 1), img.repeat(reps, 1))
    det = nz(obs, torch.Generator().manual_seed(0), cams, detector_scale=scale.repeat(reps))
    got = dfit.band_stats(obs.gt_px, det, img.repeat(reps, 1), scale.repeat(reps))
    want = nz.manifest["heldout_stats_conditions"]
    checked = 0
    for g, w in zip(got, want, strict=True):
        big = w["people"] >= 100  # small bands: real medians too noisy for tight bounds
        lo, hi = (0.8, 1.25) if big else (0.6, 1.6)
        assert lo < g["median_err"] / w["median_err"] < hi, (g, w)
        assert abs(g["miss_rate"] - w["miss_rate"]) < (0.02 if big else 0.05), (g, w)
        assert abs(g["median_conf"] - w["median_conf"]) < 0.05, (g, w)
        assert abs(g["clamp_rate"] - w["clamp_rate"]) < (0.1 if big else 0.2), (g, w)
        checked += big
    assert checked >= 2


def test_output_shape_nan_patterns_and_determinism(scene):
    cams, obs = scene
    nz = rendered_cfg()
    det = nz(obs, torch.Generator().manual_seed(5), cams)
    assert det.shape == (len(obs.gt_px), 17, 3) and det.dtype == obs.gt_px.dtype
    again = nz(obs, torch.Generator().manual_seed(5), cams)
    assert torch.equal(torch.nan_to_num(det, 7.0), torch.nan_to_num(again, 7.0))
    other = nz(obs, torch.Generator().manual_seed(6), cams)
    assert not torch.equal(torch.nan_to_num(det, 7.0), torch.nan_to_num(other, 7.0))
    conf = det[..., 2]
    assert torch.isfinite(conf).all() and (conf >= 0).all() and (conf <= 1).all()
    nan = torch.isnan(det[..., :2])
    assert torch.equal(nan[..., 0], nan[..., 1]) and (conf[nan[..., 0]] < nz.unseen_conf_max).all()
    assert nan.any()  # YOLO-like unseen joints with NaN coordinates
    forced = rendered_cfg(forced_complete_share=1.0)(obs, torch.Generator().manual_seed(5), cams)
    unseen = forced[..., 2] < THR
    assert not torch.isnan(forced).any() and unseen.any()
    assert ((forced[..., 2][unseen] >= 0.005) & (forced[..., 2][unseen] < 0.015)).all()
    img = torch.stack((cams.img_w, cams.img_h), -1)
    outside = ~dm.inside(obs.gt_px, img) & torch.isfinite(obs.gt_px).all(-1)
    assert outside.sum() > 50 and (det[..., 2][outside] >= THR).float().mean() > 0.3  # YOLO's border clamp
    off = rendered_cfg(border_clamp_prob=0.0)(obs, torch.Generator().manual_seed(5), cams)
    # border behaviour off: outside joints unseen (but for left/right swaps with a seen partner)
    assert (off[..., 2][outside] >= THR).float().mean() < 0.05
    with pytest.raises(ValueError, match="occluder_prob must be 0"):
        dm.RenderedNoise(occluder_prob=0.05)
    bare = nz(obs, torch.Generator().manual_seed(5))  # no cameras: no border, scale 1
    assert bare.shape == det.shape and torch.isfinite(bare[..., 2]).all()
    empty, _ = dfit.observations(obs.gt_px[:0], torch.zeros(0, 2))
    assert nz(empty, torch.Generator().manual_seed(0)).shape == (0, 17, 3)


def test_swap_finder():
    gt = torch.tensor([[[100.0 + 10 * j, 50.0 + 20 * j] for j in range(17)]])
    gt[0, :, 0] += torch.tensor([40.0 if j % 2 else -40.0 for j in range(17)])  # left/right apart
    lw, rw = INDEX["left_wrist"], INDEX["right_wrist"]
    det = gt.clone()
    det[0, [lw, rw]] = gt[0, [rw, lw]]
    size = torch.tensor([400.0])
    flip, swapped, ident = dfit.find_swaps(gt, det, size)
    assert not flip.any() and swapped.sum() == 1 and ident.all()
    flip, swapped, _ = dfit.find_swaps(gt, gt[:, list(FLIP_INDEX)], size)
    assert flip.all() and not swapped.any()
    assert torch.equal(dfit.unswap(det, torch.tensor([False]), dfit.find_swaps(gt, det, size)[1]), gt)


def test_rendered_composes_and_changes_the_dataset_id():
    cfg = compose("generate", ["noise=rendered"])
    assert cfg.noise.name == "rendered" and cfg.noise.visibility_threshold == cfg.vis_threshold
    assert isinstance(instantiate(cfg.noise), dm.RenderedNoise)
    ids = {
        n: dataset.dataset_id(compose("generate", [f"noise={n}", "num_samples=1000"]))
        for n in ("rendered", "yolo_like")
    }
    assert ids["rendered"] != ids["yolo_like"]
    changed = dataset.dataset_id(
        compose("generate", ["noise=rendered", "num_samples=1000", "noise.sha256=" + "1" * 64])
    )
    assert changed != ids["rendered"]  # the asset's sha256 is part of the id
    assert json.loads((ASSET / dm.MANIFEST).read_text())["sha256"] in json.dumps(dataset.id_payload(cfg))
