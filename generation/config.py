"""Generation config: the one place its defaults come from (``conf/generate.yaml``), validation and the
config-group stages (camera, noise, pose sampler, body) built from it.

``dp-generate`` composes ``conf/generate.yaml`` with Hydra; a caller that passes a partial config (the
trainer, tests, scripts) gets the same scalar defaults through :func:`with_defaults`, read from that file.
"""

from __future__ import annotations

import functools
from typing import Any

from omegaconf import DictConfig, OmegaConf

from depth_pose.env import config_dir
from depth_pose.errors import InputError
from depth_pose.jsonvalues import option_device

# render keys that say how the user vouches for the detector's weights (checks, not data: not in a set's id)
RENDER_TRUST_KEYS = ("yolo_weights_sha256", "yolo_trust_weights")

# Top-level keys of conf/generate.yaml that are not generation settings.
NON_SETTINGS = ("defaults", "hydra", "paths", "out_dir", "task_name")
STAGE_GROUPS = ("camera", "noise", "pose_sampling")
POSE_DEVICES = ("auto", "cpu", "device")  # pose_device: where poses are drawn (device: the generator's)


class GenerationConfigError(InputError):
    """A bad ``dp-generate`` configuration (the CLI turns it into a clear message and exit code 2)."""


@functools.cache
def _defaults_yaml() -> str:
    node = OmegaConf.load(config_dir() / "generate.yaml")
    settings = {k: node[k] for k in node if k not in NON_SETTINGS and not OmegaConf.is_interpolation(node, k)}
    settings["render"] = {"name": "none"}
    return OmegaConf.to_yaml(OmegaConf.create(settings))


def defaults() -> DictConfig:
    """The scalar generation settings of ``conf/generate.yaml`` (seed, sizes, speed knobs, ``project``) plus
    ``render: {name: none}``; groups (body, pose_sampling, camera, noise) are not included."""
    return OmegaConf.create(_defaults_yaml())


def resolved(node: Any) -> Any:
    """Resolved plain container of a config node; unresolvable interpolations are kept as their text."""
    if not OmegaConf.is_config(node):
        return node
    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception:  # noqa: BLE001  (e.g. ${hydra:...} outside a Hydra app)
        if isinstance(node, DictConfig):
            out = {}
            for k in node.keys():
                try:
                    out[k] = resolved(node[k])
                except Exception:  # noqa: BLE001
                    out[k] = OmegaConf.to_container(node, resolve=False)[k]
            return out
        return OmegaConf.to_container(node, resolve=False)


def with_defaults(cfg: DictConfig | dict) -> DictConfig:
    """``cfg`` with the settings of ``conf/generate.yaml`` (:func:`defaults`) filled in for missing keys (a
    new config; struct mode off)."""
    cfg = cfg if OmegaConf.is_config(cfg) else OmegaConf.create(cfg)
    base = defaults()
    out = OmegaConf.merge(base, cfg)
    OmegaConf.set_struct(out, False)
    return out


def pose_device(cfg: DictConfig) -> str:
    """Where the poses are drawn: ``cpu`` (a CPU generator, whatever ``device`` is) or ``device`` (the
    generator's own device); ``auto``: ``device`` off the CPU (on a GPU, poses drawn on one CPU thread are
    most of the time: docs/bench_gpu.md), ``cpu`` on it (the same generator either way there)."""
    v = str(cfg.get("pose_device", "auto"))
    if v not in POSE_DEVICES:
        raise GenerationConfigError(f"pose_device={v} is not one of {', '.join(POSE_DEVICES)}")
    if v == "auto":
        return "cpu" if str(cfg.get("device", "cpu")) == "cpu" else "device"
    return v


def validate(cfg: DictConfig) -> None:
    """Raise :class:`GenerationConfigError` naming the first bad top-level value."""

    def need_int(key: str, lo: int) -> int:
        v = cfg.get(key)
        if isinstance(v, float) and v.is_integer() and v >= lo:
            raise GenerationConfigError(f"{key} must be an integer >= {lo}, got {v!r} (write {int(v)})")
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise GenerationConfigError(f"{key} must be an integer >= {lo}, got {v!r}")
        return v

    need_int("num_samples", 1)
    need_int("samples_per_pose", 1)
    need_int("shard_size", 1)
    need_int("batch_size", 1)
    if need_int("seed", 0) >= 2**63:
        raise GenerationConfigError(f"seed must be below 2**63, got {cfg.seed}")
    if not isinstance(cfg.get("overwrite", False), bool):
        raise GenerationConfigError(f"overwrite must be true or false, got {cfg.get('overwrite')!r}")
    need_int("workers", 0)
    need_int("threads", 0)
    vis = cfg.get("vis_threshold")
    if vis is not None and (isinstance(vis, bool) or not isinstance(vis, int | float) or not 0 <= vis <= 1):
        raise GenerationConfigError(f"vis_threshold={vis} must be a number in [0, 1] (keypoint confidence)")
    if not cfg.get("out_dir"):
        raise GenerationConfigError("out_dir must be set")
    for group in ("body", "pose_sampling", "camera", "noise"):
        if cfg.get(group) is None:
            raise GenerationConfigError(f"config group {group!r} is missing (e.g. {group}=...)")
    build_framing_cut(cfg)  # a bad framing_cut value: one clear line
    if framing_cut_share(cfg) > 0 and str((cfg.get("render") or {}).get("name", "none")) != "none":
        raise GenerationConfigError(
            "framing_cut.share > 0 applies to the analytic path only (render=none); the render path frames "
            "its people itself"
        )
    option_device(cfg.device, "device", error=GenerationConfigError)
    pose_device(cfg)  # a bad value: one clear line


def instantiate_stage(group: str, node: DictConfig, **kwargs):
    """``hydra.utils.instantiate(node)``; a bad value (ValueError/TypeError/KeyError, unwrapped from Hydra's
    InstantiationException) becomes :class:`GenerationConfigError` naming the group."""
    import hydra.utils

    try:
        return hydra.utils.instantiate(node, **kwargs)
    except Exception as e:  # noqa: BLE001
        cause = e
        while getattr(cause, "__cause__", None) is not None:
            cause = cause.__cause__
        if isinstance(cause, ValueError | TypeError | KeyError):
            raise GenerationConfigError(f"bad {group} config: {cause}") from e
        raise


def build_stages(cfg: DictConfig) -> dict[str, Any]:
    """The cheap stages (camera, noise, pose sampler) from their config groups; bad values raise
    :class:`GenerationConfigError`."""
    return {g: instantiate_stage(g, cfg[g]) for g in STAGE_GROUPS}


def framing_cut_share(cfg: DictConfig) -> float:
    """``framing_cut.share`` of ``cfg`` (0 when the key is absent: people are never cut by the frame)."""
    node = cfg.get("framing_cut")
    return 0.0 if node is None else float(node.get("share", 0.0))


def build_framing_cut(cfg: DictConfig):
    """The :class:`generation.framing_cut.FramingCut` of ``cfg.framing_cut`` (off when absent); bad values
    raise :class:`GenerationConfigError`."""
    from generation.framing_cut import FramingCut

    node = cfg.get("framing_cut")
    try:
        return FramingCut(**(resolved(node) if node is not None else {}))
    except (TypeError, ValueError) as e:
        raise GenerationConfigError(f"bad framing_cut config: {e}") from e
