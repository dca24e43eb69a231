"""Configurable MLP trunk: width, depth, dropout, activation, normalisation, residual connections."""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh}
NORMS = {"none": None, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


def _block(d_in: int, d_out: int, activation: str, norm: str, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, d_out)]
    if NORMS[norm] is not None:
        layers.append(NORMS[norm](d_out))
    layers.append(ACTIVATIONS[activation]())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """``in_dim -> width x depth -> out_dim``; with ``residual`` the hidden blocks add their input back."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 2,
        width: int = 256,
        depth: int = 3,
        dropout: float = 0.0,
        activation: str = "relu",
        norm: str = "none",
        residual: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {sorted(NORMS)}")
        if depth < 1 or width < 1:
            raise ValueError(f"MLP needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        self.residual = residual
        self.inp = _block(in_dim, width, activation, norm, dropout)
        self.hidden = nn.ModuleList(_block(width, width, activation, norm, dropout) for _ in range(depth - 1))
        self.out = nn.Linear(width, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        for blk in self.hidden:
            h = h + blk(h) if self.residual else blk(h)
        return self.out(h)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["MLP", "count_parameters", "torch"]
