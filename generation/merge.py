"""Join the parts of one synthetic set made on several machines (``dp-generate shard_range=[a,b]``, each part
in its own ``out_dir``) into one dataset directory, the same set a one-machine run writes.

    python -m generation.merge OUT PART_DIR [PART_DIR ...]

Checks, before writing anything: every part holds the same dataset (``dataset_id``), the parts' shards
neither overlap nor leave a gap, every shard matches its sha256 in its part's manifest, ``OUT`` is none of the
parts. Then copies the shards into ``OUT`` (each checked again) and writes one complete manifest: the same
dataset id, shard files, row counts and sha256s as the set made in one go (each shard has its own seed,
:func:`generation.dataset.shard_seed`). A refused merge is one :class:`GenerationConfigError` line (exit 2).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from depth_pose import shards
from depth_pose.errors import EXIT_OK, EXIT_USAGE, InputError
from depth_pose.fileio import atomic_write, check_outputs, refuse_non_directory
from generation.config import GenerationConfigError


def _load(part: Path) -> dict:
    try:
        return shards.load_manifest(part)
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise GenerationConfigError(f"part {part}: {e}") from e


def _check_shard(part: Path, entry: dict, path: Path | None = None) -> None:
    path = path if path is not None else part / entry["file"]
    if not path.is_file():
        raise GenerationConfigError(
            f"shard {entry['index']} ({path}) is listed in {part}'s manifest but missing"
        )
    if shards.sha256_file(path) != entry["sha256"]:
        raise GenerationConfigError(
            f"shard {path} does not match its sha256 in {part}'s manifest (corrupted)"
        )


def _indices(ix: list[int], most: int = 8) -> str:
    return ", ".join(map(str, ix[:most])) + (f", ... ({len(ix)} in all)" if len(ix) > most else "")


def _check_out(out: Path, parts: list[Path], did: str) -> None:
    real = out.resolve()
    for part in parts:
        if part.resolve() == real:
            raise GenerationConfigError(f"the output {out} is one of the parts; merge into another directory")
    refuse_non_directory(out, "out")
    check_outputs([("out", out)], [("part", p) for p in parts])  # nor inside one, nor holding one
    if (out / shards.MANIFEST).exists():
        try:
            old = shards.load_manifest(out).get("dataset_id")
        except (ValueError, OSError) as e:
            raise GenerationConfigError(
                f"{out}: unreadable manifest ({e}); use another output directory"
            ) from e
        if old != did:  # the same set (an earlier merge) is rewritten with the same bytes
            raise GenerationConfigError(
                f"{out} already holds dataset {old}, not {did}; use another directory"
            )
    elif out.exists() and any(out.glob(shards.SHARD_GLOB)):
        raise GenerationConfigError(f"{out} has shards but no manifest; use another output directory")


def _merged_stats(manifests: list[dict]) -> dict | None:
    """The render path's ``render_stats`` of all parts added up (counts and seconds)."""
    stats = [m["render_stats"] for m in manifests if "render_stats" in m]
    if not stats:
        return None
    counts: dict[str, int] = {}
    for s in stats:
        for k, v in s.get("counts", {}).items():
            counts[k] = counts.get(k, 0) + int(v)
    return {**stats[0], "counts": counts, "seconds": sum(float(s.get("seconds", 0.0)) for s in stats)}


def merge(out_dir: str | Path, part_dirs: Sequence[str | Path]) -> Path:
    """Join the part directories ``part_dirs`` (shard ranges of one set) into ``out_dir``; returns it.

    Raises :class:`GenerationConfigError` (nothing written) for: no parts, an unreadable part, parts of
    different sets, overlapping or missing shards, a shard whose sha256 does not match, ``out_dir`` being a
    part or holding another set.
    """
    out, parts = Path(out_dir), [Path(p) for p in part_dirs]
    if not parts:
        raise GenerationConfigError("merge needs at least one part directory")
    manifests = [_load(p) for p in parts]
    did = manifests[0].get("dataset_id")
    for part, m in zip(parts, manifests):
        if m.get("dataset_id") != did:
            raise GenerationConfigError(
                f"{part} holds dataset {m.get('dataset_id')}, {parts[0]} holds {did}: parts of different sets"
            )
    _check_out(out, parts, did)
    owner: dict[int, tuple[Path, dict]] = {}
    for part, m in zip(parts, manifests):
        for entry in m["shards"]:
            i = int(entry["index"])
            if i in owner:
                raise GenerationConfigError(
                    f"shard {i} is in both {owner[i][0]} and {part}: overlapping ranges"
                )
            owner[i] = (part, entry)
    n_shards = int(manifests[0]["num_shards"])
    missing = sorted(set(range(n_shards)) - set(owner))
    if missing:
        raise GenerationConfigError(
            f"shards {_indices(missing)} of {n_shards} are in no part: a range was not generated, or its run "
            "stopped (rerun it: it resumes)"
        )
    for i in sorted(owner):
        _check_shard(*owner[i])
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in sorted(owner):
        part, entry = owner[i]
        target = out / shards.shard_name(i)
        atomic_write(target, lambda tmp, src=part / entry["file"]: shutil.copyfile(src, tmp))
        _check_shard(part, entry, target)
        entries.append({**entry, "file": target.name})
    first = manifests[parts.index(owner[0][0])]
    if (owner[0][0] / "contact_sheet.png").is_file():
        shutil.copyfile(owner[0][0] / "contact_sheet.png", out / "contact_sheet.png")
    manifest = copy.deepcopy(first)
    manifest.update(shards=entries, complete=True)
    config = manifest.get("config")
    if isinstance(config, dict):  # as the one-go run's: written to out, all shards
        config.update(out_dir=str(out), shard_range=None)
        if isinstance(config.get("render"), dict) and "shard_range" in config["render"]:
            config["render"]["shard_range"] = None
    stats = _merged_stats(manifests)
    if stats is not None:
        manifest["render_stats"] = stats
    shards.write_manifest(out, manifest)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m generation.merge OUT PART_DIR [PART_DIR ...]``: exit 0, or 2 with one error line."""
    prog = "python -m generation.merge"
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output dataset directory (new, or an earlier merge of the same set)")
    ap.add_argument("parts", nargs="+", help="dataset directories written by dp-generate shard_range=[a,b]")
    args = ap.parse_args(argv)
    try:
        out = merge(args.out, args.parts)
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    m = shards.load_manifest(out)
    print(json.dumps({"out": str(out), "dataset_id": m["dataset_id"], "shards": len(m["shards"])}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
