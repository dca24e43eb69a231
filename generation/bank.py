"""Saved body banks: the bodies of a :class:`generation.body.BodyModel` and the per-body constants of its
fast keypoint path, in a file, posed without Anny (for machines where Anny cannot be installed: GPU boxes).

A bank is two files written atomically: ``OUT.safetensors`` (the tensors: fast-path constants and the
:class:`~generation.types.BodyShapes` columns) and ``OUT.json`` beside it (format version, skeleton structure,
phenotype labels, the body config and seed the bank was made from, the sha256 of the tensor file).

Make one where Anny is installed, use it anywhere::

    python -m generation.bank OUT.safetensors [overrides of conf/body/anny.yaml: n_bodies=4096] [--seed S]
    dp-generate body=bank body.path=OUT.safetensors

Same bodies, same set, same id: :class:`BankBody` poses with the very code and constants of the
:class:`~generation.body.BodyModel` it was saved from (the shared :class:`~generation.body.KeypointBank`),
so a set made with ``body=bank`` is byte-identical to the one ``body=anny`` makes with the bank's config and
seed; :func:`body_id_config` hands the recorded config to the dataset id (``generation/dataset.py``), so both
get the same id too. Nothing on this module's import or loading path imports Anny (or Hydra).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from depth_pose.errors import InputError
from depth_pose.fileio import atomic_write, atomic_write_text
from generation.body import KeypointBank
from generation.types import BodyShapes

FORMAT = "depth_pose.body_bank"
FORMAT_VERSION = 1
TARGET = "generation.bank.BankBody"  # the _target_ of conf/body/bank.yaml
SHAPE_TENSORS = ("phenotypes", "stature_m", "age_years", "gender")
MAKE = "`python -m generation.bank OUT.safetensors [n_bodies=...]`"


def meta_path(path: str | Path) -> Path:
    """The JSON beside a bank's ``.safetensors`` file."""
    return Path(path).with_suffix(".json")


def save_bank(body: KeypointBank, path: str | Path, config: Mapping[str, Any] | None = None) -> Path:
    """Write ``body``'s bank to ``path`` (``.safetensors``) and its metadata to :func:`meta_path` (JSON,
    written last); returns ``path``.

    ``config``: the resolved body config node the bank was built from (``conf/body/anny.yaml`` with its
    overrides, as :func:`make_bank` composes it; default: ``body.config`` when the body has one, e.g. a
    loaded :class:`BankBody`): recorded, and the dataset id of sets made from the bank
    (:func:`body_id_config`). A bank saved without one gets ids of its own (from its sha256).
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"a body bank is a .safetensors file, got {path}")
    tensors, structure = body.fast_path_state()
    for name in SHAPE_TENSORS:
        tensors[f"shapes.{name}"] = getattr(body.shapes, name).detach().cpu().contiguous()
    blob = save(tensors)
    config = config if config is not None else getattr(body, "config", None)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "n_bodies": len(body.shapes),
        "seed": getattr(body, "seed", None),
        "config": json.loads(json.dumps(dict(config))) if config is not None else None,
        "structure": structure,
        "phenotype_labels": list(body.shapes.phenotype_labels),
        "pose_chunk": int(body.pose_chunk),
        "pose_threads": int(body.pose_threads),
    }
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    atomic_write_text(meta_path(path), json.dumps(meta, indent=1) + "\n")
    return path


def read_meta(path: str | Path) -> dict:
    """The metadata of the bank at ``path`` (``.safetensors``); :class:`InputError` when it is missing or not
    a bank this code reads."""
    if path is None or str(path) in ("", "???"):
        raise InputError(f"body=bank needs body.path=OUT.safetensors (make one with {MAKE})")
    meta_file = meta_path(path)
    if not Path(path).is_file() or not meta_file.is_file():
        raise InputError(
            f"body bank not found: {path} (needs it and {meta_file.name} beside it; make one with {MAKE})"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{meta_file}: unreadable body bank metadata ({e})") from e
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{meta_file}: not a body bank of format {FORMAT} v{FORMAT_VERSION} "
            f"(format={meta.get('format')!r}, version={meta.get('format_version')!r}); make it again"
        )
    return meta


def load_bank(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors (CPU) and metadata of the bank at ``path``; refuses (:class:`InputError`) a tensor file whose
    sha256 is not the recorded one."""
    from safetensors.torch import load

    meta = read_meta(path)
    blob = Path(path).read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta["sha256"]:
        raise InputError(
            f"body bank {path} was modified or damaged: sha256 {digest} but {meta_path(path).name} records "
            f"{meta['sha256']}; make it again"
        )
    return load(blob), meta


def body_id_config(node: Any) -> Any:
    """The body config that determines a set's data (used by :func:`generation.dataset.id_payload`): for a
    :class:`BankBody` node, the config its bank was made from (plus the node's ``seed`` when it sets one, as
    ``body=anny`` would), so ``body=bank`` gets the id of the ``body=anny`` set it reproduces; any other node
    as it is."""
    if not isinstance(node, Mapping) or node.get("_target_") != TARGET:
        return node
    meta = read_meta(node.get("path"))
    config = meta["config"]
    if config is None:  # no originating config: the bank's bytes stand for its bodies
        return {"_target_": TARGET, "sha256": meta["sha256"]}
    if "seed" in node and "seed" not in config:
        config = {**config, "seed": node["seed"]}
    return config


class BankBody(KeypointBank):
    """A saved body bank (:func:`save_bank`), posed without Anny: :meth:`pose`, :meth:`keypoints23`,
    :meth:`identity_poses`, ``shapes``, ``bone_names``, ``device`` as the :class:`~generation.body.BodyModel`
    it was saved from, with the same numbers (same code, same float32 constants). No :meth:`mesh` (the render
    path needs Anny).

    ``seed``: what ``dp-generate`` passes to its body stage (the top-level ``seed`` unless the body config
    sets one). The bank's bodies were drawn with one seed; another seed means other bodies, so a different
    ``seed`` is refused rather than silently ignored (make a bank with that ``--seed``, or set ``body.seed``
    to the bank's). A bank whose recorded config fixes its own seed accepts any (as ``body=anny`` would).
    ``None``: no check. ``pose_chunk`` / ``pose_threads``: speed only, default the saved body's.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        seed: int | None = None,
        pose_chunk: int | None = None,
        pose_threads: int | None = None,
    ) -> None:
        tensors, meta = load_bank(path)
        self.path = Path(path)
        self.config = meta["config"]
        self.seed = meta["seed"]
        fixed = self.config is not None and "seed" in self.config
        if seed is not None and self.seed is not None and int(seed) != int(self.seed) and not fixed:
            raise InputError(
                f"body bank {path} holds the bodies of seed {self.seed}, not seed {seed}: make a bank with "
                f"`python -m generation.bank OUT.safetensors --seed {seed}`, or set body.seed={self.seed}"
            )
        self.device = torch.device(device)
        self.pose_chunk = int(pose_chunk if pose_chunk is not None else meta["pose_chunk"])
        self.pose_threads = int(pose_threads if pose_threads is not None else meta["pose_threads"])
        shapes = {name: tensors[f"shapes.{name}"].to(self.device) for name in SHAPE_TENSORS}
        self.shapes = BodyShapes(phenotype_labels=list(meta["phenotype_labels"]), **shapes)
        self.set_fast_path(tensors, meta["structure"])

    def mesh(self, body_index: torch.Tensor, poses: Any) -> tuple[torch.Tensor, torch.Tensor]:
        raise InputError(f"body bank {self.path} holds keypoints only; meshes (render path) need body=anny")


def make_bank(out: str | Path, overrides: Sequence[str] = (), seed: int = 0) -> Path:
    """Build the body bank of ``conf/body/anny.yaml`` with Hydra-style ``overrides`` of it (``n_bodies=4096``;
    ``+key=value`` for a key the file lacks) and ``seed`` (the top-level ``seed`` of the sets it serves, as
    ``dp-generate`` passes it) with Anny, and save it (:func:`save_bank`) to ``out``."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from depth_pose.env import config_dir

    def scoped(o: str) -> str:
        prefix = o[: len(o) - len(o.lstrip("+~"))]
        return f"{prefix}body.{o[len(prefix) :]}"

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        node = compose(overrides=["+body=anny", *(scoped(o) for o in overrides)]).body
    config = OmegaConf.to_container(node, resolve=True)
    body = instantiate(node, **({} if "seed" in node else {"seed": int(seed)}), device="cpu")
    return save_bank(body, out, config)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m generation.bank",
        description="Build a body bank with Anny and save it for body=bank (no Anny needed to use it).",
    )
    parser.add_argument("out", help="the bank file to write, OUT.safetensors (OUT.json is written beside it)")
    parser.add_argument("overrides", nargs="*", help="overrides of conf/body/anny.yaml, e.g. n_bodies=4096")
    parser.add_argument("--seed", type=int, default=0, help="top-level seed of the sets it serves (0)")
    args = parser.parse_args(argv)
    path = make_bank(args.out, args.overrides, args.seed)
    meta = read_meta(path)
    size = path.stat().st_size / 2**20
    print(f"{path}: {meta['n_bodies']} bodies, {size:.1f} MiB, sha256 {meta['sha256']}")


if __name__ == "__main__":
    main()
