"""Read an offline W&B run back from its ``run-<id>.wandb`` file (tests only): the run's name, group, job type
and tags, its config and its summary. The file is a LevelDB-style log of ``wandb_internal_pb2.Record``
protobufs: a 7-byte header, then 32 KiB blocks of chunks (crc32 u32, length u16, type u8: 1 full, 2 first,
3 middle, 4 last)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7


def records(path: Path) -> list[bytes]:
    """The raw records of a ``.wandb`` file."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, buf, out = HEADER, b"", []
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # block trailer too short for a chunk header: skipped
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            out.append(buf + chunk)
            buf = b""
    return out


def read_run(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(run, config, summary) of an offline run file; config and summary keys as W&B shows them."""
    from wandb.proto import wandb_internal_pb2 as pb

    def key(item) -> str:
        return ".".join(item.nested_key) or item.key

    run: dict[str, Any] = {}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for raw in records(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run = {
                "id": r.run_id,
                "name": r.display_name,
                "group": r.run_group,
                "job_type": r.job_type,
                "tags": list(r.tags),
            }
            config.update({key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            config.update({key(i): json.loads(i.value_json) for i in rec.config.update})
        elif kind == "summary":
            summary.update({key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "history":
            summary.update({key(i): json.loads(i.value_json) for i in rec.history.item if key(i)})
    return run, config, summary


def runs_under(folder: Path) -> list[tuple[dict, dict, dict]]:
    """Every offline run below ``folder``, in path order."""
    return [read_run(p) for p in sorted(Path(folder).rglob("offline-run-*/run-*.wandb"))]
