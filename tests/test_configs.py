"""The Hydra config tree ``conf/``: every top-level config, every option of every config group (found by
listing ``conf/``, so new options are covered without editing this file), every ``experiment/`` and
``hparams_search/`` preset composes, resolves and instantiates; the keypoint visibility threshold is one value
everywhere."""

from __future__ import annotations

import importlib
from pathlib import Path

import hydra.utils
import pytest
import torch
from helpers import CONF, compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

# Top-level configs and the overrides each needs to compose at all.
TOP = {"generate": [], "train": [], "eval": [], "predict": ["source=x"]}
# Groups that are not options of a top-level config's own keys (hydra's own; _global_ presets of train).
PRESET_GROUPS = ("experiment", "hparams_search")
SKIP_GROUPS = ("hydra", *PRESET_GROUPS)
# Groups instantiated together by depth_pose.train.build (datamodule, model, callbacks, loggers, trainer).
TRAIN_BUILD_GROUPS = ("data", "features", "model", "trainer", "logger", "callbacks")
SMALL_BODY = ["body.n_bodies=8", "body.chunk_size=8"]  # building the Anny bank is the slow part
# Keys that are the model's keypoint visibility threshold (the top-level one and its interpolations).
VIS_KEYS = ("vis_threshold", "visibility_threshold", "threshold")


def _register_resolvers() -> None:
    """``${dp_dataset_id:}`` (generate.yaml's out_dir) is registered by the generation package (as in
    dp-generate)."""
    for mod in ("generation.dataset", "generation.pipeline"):
        if OmegaConf.has_resolver("dp_dataset_id"):
            return
        try:
            importlib.import_module(mod)
        except ImportError:
            continue


_register_resolvers()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def groups() -> list[str]:
    return sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in SKIP_GROUPS)


def uses(top: str) -> dict[str, str]:
    """``{group: package}`` of the groups in ``top``'s defaults list (``noise@invariance.noise`` -> noise)."""
    out = {}
    for entry in OmegaConf.load(CONF / f"{top}.yaml").get("defaults", []):
        if isinstance(entry, DictConfig):
            for key in entry:
                if not str(key).startswith("override"):
                    group, _, package = str(key).partition("@")
                    out[group] = package or group
    return out


def group_cases() -> list:
    cases, seen = [], set()
    for group in groups():
        for top in TOP:
            package = uses(top).get(group)
            if package is None:
                continue
            for opt in options(group):
                first = (group, package, opt) not in seen  # instantiate once per (group, package, option)
                seen.add((group, package, opt))
                cases.append(pytest.param(top, group, package, opt, first, id=f"{top}-{package}={opt}"))
    return cases


def hcompose(name: str, overrides: list[str], out_dir: Path | None = None) -> DictConfig:
    """Compose as the Hydra app sees it: hydra node included and registered (``${hydra:...}`` resolves)."""
    base = list(TOP.get(name, []))
    if "body" in uses(name) and "body=bank" not in overrides:
        base += SMALL_BODY
    cfg = compose(name, [*base, *overrides], return_hydra_config=True)
    with open_dict(cfg):  # what the app sets before the task runs
        cfg.hydra.runtime.output_dir = str(out_dir or Path("/nonexistent/run"))
    HydraConfig.instance().set_config(cfg)
    return cfg


def resolved(cfg: DictConfig) -> dict:
    """Every key but ``hydra`` resolved (raises on an interpolation that does not resolve)."""
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
        if k != "hydra"
    }


def target_nodes(node, path: str = ""):
    """``(path, node)`` of the outermost nodes with a ``_target_`` under ``node``."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
            return
        for k in node:
            yield from target_nodes(node[k], f"{path}.{k}" if path else str(k))
    elif isinstance(node, ListConfig):
        for i, v in enumerate(node):
            yield from target_nodes(v, f"{path}[{i}]")


def instantiate_all(node) -> list:
    return [hydra.utils.instantiate(n) for _, n in target_nodes(node)]


def build_train(cfg: DictConfig, tmp_path: Path) -> dict:
    """dp-train's own instantiation (datamodule, model with features/augment, callbacks, loggers, trainer)."""
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        pytest.skip("trainer accelerator=gpu needs CUDA")
    from depth_pose.train import build

    return build(cfg, data_dir=tmp_path)


def check_hydra_dirs(cfg: DictConfig) -> None:
    h = cfg.hydra
    root = f"{cfg.paths.log_dir}/{cfg.task_name}"
    assert h.run.dir.startswith(f"{root}/runs/"), h.run.dir
    assert h.sweep.dir.startswith(f"{root}/multiruns/"), h.sweep.dir
    assert h.job.chdir is False


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("top", list(TOP))
def test_top_level_config(top, tmp_path):
    cfg = hcompose(top, [], tmp_path)
    assert cfg.task_name == top
    resolved(cfg)
    check_hydra_dirs(cfg)
    # Nodes of the config itself (not of its groups, tested below): eval/predict's detector, predict's
    # intrinsics, smoothing, zoom.
    own = {k for k in cfg if k != "hydra"} - set(uses(top).values())
    for key in sorted(own):
        for _, node in target_nodes(cfg[key], key):
            assert hydra.utils.instantiate(node) is not None


def test_every_group_is_used():
    used = set().union(*(uses(t) for t in TOP))
    assert set(groups()) <= used, f"config groups no top-level config lists: {set(groups()) - used}"


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory) -> Path:
    from generation.bank import make_bank

    out = tmp_path_factory.mktemp("bank") / "bank.safetensors"
    return make_bank(out, [o.removeprefix("body.") for o in SMALL_BODY])


@pytest.mark.parametrize("top,group,package,opt,first", group_cases())
def test_group_option(top, group, package, opt, first, tmp_path, request):
    override = f"{group}@{package}={opt}" if package != group else f"{group}={opt}"
    # conf/body/bank.yaml needs a saved bank: one of SMALL_BODY's bodies
    extra = [f"body.path={request.getfixturevalue('small_bank')}"] if override == "body=bank" else []
    cfg = hcompose(top, [override, *extra], tmp_path)
    resolved(cfg)
    if not first:
        return
    if group in TRAIN_BUILD_GROUPS and top == "train":
        objs = build_train(cfg, tmp_path)
        assert objs["model"] is not None and objs["trainer"] is not None
    else:
        for obj in instantiate_all(OmegaConf.select(cfg, package)):
            assert obj is not None


@pytest.mark.parametrize("opt", options("experiment"))
def test_experiment(opt, tmp_path):
    cfg = hcompose("train", [f"experiment={opt}"], tmp_path)
    resolved(cfg)
    check_hydra_dirs(cfg)  # the preset's task_name names its run directories
    build_train(cfg, tmp_path)


@pytest.mark.parametrize("opt", options("hparams_search"))
def test_hparams_search(opt, tmp_path):
    cfg = hcompose("train", [f"hparams_search={opt}"], tmp_path)
    resolved(cfg)
    params = cfg.hydra.sweeper.get("params") or {}
    for key in params:  # every swept key exists in the train config
        assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", key


def vis_values(node, path: str = "") -> dict[str, float]:
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            if k in VIS_KEYS and not isinstance(v, dict | list):
                out[p] = v
            out |= vis_values(v, p)
    return out


VIS_CASES = [
    ("generate", [], {"vis_threshold", "noise.visibility_threshold"}),
    ("generate", ["noise=none"], {"vis_threshold", "noise.visibility_threshold"}),
    ("train", [], {"vis_threshold", "noise.visibility_threshold", "features.threshold"}),
    (
        "train",
        ["features=raw_pixels", "noise=none"],
        {"vis_threshold", "noise.visibility_threshold", "features.threshold"},
    ),
    ("train", ["experiment=seed"], {"vis_threshold", "noise.visibility_threshold", "features.threshold"}),
    # suite=tilt's noise is ``${invariance.noise}``: the same node, so the same linked threshold; suite=scenes
    # has its own noise node and detection threshold, both linked too.
    (
        "eval",
        [],
        {
            "vis_threshold",
            "invariance.noise.visibility_threshold",
            "tilt.noise.visibility_threshold",
            "scenes.noise.visibility_threshold",
            "scenes.vis_threshold",
            "truncation.noise.visibility_threshold",  # suite=truncation: its own noise node (yolo_border)
            "truncation.vis_threshold",
        },
    ),
]


@pytest.mark.parametrize("top,overrides,keys", VIS_CASES, ids=[f"{t}-{'-'.join(o)}" for t, o, _ in VIS_CASES])
def test_one_visibility_threshold(top, overrides, keys, tmp_path):
    default = vis_values(resolved(hcompose(top, overrides, tmp_path)))
    assert set(default) == keys and set(default.values()) == {0.1}, default
    cfg = hcompose(top, [*overrides, "vis_threshold=0.2"], tmp_path)
    moved = vis_values(resolved(cfg))
    assert set(moved) == keys and set(moved.values()) == {0.2}, moved
    for key in keys - {"vis_threshold"}:  # linked, not copied
        parent, _, leaf = key.rpartition(".")
        assert OmegaConf.to_container(OmegaConf.select(cfg, parent))[leaf] == "${vis_threshold}", key
    # ... and the objects built from the config see it.
    noise = hydra.utils.instantiate(OmegaConf.select(cfg, "invariance.noise" if top == "eval" else "noise"))
    assert noise.threshold == 0.2
    if "features" in cfg:
        from depth_pose.features import from_config

        norm, _ = from_config(OmegaConf.to_container(cfg.features, resolve=True))
        assert norm.threshold == 0.2


def test_presets_on_a_base_match_their_base_keys(tmp_path):
    """Presets built on a base (model/mlp_*, render/seed|high on draft) keep every key of their base."""
    for group, base, presets in (
        ("model", "mlp_base", ("mlp_small", "mlp_large")),
        ("render", "draft", ("seed", "high")),
    ):
        ref = hcompose("train", [f"{group}={base}"], tmp_path)[group]
        for p in presets:
            node = hcompose("train", [f"{group}={p}"], tmp_path)[group]
            assert set(node) == set(ref), (p, set(node) ^ set(ref))
            assert node.name == p
