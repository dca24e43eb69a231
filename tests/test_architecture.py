"""The house rules, checked on the code itself: one-way layers (import-linter contracts in pyproject.toml),
every module placed in a layer, and no module using another module's ``_private`` name."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("depth_pose", "generation")
SCANNED = (*PACKAGES, "experiments", "notebooks", "tests")


def _modules(pkg: str) -> list[str]:
    out = []
    for f in sorted((REPO / pkg).rglob("*.py")):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(".".join(parts))
    return out


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _layer_modules(contract: dict) -> set[str]:
    names = set()
    for layer in contract["layers"]:
        for part in layer.replace("|", ":").split(":"):
            name = part.strip().strip("()")
            names.update(f"{c}.{name}" for c in contract.get("containers", [])) if contract.get(
                "containers"
            ) else names.add(name)
    return names


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (requirements.txt)")
    res = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_module_sits_in_a_layer(pkg: str) -> None:
    placed = set().union(*(_layer_modules(c) for c in _contracts() if c["type"] == "layers"))
    unplaced = [
        m
        for m in _modules(pkg)
        if m not in PACKAGES
        and not any(m == p or m.startswith(p + ".") or p.startswith(m + ".") for p in placed)
    ]
    assert not unplaced, f"modules in no layer of pyproject.toml's import contracts: {unplaced}"


# Script folders import each other's modules by file name (experiments/bench_train.py as ``bench_train``).
LOCAL_MODULES = {f.stem for d in ("experiments", "notebooks", "tests") for f in (REPO / d).glob("*.py")}


def _project_module(name: str | None) -> bool:
    return bool(name) and (name.split(".")[0] in PACKAGES or name in LOCAL_MODULES)


def private_uses(path: Path) -> list[str]:
    """``from m import _x``, ``import m._x`` and ``alias._x`` for project modules ``m`` other than this
    file's."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = ".".join(path.relative_to(REPO).with_suffix("").parts)
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _project_module(node.module):
            if node.module == own:
                continue
            if any(p.startswith("_") and not p.startswith("__") for p in node.module.split(".")):
                found.append(f"{path.name}:{node.lineno}: from {node.module} import ...")
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno}: from {node.module} import {a.name}")
                else:
                    aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if _project_module(a.name):
                    if any(p.startswith("_") and not p.startswith("__") for p in a.name.split(".")):
                        found.append(f"{path.name}:{node.lineno}: import {a.name}")
                    aliases.add(a.asname or a.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_private_names_across_modules() -> None:
    files = [f for d in SCANNED for f in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 50
    bad = [hit for f in files for hit in private_uses(f)]
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_private_name_check_finds_each_form(tmp_path: Path) -> None:
    """The checker itself: each form of a cross-module private use is reported, public uses are not."""
    probe = REPO / "tests" / "_probe_private_uses.py"
    probe.write_text(
        "from generation.project import _x, observe\n"
        "import depth_pose._hidden\n"
        "from depth_pose import geometry\n"
        "geometry._helper()\n"
        "geometry.planar(1)\n"
        "from depth_pose.errors import InputError\n"
    )
    try:
        hits = private_uses(probe)
    finally:
        probe.unlink()
    assert len(hits) == 3, hits
    assert any("import _x" in h for h in hits) and any("_hidden" in h for h in hits)
    assert any("geometry._helper" in h for h in hits)
