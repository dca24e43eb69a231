"""Saved body banks (generation/bank.py) and the saved bone axes (generation/data/bone_axes.json): the same
numbers, sets and ids as the Anny body model, refused when modified, and usable with Anny unimportable."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, compose

from depth_pose import shards
from depth_pose.errors import InputError
from generation import config, dataset, pipeline
from generation.bank import BankBody, make_bank, meta_path, read_meta
from generation.body import BodyModel
from generation.pose import HybridPoseSampler

# Everything here builds a bank (or reads the bone axes) with Anny.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("anny") is None, reason="needs Anny")
N_BODIES = 32


@pytest.fixture(scope="module")
def body() -> BodyModel:
    torch.set_num_threads(2)
    return BodyModel(n_bodies=N_BODIES, seed=0)


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory) -> Path:
    """A bank made like `python -m generation.bank OUT n_bodies=32` (the bodies of ``body``)."""
    return make_bank(tmp_path_factory.mktemp("bank") / "bank.safetensors", [f"n_bodies={N_BODIES}"])


def _hybrid(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    poses = HybridPoseSampler().sample(n, g)
    return poses, torch.randint(N_BODIES, (n,), generator=g)


def test_bank_poses_exactly_like_the_body_model(body, bank_path):
    meta = read_meta(bank_path)
    assert meta["n_bodies"] == N_BODIES and meta["seed"] == 0 and meta["config"]["n_bodies"] == N_BODIES
    bank = BankBody(bank_path, seed=0)
    assert len(bank.shapes) == N_BODIES and bank.bone_names == body.bone_names and bank.device == body.device
    assert bank.shapes.phenotype_labels == body.shapes.phenotype_labels
    for name in ("phenotypes", "stature_m", "age_years", "gender"):
        assert torch.equal(getattr(bank.shapes, name), getattr(body.shapes, name)), name
    poses, bi = _hybrid(500, seed=1)
    assert torch.equal(bank.keypoints23(bi, poses, chunk=77), body.keypoints23(bi, poses, chunk=77))
    ours, theirs = bank.pose(bi, poses), body.pose(bi, poses)
    assert torch.equal(ours.keypoints, theirs.keypoints)
    assert torch.equal(ours.extra_points, theirs.extra_points)
    rest = bank.identity_poses(3)
    assert torch.equal(bank.pose(bi[:3], rest).keypoints, body.pose(bi[:3], rest).keypoints)
    with pytest.raises(InputError, match="body=anny"):
        bank.mesh(bi[:1], rest)


def test_set_with_bank_equals_set_with_anny(bank_path, tmp_path):
    """Same dataset id, same shard bytes: body=bank reproduces body=anny with the bank's config and seed."""
    common = ["num_samples=600", "shard_size=300", "samples_per_pose=4", "progress=false"]
    made = {}
    for name, body in (
        ("anny", [f"body.n_bodies={N_BODIES}"]),
        ("bank", ["body=bank", f"body.path={bank_path}"]),
    ):
        where = [f"paths.root_dir={tmp_path}", f"out_dir={tmp_path / name}"]
        cfg = compose("generate", [*common, *body, *where])
        out = pipeline.generate(cfg)
        made[name] = shards.load_manifest(out)
    a, b = made["anny"], made["bank"]
    assert a["dataset_id"] == b["dataset_id"] and a["id_config"] == b["id_config"]
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]] and len(a["shards"]) == 2
    assert b["config"]["body"]["_target_"] == "generation.bank.BankBody"  # what was run is still recorded


def test_anny_dataset_id_is_unchanged():
    """A body=anny id hashes the body config as it is (as before banks): only bank nodes are swapped."""
    cfg = compose("generate", ["paths.root_dir=/tmp"])
    assert dataset.id_payload(cfg)["body"] == config.resolved(cfg.body)


def test_modified_missing_or_other_seed_bank_is_refused(bank_path, tmp_path):
    bad = tmp_path / "bad.safetensors"
    blob = bytearray(bank_path.read_bytes())
    blob[-5] ^= 0x01  # one bit of one tensor value
    bad.write_bytes(bytes(blob))
    shutil.copy(meta_path(bank_path), meta_path(bad))
    with pytest.raises(InputError, match=f"body bank {bad} was modified"):
        BankBody(bad)
    with pytest.raises(InputError, match="body bank not found: .*nowhere.safetensors"):
        BankBody(tmp_path / "nowhere.safetensors")
    with pytest.raises(InputError, match="seed 0, not seed 3"):
        BankBody(bank_path, seed=3)
    with pytest.raises(InputError, match="not found"):  # and an id needs the bank too
        dataset.dataset_id(compose("generate", ["body=bank", f"body.path={tmp_path / 'x.safetensors'}"]))


_NO_ANNY = """
import sys
sys.modules["anny"] = None  # `import anny` raises ImportError from here on
import torch
from generation.bank import BankBody
from generation.pose import HybridPoseSampler
from generation.anny_model import bone_axes
bank = BankBody(sys.argv[1], seed=0)
g = torch.Generator().manual_seed(2)
poses = HybridPoseSampler().sample(100, g)
bi = torch.randint(len(bank.shapes), (100,), generator=g)
torch.save(bank.pose(bi, poses).keypoints, sys.argv[2])
try:
    bone_axes("no_such_bone")
except ImportError as e:
    print("NO_ANNY_OK", e)
sys.path.insert(0, "tests")
from helpers import compose
from generation import pipeline
from depth_pose import shards
where = [f"paths.root_dir={sys.argv[3]}", f"out_dir={sys.argv[3]}/set", "progress=false"]
cfg = compose("generate", ["body=bank", f"body.path={sys.argv[1]}", "num_samples=200", *where])
print("SET_COMPLETE", shards.load_manifest(pipeline.generate(cfg))["complete"])
"""


def test_bank_pose_samplers_and_generate_without_anny(body, bank_path, tmp_path):
    out = tmp_path / "kp.pt"
    res = subprocess.run(
        [sys.executable, "-c", _NO_ANNY, str(bank_path), str(out), str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "NO_ANNY_OK" in res.stdout and "Anny is not installed" in res.stdout, res.stdout
    assert "SET_COMPLETE True" in res.stdout, res.stdout  # dp-generate's plain function, body=bank
    g = torch.Generator().manual_seed(2)
    poses = HybridPoseSampler().sample(100, g)
    bi = torch.randint(N_BODIES, (100,), generator=g)
    assert torch.equal(torch.load(out), body.pose(bi, poses).keypoints)


def test_saved_bone_axes_equal_anny():
    """generation/data/bone_axes.json is what the installed Anny gives (regenerate: write_bone_axes)."""
    from generation.anny_model import BONE_AXES, bone_axes_from_anny

    saved = json.loads(BONE_AXES.read_text())
    assert saved["bones"] == bone_axes_from_anny()
