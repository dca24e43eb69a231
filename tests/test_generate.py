"""dp-generate end to end (generation/pipeline.py, depth_pose/shards.py, depth_pose/cli/generate.py) on the
real body model and pose sampler."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import REPO, compose
from hydra.utils import instantiate
from procs import processes_mentioning

from depth_pose import geometry, shards
from depth_pose.schema import ALL_COLS, TAG_COLS
from generation import config, dataset, pipeline
from generation.project import observe

SMALL = ["body.n_bodies=64", "progress=false"]


def gen_cfg(tmp: Path, *overrides: str):
    cfg = compose("generate", [*SMALL, f"paths.root_dir={tmp}", *overrides])
    cfg.paths.output_dir = str(tmp)
    return cfg


@pytest.fixture(scope="module")
def body():
    cfg = compose("generate", [*SMALL, "paths.root_dir=/tmp"])
    return instantiate(cfg.body, seed=0)


def _level_camera(fx: float, z: float, height: float = 1.65):
    from generation.camera import CameraSampler

    s = CameraSampler(
        depth_min_m=z,
        depth_max_m=z * 1.000001,
        height_min_m=height,
        height_max_m=height,
        high_share=0,
        tilt_min_deg=0,
        tilt_max_deg=0,
        roll_max_deg=0,
        hfov_min_deg=2 * math.degrees(math.atan(1920 / (2 * fx))),
        hfov_max_deg=2 * math.degrees(math.atan(1920 / (2 * fx))) + 1e-4,
        image_sizes=[[1920, 1080]],
        lateral_min=0.5,
        lateral_max=0.5,
        min_visible_keypoints=0,
        principal_point_jitter=0,
    )
    return s


def test_standing_adult_at_10m_and_kitti_label_point(body):
    adults = ((body.shapes.age_years > 20) & (body.shapes.age_years < 60)).nonzero().squeeze(1)[:8]
    n = len(adults)
    from generation.pose import named_poses

    rest = named_poses(["standing"], n, torch.Generator().manual_seed(0), jitter_deg=0.0, interp_max=0.0)
    posed = body.pose(adults, rest)
    cams = _level_camera(1000.0, 10.0).sample(posed, torch.Generator().manual_seed(0))
    obs = observe(posed, cams)
    torch.testing.assert_close(obs.z_m, torch.full((n,), 10.0), atol=1e-3, rtol=0)
    # Nose-to-ankle is ~0.85-0.9 of stature: ~150 px at f = 1000 px and 10 m.
    px = obs.person_px_height
    ratio = px * 10.0 / 1000.0 / body.shapes.stature_m[adults]
    assert ((px > 115) & (px < 185)).all(), px
    assert ((ratio > 0.8) & (ratio < 0.95)).all(), ratio
    # KITTI's label point: bottom centre of the person's oriented 3D box (here the box of the whole mesh).
    # It sits a few cm in front of the mid-hip (hands and toes reach forward), so the two depths agree within
    # a few cm when seen side-on, within ~10 cm when facing towards/away, and on average over yaw.
    verts, _ = body.mesh(adults, rest)  # placed like pose(): mid-hip at X = Y = 0, floor at Z = 0
    lo, hi = verts.amin(1), verts.amax(1)
    bottom_centre = torch.stack(((lo[:, 0] + hi[:, 0]) / 2, (lo[:, 1] + hi[:, 1]) / 2, torch.zeros(n)), -1)
    diffs = {}
    for yaw in (0.0, 90.0, 180.0, 270.0):
        cams.R = geometry.camera_rotation(torch.zeros(n), torch.zeros(n)) @ geometry.rot_z(
            torch.full((n,), math.radians(yaw))
        )
        o = observe(posed, cams)
        torch.testing.assert_close(o.z_m, torch.full((n,), 10.0), atol=1e-3, rtol=0)
        diffs[yaw] = geometry.world_to_camera(bottom_centre[:, None], cams.R, cams.t)[:, 0, 2] - o.z_m
    assert max(d.abs().max().item() for d in diffs.values()) < 0.12, diffs
    assert diffs[90.0].abs().max() < 0.03 and diffs[270.0].abs().max() < 0.03, diffs
    assert (sum(diffs.values()) / 4).abs().max() < 0.01, diffs
    assert diffs[0.0].mean() < 0 < diffs[180.0].mean()  # facing the camera (yaw 0): the box is nearer


def test_generate_small_set_is_valid_and_deterministic(tmp_path):
    cfg = gen_cfg(
        tmp_path, "num_samples=2000", "shard_size=800", "samples_per_pose=4", "out_dir=" + str(tmp_path / "a")
    )
    out = pipeline.generate(cfg)
    m = shards.load_manifest(out)
    assert m["complete"] and m["num_shards"] == 3 and [s["rows"] for s in m["shards"]] == [800, 800, 400]
    assert m["columns"] == ALL_COLS and m["seed"] == 0 and m["dataset_id"] == dataset.dataset_id(cfg)
    assert m["config"]["num_samples"] == 2000 and "camera" in m["config"]
    for s in m["shards"]:
        assert shards.sha256_file(out / s["file"]) == s["sha256"]
        assert pq.read_schema(out / s["file"]).names == ALL_COLS
    df = shards.read_frame(out, verify=True)
    assert len(df) == 2000 and df.sample_id.tolist() == list(range(2000))
    assert df.z_m.dtype == np.float32 and df.source.eq("analytic").all() and df.walk.dtype == bool
    assert df.z_m.between(1.0, 60.0).all() and np.allclose(df.z_m, df.hip_cam_z_m)
    # samples_per_pose cameras per pose: same body and pose, different cameras.
    per_pose = df.groupby("pose_id").agg(n=("z_m", "size"), b=("body_id", "nunique"), z=("z_m", "nunique"))
    assert (per_pose.n <= 4).all() and (per_pose.b == 1).all() and (per_pose.z == per_pose.n).all()
    assert per_pose.n.sum() == 2000
    vis = (df[[f"{n}_c" for n in ("nose", "left_hip", "right_ankle")]] >= 0.1).mean()
    assert (vis > 0.2).all() and (vis < 0.99).all()
    # Same seed -> same data; reusing the directory is a no-op; another seed -> other data.
    cfg_b = gen_cfg(
        tmp_path, "num_samples=2000", "shard_size=800", "samples_per_pose=4", "out_dir=" + str(tmp_path / "b")
    )
    assert pipeline.ensure_dataset(cfg_b) == tmp_path / "b"
    assert shards.read_frame(tmp_path / "b").equals(df)
    assert [s["sha256"] for s in shards.load_manifest(tmp_path / "b")["shards"]] == [
        s["sha256"] for s in m["shards"]
    ]
    mtime = (out / "shard-00000.parquet").stat().st_mtime_ns
    pipeline.ensure_dataset(cfg)
    assert (out / "shard-00000.parquet").stat().st_mtime_ns == mtime
    cfg_c = gen_cfg(
        tmp_path,
        "num_samples=800",
        "shard_size=800",
        "samples_per_pose=4",
        "seed=1",
        "out_dir=" + str(tmp_path / "c"),
    )
    other = shards.read_frame(pipeline.generate(cfg_c))
    assert not np.allclose(other.z_m.to_numpy(), df.z_m.to_numpy()[:800])
    # A different config in an existing directory is refused unless overwrite=true.
    bad = gen_cfg(
        tmp_path,
        "num_samples=2000",
        "shard_size=800",
        "samples_per_pose=4",
        "camera.depth_max_m=30",
        "out_dir=" + str(out),
    )
    with pytest.raises(config.GenerationConfigError, match="different dataset.*camera"):
        pipeline.generate(bad)
    bad.overwrite = True
    assert shards.read_frame(pipeline.generate(bad)).z_m.max() <= 30.0


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "depth_pose.cli.generate", *SMALL, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_resume_after_sigkill_gives_identical_data(tmp_path):
    common = [
        "num_samples=6000",
        "shard_size=400",
        "samples_per_pose=8",
        f"paths.root_dir={tmp_path}",
        "hydra.run.dir=" + str(tmp_path / "hydra"),
    ]
    killed = tmp_path / "killed"
    proc = _cli(*common, f"out_dir={killed}", "workers=2")  # the data do not depend on the worker count
    t0 = time.time()
    n_done = 0
    while time.time() - t0 < 120 and proc.poll() is None:
        if (killed / shards.MANIFEST).exists():
            try:
                n_done = len(shards.load_manifest(killed)["shards"])
            except Exception:  # noqa: BLE001  (being replaced right now)
                n_done = 0
            if n_done >= 2:
                break
        time.sleep(0.02)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Its forked workers end with it instead of holding memory as orphans (idle Pool workers see EOF; a busy
    # one is ended at once by generation.lifetime.die_with_parent, which test_render checks on a long job).
    deadline = time.time() + 15
    while (orphans := processes_mentioning(f"out_dir={killed}")) and time.time() < deadline:
        time.sleep(0.2)
    assert not orphans, f"generation workers {orphans} outlived their killed parent"
    m = shards.load_manifest(killed)
    print(f"killed after {len(m['shards'])} shards, complete={m['complete']}")
    if m["complete"]:  # finished before the kill: simulate it by dropping the last shard and its entry
        last = m["shards"].pop()
        (killed / last["file"]).unlink()
        m["complete"] = False
        shards.write_manifest(killed, m)
    assert not m["complete"] and 0 < len(m["shards"]) < 15
    with pytest.raises(RuntimeError, match="incomplete"):
        shards.read_table(killed)
    pipeline.generate(gen_cfg(tmp_path, *common[:3], f"out_dir={killed}"))
    full = pipeline.generate(gen_cfg(tmp_path, *common[:3], f"out_dir={tmp_path / 'full'}"))
    a, b = shards.read_frame(killed), shards.read_frame(full)
    assert len(a) == 6000 and a.equals(b)
    assert [s["sha256"] for s in shards.load_manifest(killed)["shards"]] == [
        s["sha256"] for s in shards.load_manifest(full)["shards"]
    ]
    assert not list(killed.glob(".*.tmp"))


def test_bad_config_exits_with_clear_message(tmp_path):
    p = _cli(
        "num_samples=-5",
        f"paths.root_dir={tmp_path}",
        f"out_dir={tmp_path / 'x'}",
        "hydra.run.dir=" + str(tmp_path / "hydra"),
    )
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2, (out, err)
    assert "num_samples must be an integer >= 1, got -5" in err and "Traceback" not in err
    for args, msg in (
        (["camera.depth_min_m=30", "camera.depth_max_m=10"], "bad camera config.*depth_min_m"),
        (["noise.visible_conf_min=0.05"], "bad noise config.*threshold"),
        (["samples_per_pose=0"], "samples_per_pose must be an integer >= 1"),
        (["pose_sampling.p_preset=2"], "bad pose_sampling config.*p_preset"),
    ):
        with pytest.raises(config.GenerationConfigError, match=msg):
            pipeline.generate(gen_cfg(tmp_path, *args, f"out_dir={tmp_path / 'x'}"))
    assert not (tmp_path / "x").exists()


def test_hybrid_tag_frequencies_match_config(tmp_path):
    """200k hybrid samples: each tag's pose-level frequency matches its configured probability (z-test)."""
    cfg = gen_cfg(
        tmp_path,
        "pose_sampling=hybrid",
        "num_samples=200000",
        "samples_per_pose=8",
        "out_dir=" + str(tmp_path / "h"),
    )
    df = shards.read_frame(pipeline.generate(cfg), columns=["pose_id", *TAG_COLS])
    assert len(df) == 200000
    poses = df.groupby("pose_id").first()  # one row per pose: cameras repeat a pose
    assert len(poses) == 25000
    expected = expected_tag_probabilities(cfg.pose_sampling)
    assert expected, "no tag probabilities found in pose_sampling config"
    for tag, p in expected.items():
        n = len(poses)
        freq = poses[tag].mean()
        z = (freq - p) / math.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs(z) < 4.5, f"{tag}: frequency {freq:.4f} vs configured {p:.4f} (z = {z:.1f})"


def expected_tag_probabilities(pcfg) -> dict[str, float]:
    """Per-pose probability of each tag implied by the hybrid sampler's config (see HybridPoseSampler)."""
    sampler = instantiate(pcfg)
    p_pre, p_both = sampler.p_preset, sampler.p_both_walk
    w = sampler.preset_weights / sampler.preset_weights.sum()
    allowed = torch.tensor([float(sampler.presets[k].hands_up) for k in sampler.preset_names])
    p_allowed = (1 - p_pre) + p_pre * float((w * allowed).sum())
    return {
        "walk": (1 - p_pre) * (1 - p_both),
        "both_walk": (1 - p_pre) * p_both,
        "hands_up": sampler.p_hands_up * p_allowed,
        "spine_turn": sampler.p_spine_turn,
        "head_turn": sampler.p_head_turn,
    }


def test_exact_kitti_variant(tmp_path):
    """noise=none + camera=kitti: exact keypoints (confidence 1/0 = gt visibility) from a level 1.65 m
    camera."""
    cfg = gen_cfg(
        tmp_path,
        "noise=none",
        "camera=kitti",
        "num_samples=800",
        "shard_size=800",
        "out_dir=" + str(tmp_path / "k"),
    )
    df = shards.read_frame(pipeline.generate(cfg))
    assert (df.img_w == 1242).all() and (df.img_h == 375).all() and np.allclose(df.fx, 721.0, atol=0.5)
    assert np.allclose(df.ground_cam_y_m, 1.65, atol=1e-4) and np.allclose(
        df.ground_cam_z_m, df.z_m, atol=1e-4
    )
    conf = df[[c for c in df.columns if c.endswith("_c") and not c.startswith("gt_")]].to_numpy()
    bits = ((df.gt_vis_mask.to_numpy()[:, None] >> np.arange(17)) & 1).astype(bool)
    assert set(np.unique(conf)) <= {0.0, 1.0} and ((conf == 1.0) == bits).all()
    assert np.allclose(df.nose_x, df.gt_nose_x, equal_nan=True)
