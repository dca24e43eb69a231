"""Mixtures of samplers (pose samplers, camera samplers): the components from a config mapping and the
normalised weights, checked the same way for every kind of stage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def mixture_components(components: Mapping[str, Any], kind: type, label: str) -> dict[str, Any]:
    """``{name: component}`` with config nodes not yet instantiated (``_recursive_: false``) instantiated;
    ValueError when empty or when a component is not a ``kind``. ``label`` names the mixture in messages."""
    if not components:
        raise ValueError(f"{label}: components is empty (give a mapping of name -> {kind.__name__} config)")
    parts: dict[str, Any] = {}
    for key, comp in components.items():
        if not isinstance(comp, kind):
            import hydra.utils

            comp = hydra.utils.instantiate(comp)
        if not isinstance(comp, kind):
            raise ValueError(f"{label} component {key!r} is not a {kind.__name__} ({type(comp).__name__})")
        parts[str(key)] = comp
    return parts


def mixture_probs(parts: Mapping[str, Any], weights: Mapping[str, float] | None, label: str) -> torch.Tensor:
    """Component probabilities (float32, in ``parts`` order) from ``weights`` (None: equal; a missing name:
    0); ValueError for unknown names, negative or non-finite weights, or an all-zero sum."""
    w = dict(weights) if weights else dict.fromkeys(parts, 1.0)
    unknown = sorted(set(w) - set(parts))
    if unknown:
        raise ValueError(f"{label} weights name unknown components {unknown}; components: {sorted(parts)}")
    probs = torch.tensor([float(w.get(k, 0.0)) for k in parts], dtype=torch.float64)
    if (probs < 0).any() or not torch.isfinite(probs).all() or probs.sum() <= 0:
        raise ValueError(f"{label} weights must be >= 0 with a positive sum, got {w}")
    return (probs / probs.sum()).float()
