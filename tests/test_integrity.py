"""Nothing silently wrong: corrupt sets and model files are refused (named, one line, exit 2), by default.

Sets: every shard read is checked against manifest.json (sha256 while reading, Parquet row count, rows vs
``num_samples``), in ``read_table``, the datamodule, ``dp-eval dataset=`` and ``dp-train data.dir=``;
``verify=False`` skips the hash. Models: the exported JSON carries the sha256 of its .safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from depth_pose import shards
from depth_pose.data import DeviceDataModule, load_host_set
from depth_pose.errors import InputError
from depth_pose.eval.io import EvalInputError, read_synthetic_set
from depth_pose.predictor import DEFAULT_MODEL, CorruptModelError, DepthPredictor

SHARD = "shard-00000.parquet"


# ---- corrupting copies ----
def copy_set(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def flip_bytes(path: Path, n: int = 64) -> None:
    """XOR ``n`` bytes in the middle of ``path`` (same size, same name)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    path.write_bytes(bytes(data))


def triple_depth(set_dir: Path) -> None:
    """Rewrite shard 0 as valid Parquet with the target ``z_m`` x 3 (the manifest is left as it was)."""
    path = set_dir / SHARD
    table = pq.read_table(path)
    i = table.schema.get_field_index("z_m")
    z = table.column("z_m").to_numpy() * np.float32(3)
    pq.write_table(table.set_column(i, "z_m", [z]), path, compression="zstd")


@pytest.fixture
def bad_bytes(toy_set_dir, tmp_path) -> Path:
    d = copy_set(toy_set_dir, tmp_path / "flipped")
    flip_bytes(d / SHARD)
    return d


@pytest.fixture
def bad_depth(toy_set_dir, tmp_path) -> Path:
    d = copy_set(toy_set_dir, tmp_path / "z_times_3")
    triple_depth(d)
    return d


def error_lines(stderr: str, prog: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{prog}: error:")]


# ---- sets: the reading API ----
def test_clean_set_reads_verified(toy_set_dir):
    assert shards.read_table(toy_set_dir).num_rows == 24000  # verify=True is the default
    assert len(shards.shard_paths(toy_set_dir)) == 2


@pytest.mark.parametrize("kind", ["bad_bytes", "bad_depth"])
def test_corrupt_shard_refused_by_read_table(kind, request):
    d = request.getfixturevalue(kind)
    for read in (
        lambda: shards.read_table(d),
        lambda: shards.read_table(d, columns=["z_m"], max_rows=10),
        lambda: shards.read_frame(d),
        lambda: shards.shard_paths(d),
    ):
        with pytest.raises(shards.CorruptSetError, match=f"shard .*{SHARD}.*sha256") as e:
            read()
        assert isinstance(e.value, InputError)


def test_verify_false_skips_the_hash(bad_depth, toy_set_dir):
    z = shards.read_table(bad_depth, columns=["z_m"], verify=False).column("z_m").to_numpy()
    z0 = shards.read_table(toy_set_dir, columns=["z_m"]).column("z_m").to_numpy()
    np.testing.assert_allclose(z[:12000], 3 * z0[:12000], rtol=1e-6)  # read as it is: trusted, not checked
    assert len(load_host_set(bad_depth, verify=False)) == 24000


def test_row_count_mismatch_refused(toy_set_dir, tmp_path):
    # A shard with fewer rows than its manifest entry, its sha256 updated: the row count catches it.
    d = copy_set(toy_set_dir, tmp_path / "short")
    table = pq.read_table(d / SHARD)
    pq.write_table(table.slice(0, 1000), d / SHARD)
    m = shards.load_manifest(d)
    m["shards"][0]["sha256"] = shards.sha256_file(d / SHARD)
    shards.write_manifest(d, m)
    for verify in (True, False):  # row counts are checked even without the hash
        with pytest.raises(shards.CorruptSetError, match=f"{SHARD} has 1000 rows but .* says 12000"):
            shards.read_table(d, verify=verify)
    # Shard rows that do not add up to num_samples in a complete set.
    d2 = copy_set(toy_set_dir, tmp_path / "sum")
    m = shards.load_manifest(d2)
    shards.write_manifest(d2, {**m, "num_samples": 30000})
    with pytest.raises(shards.CorruptSetError, match="24000 rows but manifest.json says num_samples=30000"):
        shards.read_table(d2)


def test_missing_shard_refused(toy_set_dir, tmp_path):
    d = copy_set(toy_set_dir, tmp_path / "missing")
    (d / "shard-00001.parquet").unlink()
    with pytest.raises(
        shards.CorruptSetError, match="shard-00001.parquet is listed in the manifest but missing"
    ):
        shards.read_table(d)


def _edited(m: dict, how: str, outside: Path) -> dict:
    """``m`` (a two-shard set's manifest) edited by hand, ``how``; each listed file still matches its hash."""
    a, b = m["shards"]
    return {
        "drop": {**m, "shards": [a], "num_samples": a["rows"]},  # rows add up; num_shards says 2
        "twice": {**m, "shards": [a, {**a}, b], "num_samples": 2 * a["rows"] + b["rows"]},
        "traversal": {**m, "shards": [a, {**b, "file": f"../{outside.name}/{SHARD}"}]},
        "absolute": {**m, "shards": [a, {**b, "file": str(outside / SHARD)}]},
        "num-shards-text": {**m, "num_shards": "x"},
    }[how]


@pytest.mark.parametrize("how", ["drop", "twice", "traversal", "absolute", "num-shards-text"])
def test_a_hand_edited_shard_list_is_refused(how, toy_set_dir, tmp_path):
    """Each listed file matching its sha256 is not enough: a shard dropped, counted twice, read from outside
    the set (``../``, an absolute path) or a shard count that is no number is an edited manifest."""
    d = copy_set(toy_set_dir, tmp_path / "set")
    outside = copy_set(toy_set_dir, tmp_path / "other")
    shards.write_manifest(d, _edited(shards.load_manifest(d), how, outside))
    with pytest.raises(shards.CorruptSetError, match="corrupt or edited manifest"):
        shards.read_table(d)


# ---- sets: datamodule, dp-eval, dp-train ----
def test_corrupt_set_refused_by_datamodule(bad_depth):
    dm = DeviceDataModule(dir=bad_depth, batch_size=256, device="cpu")
    with pytest.raises(shards.CorruptSetError, match=SHARD):
        dm.setup("fit")
    trusted = DeviceDataModule(dir=bad_depth, batch_size=256, device="cpu", verify=False)
    trusted.setup("fit")  # data.verify=false: a trusted hot loop reads without hashing
    assert sum(trusted.split_sizes.values()) == 24000


def test_read_synthetic_set_refuses_corrupt_set(bad_bytes):
    with pytest.raises(EvalInputError, match=f"{SHARD}.*sha256"):
        read_synthetic_set(bad_bytes, max_rows=100)


def run(prog: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    module = {"dp-eval": "depth_pose.cli.eval", "dp-train": "depth_pose.cli.train"}[prog]
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, "-m", module, *args, f"hydra.run.dir={cwd / 'hydra_run'}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow  # two dp-eval start-ups; read_table / the datamodule refuse the same sets in-process
@pytest.mark.parametrize("kind", ["bad_bytes", "bad_depth"])
def test_dp_eval_refuses_corrupt_set(kind, request, tiny_model, tmp_path):
    d = request.getfixturevalue(kind)
    r = run("dp-eval", [f"dataset={d}", "out=p.jsonl", f"ckpt={tiny_model}", "plots=false"], tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = error_lines(r.stderr, "dp-eval")
    assert len(lines) == 1 and SHARD in lines[0] and "sha256" in lines[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.slow  # a dp-train start-up (Lightning, Trainer) in a subprocess
def test_dp_train_refuses_corrupt_set(bad_depth, tmp_path):
    r = run(
        "dp-train",
        [f"data.dir={bad_depth}", "logger=csv", "trainer.max_epochs=1", f"paths.output_dir={tmp_path / 'o'}"],
        tmp_path,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    lines = error_lines(r.stderr, "dp-train")
    assert len(lines) == 1 and SHARD in lines[0] and "sha256" in lines[0], r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert not list((tmp_path / "o").glob("**/*.ckpt"))  # nothing trained


# ---- models ----
def copy_model(model: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(model.with_suffix(suffix), dst / model.with_suffix(suffix).name)
    return dst / model.name


def test_export_writes_the_checksum(tiny_model):
    meta = json.loads(tiny_model.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified model loads without a warning
        DepthPredictor.load(tiny_model)


def test_shipped_model_carries_its_checksum():
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()


def test_corrupt_model_refused(tiny_model, tmp_path):
    model = copy_model(tiny_model, tmp_path)
    flip_bytes(model, 64)
    with pytest.raises(CorruptModelError, match=f"model file .*{model.name} does not match the sha256") as e:
        DepthPredictor.load(model)
    assert isinstance(e.value, InputError) and "\n" not in str(e.value)


def test_model_without_checksum_loads_with_a_warning(tiny_model, tmp_path):
    model = copy_model(tiny_model, tmp_path)
    meta_path = model.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    del meta["sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="no sha256"):
        pred = DepthPredictor.load(model)
    kp = np.zeros((1, 17, 3), np.float32)
    kp[..., 0], kp[..., 1], kp[..., 2] = np.linspace(500, 540, 17), np.linspace(100, 300, 17), 0.9
    K = np.array([[720.0, 0, 620], [0, 720, 190], [0, 0, 1]])
    ref = DepthPredictor.load(tiny_model).predict(kp, K)
    np.testing.assert_array_equal(pred.predict(kp, K).z_m, ref.z_m)


def test_random_bytes_as_ckpt_is_one_clear_line(tmp_path, toy_set_dir):
    ckpt = tmp_path / "random.ckpt"
    ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CorruptModelError, match=f"{ckpt.name} is not a readable PyTorch checkpoint") as e:
        DepthPredictor.load(ckpt)
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    args = [f"dataset={toy_set_dir}", "dataset_max_rows=100", "out=p.jsonl", f"ckpt={ckpt}", "plots=false"]
    r = run("dp-eval", args, tmp_path)
    lines = error_lines(r.stderr, "dp-eval")
    assert r.returncode == 2 and len(lines) == 1 and ckpt.name in lines[0], r.stderr[-2000:]
    assert "weights_only" not in r.stderr and "Traceback" not in r.stderr
