"""Parquet shards + ``manifest.json``: the on-disk form of a synthetic set (atomic writes, resumable).

A dataset directory holds ``shard-00000.parquet, shard-00001.parquet, ...`` (columns exactly
:data:`depth_pose.schema.ALL_COLS`) and ``manifest.json``::

    {"format": "depth_pose.shards/1", "dataset_id": ..., "seed": ..., "config": {...resolved...},
     "num_samples": N, "shard_size": S, "num_shards": n, "columns": [...], "complete": bool,
     "shards": [{"index": i, "file": "shard-0000i.parquet", "rows": r, "sha256": ...}, ...]}

A shard is listed in the manifest only after its file was atomically written, so the manifest is the source of
truth: readers only read listed shards and a resumed run regenerates everything else.

Reading API (trainer, notebooks): :func:`read_table`, :func:`read_frame`, :func:`load_manifest`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from depth_pose.fileio import atomic_write
from depth_pose.schema import ALL_COLS, TAG_COLS

MANIFEST = "manifest.json"
FORMAT = "depth_pose.shards/1"
SHARD_GLOB = "shard-*.parquet"

# Column types: float32 by default; these are the exceptions.
_INT64 = {"sample_id", "pose_id"}
_INT32 = {"gt_vis_mask", "img_w", "img_h", "body_id"}
_STRING = {"source", "strategy", "preset"}
_BOOL = set(TAG_COLS)


def _arrow_type(col: str) -> pa.DataType:
    if col in _INT64:
        return pa.int64()
    if col in _INT32:
        return pa.int32()
    if col in _STRING:
        return pa.string()
    if col in _BOOL:
        return pa.bool_()
    return pa.float32()


SCHEMA: pa.Schema = pa.schema([pa.field(c, _arrow_type(c)) for c in ALL_COLS])


def shard_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"shard-{index:05d}.parquet"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def to_table(columns: Mapping[str, Any]) -> pa.Table:
    """Build a table with :data:`SCHEMA` from column arrays (numpy/torch/lists); missing columns are an error.

    Strings may be given as a single ``str`` (broadcast to every row).
    """
    missing = [c for c in ALL_COLS if c not in columns]
    if missing:
        raise KeyError(f"shard is missing columns: {missing}")
    extra = sorted(set(columns) - set(ALL_COLS))
    if extra:
        raise KeyError(f"shard has columns outside depth_pose.schema.ALL_COLS: {extra}")
    lengths = {c: len(columns[c]) for c in ALL_COLS if not isinstance(columns[c], str)}
    n = next(iter(lengths.values()), 0)
    arrays = []
    for field in SCHEMA:
        v = columns[field.name]
        if isinstance(v, str):
            arr = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n or 0, np.int32)), pa.array([v])).cast(
                field.type
            )
        elif isinstance(v, pa.Array | pa.ChunkedArray):
            arr = v.cast(field.type)
        elif field.type == pa.string():
            names, codes = np.unique(np.asarray(v, dtype=str), return_inverse=True)
            arr = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(names.tolist()))
            arr = arr.cast(field.type)
        else:
            if hasattr(v, "detach"):  # torch tensor
                v = v.detach().cpu().numpy()
            arr = pa.array(np.asarray(v).astype(field.type.to_pandas_dtype(), copy=False), type=field.type)
        if len(arr) != n:
            raise ValueError(f"column {field.name!r} has {len(arr)} rows, expected {n}")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


# Dictionary-encode only low-cardinality columns: on float columns it makes writing much slower
# (docs/bench_generation.md).
DICTIONARY_COLS = ["source", "strategy", "preset", "img_w", "img_h"]


def write_shard(out_dir: str | Path, index: int, table: pa.Table, compression: str = "zstd") -> dict:
    """Atomically write shard ``index``; returns its manifest entry (index, file, rows, sha256)."""
    if table.schema != SCHEMA:
        table = table.cast(SCHEMA)
    path = Path(out_dir) / shard_name(index)
    atomic_write(
        path, lambda tmp: pq.write_table(table, tmp, compression=compression, use_dictionary=DICTIONARY_COLS)
    )
    return {"index": int(index), "file": path.name, "rows": int(table.num_rows), "sha256": sha256_file(path)}


def write_manifest(out_dir: str | Path, manifest: dict) -> Path:
    """Atomically write ``manifest.json``."""
    path = Path(out_dir) / MANIFEST

    def _write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=False)
            f.write("\n")

    atomic_write(path, _write)
    return path


def load_manifest(path: str | Path) -> dict:
    """The ``manifest.json`` of a dataset directory (or the file itself) as a dict."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no {MANIFEST} in {path.parent}: not a depth_pose dataset (run dp-generate)")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown manifest format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def shard_paths(path: str | Path, require_complete: bool = False, verify: bool = False) -> list[Path]:
    """Paths of the shards listed in the manifest, in index order.

    ``require_complete``: error if the run that wrote the set has not finished. ``verify``: check sha256.
    """
    root = Path(path)
    manifest = load_manifest(root)
    if require_complete and not manifest.get("complete", False):
        done = sum(s["rows"] for s in manifest["shards"])
        raise RuntimeError(
            f"dataset {root} is incomplete ({done}/{manifest['num_samples']} rows); "
            "rerun dp-generate to resume"
        )
    out = []
    for entry in sorted(manifest["shards"], key=lambda s: s["index"]):
        p = root / entry["file"]
        if not p.exists():
            raise FileNotFoundError(f"shard {p} is listed in the manifest but missing")
        if verify and sha256_file(p) != entry["sha256"]:
            raise ValueError(f"shard {p} does not match its sha256 in the manifest (corrupt or modified)")
        out.append(p)
    return out


def read_table(
    path: str | Path,
    columns: Sequence[str] | None = None,
    require_complete: bool = True,
    verify: bool = False,
    max_rows: int | None = None,
) -> pa.Table:
    """All listed shards of a dataset directory as one Arrow table (optionally only ``columns``; with
    ``max_rows``, the first rows in shard order, reading only the shards they need)."""
    cols = list(columns) if columns is not None else None
    if cols is not None:
        unknown = [c for c in cols if c not in SCHEMA.names]
        if unknown:
            raise KeyError(f"unknown columns {unknown}; see depth_pose.schema.ALL_COLS")
    paths = shard_paths(path, require_complete=require_complete, verify=verify)
    schema = SCHEMA if cols is None else pa.schema([SCHEMA.field(c) for c in cols])
    if not paths:
        return schema.empty_table()
    tables, rows = [], 0
    for p in paths:
        if max_rows is not None and rows >= max_rows:
            break
        tables.append(pq.read_table(p, columns=cols))
        rows += tables[-1].num_rows
    if not tables:  # max_rows=0
        return schema.empty_table()
    table = pa.concat_tables(tables).cast(schema)
    return table if max_rows is None else table.slice(0, max_rows)


def read_frame(
    path: str | Path,
    columns: Sequence[str] | None = None,
    require_complete: bool = True,
    verify: bool = False,
):
    """All listed shards of a dataset directory as one ``pandas.DataFrame``."""
    return read_table(path, columns, require_complete=require_complete, verify=verify).to_pandas()
