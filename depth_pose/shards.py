"""Parquet shards + ``manifest.json``: the on-disk form of a synthetic set (atomic writes, resumable).

A dataset directory holds ``shard-00000.parquet, shard-00001.parquet, ...`` (columns exactly
:data:`depth_pose.schema.ALL_COLS`) and ``manifest.json``::

    {"format": "depth_pose.shards/1", "dataset_id": ..., "seed": ..., "config": {...resolved...},
     "num_samples": N, "shard_size": S, "num_shards": n, "columns": [...], "complete": bool,
     "shards": [{"index": i, "file": "shard-0000i.parquet", "rows": r, "sha256": ...}, ...]}

A shard is listed in the manifest only after its file was atomically written, so the manifest is the source of
truth: readers only read listed shards and a resumed run regenerates everything else.

Reading API (trainer, notebooks): :func:`read_table`, :func:`read_frame`, :func:`load_manifest`
(:func:`read_table_deferred` for callers that overlap the hash with their own work). Reads are
verified by default (sha256 and row count of every shard read, rows vs ``num_samples``): a set that does not
match its manifest raises :class:`CorruptSetError` naming the shard.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from depth_pose.errors import InputError
from depth_pose.fileio import atomic_write
from depth_pose.schema import ALL_COLS, TAG_COLS

MANIFEST = "manifest.json"
FORMAT = "depth_pose.shards/1"
SHARD_GLOB = "shard-*.parquet"


class CorruptSetError(InputError):
    """A dataset's files do not match its manifest (sha256, row count, missing shard): refused, never used."""


class IncompleteSetError(InputError, RuntimeError):
    """A set whose generation has not finished (a killed run, one ``shard_range`` part): resume or merge it
    first (exit 2; still a ``RuntimeError`` for older callers)."""


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
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        what = f"a file, not a dataset folder (shards + {MANIFEST})" if path.name != MANIFEST else "not JSON"
        raise ValueError(f"{path} is {what}: {e}") from e
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a depth_pose manifest (a JSON {type(manifest).__name__})")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown manifest format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def _entry_ok(e: object) -> bool:
    """A shard entry of a manifest: index, rows (non-negative integers), file and sha256 (strings)."""
    if not isinstance(e, dict) or not {"index", "file", "rows", "sha256"} <= e.keys():
        return False
    ints = all(isinstance(e[k], int) and not isinstance(e[k], bool) and e[k] >= 0 for k in ("index", "rows"))
    return ints and isinstance(e["file"], str) and isinstance(e["sha256"], str)


def check_manifest(path: str | Path, manifest: dict, require_complete: bool = False) -> None:
    """Refuse a manifest whose shard list does not add up (:class:`CorruptSetError`); with
    ``require_complete``, refuse an unfinished set (:class:`IncompleteSetError`)."""
    root = Path(path)
    entries = manifest.get("shards")
    if not isinstance(entries, list) or not all(_entry_ok(e) for e in entries):
        raise CorruptSetError(f"dataset {root}: {MANIFEST} has a malformed shard list")
    index = [e["index"] for e in entries]
    if len(set(index)) != len(index) or any(e["file"] != shard_name(e["index"]) for e in entries):
        raise CorruptSetError(  # a file elsewhere (../, an absolute path) or one shard counted twice
            f"dataset {root}: {MANIFEST} lists a shard twice or under another name than its "
            f"{shard_name(0).replace('0', 'N')} (corrupt or edited manifest)"
        )
    n = manifest.get("num_shards", len(entries))
    if manifest.get("complete", False) and (
        isinstance(n, bool) or not isinstance(n, int) or sorted(index) != list(range(n))
    ):
        raise CorruptSetError(
            f"dataset {root}: {MANIFEST} says num_shards={n!r} but lists the shards {sorted(index)[:8]}"
            f"{' ...' if len(index) > 8 else ''} (corrupt or edited manifest)"
        )
    done = sum(int(e["rows"]) for e in entries)
    if require_complete and not manifest.get("complete", False):
        raise IncompleteSetError(
            f"dataset {root} is incomplete ({done}/{manifest['num_samples']} rows); "
            "rerun dp-generate to resume"
        )
    if manifest.get("complete", False) and done != manifest.get("num_samples"):
        raise CorruptSetError(
            f"dataset {root}: its shards list {done} rows but {MANIFEST} says num_samples="
            f"{manifest.get('num_samples')} (corrupt or edited manifest)"
        )


def shard_paths(path: str | Path, require_complete: bool = False, verify: bool = True) -> list[Path]:
    """Paths of the shards listed in the manifest, in index order.

    ``require_complete``: error if the run that wrote the set has not finished. ``verify``: hash every
    listed shard and compare with the manifest's sha256 (:class:`CorruptSetError` naming the shard);
    :func:`read_table` checks while it reads instead.
    """
    root = Path(path)
    manifest = load_manifest(root)
    check_manifest(root, manifest, require_complete)
    out = []
    for entry in sorted(manifest["shards"], key=lambda s: s["index"]):
        p = root / entry["file"]
        if not p.exists():
            raise CorruptSetError(f"shard {p} is listed in the manifest but missing")
        if verify:
            _check_sha(p, entry, sha256_file(p))
        out.append(p)
    return out


def _check_sha(path: Path, entry: dict, digest: str) -> None:
    if digest != entry["sha256"]:
        raise CorruptSetError(
            f"shard {path} does not match its sha256 in {MANIFEST} (corrupt or modified); "
            "regenerate the set (dp-generate overwrite=true) or restore the file"
        )


def read_table(
    path: str | Path,
    columns: Sequence[str] | None = None,
    require_complete: bool = True,
    verify: bool = True,
    max_rows: int | None = None,
) -> pa.Table:
    """All listed shards of a dataset directory as one Arrow table (optionally only ``columns``; with
    ``max_rows``, the first rows in shard order, reading only the shards they need).

    Every shard read is checked against its manifest entry: its Parquet row count always, its sha256 with
    ``verify`` (the default; hashed in a thread while the shards are decoded). A mismatch raises
    :class:`CorruptSetError` naming the shard. ``verify=False`` is for trusted hot loops only
    (``data.verify=false``; what it saves: docs/bench_train.md).
    """
    table, check = read_table_deferred(path, columns, require_complete, verify, max_rows)
    check()
    return table


def read_table_deferred(
    path: str | Path,
    columns: Sequence[str] | None = None,
    require_complete: bool = True,
    verify: bool = True,
    max_rows: int | None = None,
) -> tuple[pa.Table, Callable[[], None]]:
    """:func:`read_table` with the sha256 check still running in a thread: ``(table, check)``. ``check()``
    waits for the hashes and raises :class:`CorruptSetError` on a mismatch; call it before anything of the
    table is used or returned (the caller's own column work meanwhile hides the hash: ``load_host_set``)."""
    cols = list(columns) if columns is not None else None
    if cols is not None:
        unknown = [c for c in cols if c not in SCHEMA.names]
        if unknown:
            raise KeyError(f"unknown columns {unknown}; see depth_pose.schema.ALL_COLS")
    root = Path(path)
    manifest = load_manifest(root)
    check_manifest(root, manifest, require_complete)
    schema = SCHEMA if cols is None else pa.schema([SCHEMA.field(c) for c in cols])
    todo, rows = [], 0
    for entry in sorted(manifest["shards"], key=lambda s: s["index"]):
        if max_rows is not None and rows >= max_rows:
            break
        p = root / entry["file"]
        if not p.exists():
            raise CorruptSetError(f"shard {p} is listed in the manifest but missing")
        todo.append((p, entry))
        rows += int(entry["rows"])
    if not todo:
        return schema.empty_table(), lambda: None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-sha256") if verify else None
    hashes = [pool.submit(sha256_file, p) for p, _ in todo] if pool else []

    def check() -> None:
        try:
            for (p, entry), h in zip(todo, hashes, strict=False):  # no hashes with verify=False
                _check_sha(p, entry, h.result())
        finally:
            if pool:
                pool.shutdown(wait=False, cancel_futures=True)

    tables = []
    try:
        for p, entry in todo:
            try:
                tables.append(pq.read_table(p, columns=cols))
            except (OSError, pa.ArrowException) as e:
                if hashes and hashes[len(tables)].result() != entry["sha256"]:
                    _check_sha(p, entry, "")  # unreadable because corrupt: say so
                raise CorruptSetError(f"shard {p} is not readable Parquet: {e}") from e
            if tables[-1].num_rows != int(entry["rows"]):
                raise CorruptSetError(
                    f"shard {p} has {tables[-1].num_rows} rows but its {MANIFEST} entry says "
                    f"{entry['rows']} (corrupt or modified)"
                )
        try:
            table = pa.concat_tables(tables).cast(schema)
        except pa.ArrowException as e:  # a shard whose columns are not the set's (a rewritten file)
            why = str(e).splitlines()[0][:200]
            raise CorruptSetError(f"dataset {root}: a shard's columns do not match the set's ({why})") from e
    except BaseException:
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    return (table if max_rows is None else table.slice(0, max_rows)), check


def read_frame(
    path: str | Path,
    columns: Sequence[str] | None = None,
    require_complete: bool = True,
    verify: bool = True,
):
    """All listed shards of a dataset directory as one ``pandas.DataFrame``."""
    return read_table(path, columns, require_complete=require_complete, verify=verify).to_pandas()
