"""Contact sheet: sampled 3D skeletons (front and side views) per pose-sampling strategy, side by side.

``dp-generate contact_sheet=true`` calls :func:`write_contact_sheet`; it is also the quickest visual check of
the joint limits and presets (left limbs blue, right limbs red, floor grey).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from depth_pose.env import config_dir
from depth_pose.keypoints import SKELETON
from generation.config import instantiate_stage
from generation.generator import Generator

_LEFT = {1, 3, 5, 7, 9, 11, 13, 15}


def _label(poses, i: int) -> str:
    bits = [poses.preset[i]] if poses.preset and poses.preset[i] else []
    bits += [k for k, v in poses.tags.items() if bool(v[i])]
    return " ".join(bits).replace("_", " ")


def draw_skeleton(ax, kp, horiz: int, extra=None) -> None:
    """Orthographic view of COCO keypoints (17, 3): horizontal axis ``horiz`` (0: X front view, 1: Y side)."""
    for a, b in SKELETON:
        col = (
            "tab:blue"
            if a in _LEFT and b in _LEFT
            else "tab:red"
            if a not in _LEFT and b not in _LEFT and a and b
            else "0.3"
        )
        ax.plot([kp[a, horiz], kp[b, horiz]], [kp[a, 2], kp[b, 2]], color=col, lw=1.2)
    ax.scatter(kp[:, horiz], kp[:, 2], s=3, c="k", zorder=3)
    if extra is not None:
        ax.scatter(extra[:, horiz], extra[:, 2], s=2, c="tab:green", zorder=3)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-0.1, 2.3)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def contact_sheet(
    body, samplers: dict, path: str | Path, n_per: int = 12, seed: int = 0, cols_per: int = 3
) -> Path:
    """Write a PNG of ``n_per`` sampled skeletons per strategy (front | side view each), strategies side by
    side.

    ``body``: :class:`generation.body.BodyModel`; ``samplers``: name -> PoseSampler. Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not samplers:
        raise ValueError("contact_sheet needs at least one sampler")
    path = Path(path)
    rows = -(-n_per // cols_per)
    ncols = len(samplers) * cols_per * 2
    fig, axes = plt.subplots(rows, ncols, figsize=(1.0 * ncols, 1.3 * rows + 0.5), squeeze=False)
    for s_i, (name, sampler) in enumerate(samplers.items()):
        g = torch.Generator().manual_seed(int(seed))
        poses = sampler.sample(n_per, g)
        bi = torch.randint(len(body.shapes), (n_per,), generator=g)
        posed = body.pose(bi.to(body.device), poses)
        kp = posed.keypoints.detach().cpu().numpy()
        ex = posed.extra_points.detach().cpu().numpy() if posed.extra_points is not None else None
        for i in range(n_per):
            r, c = divmod(i, cols_per)
            c0 = (s_i * cols_per + c) * 2
            for v in range(2):
                draw_skeleton(axes[r, c0 + v], kp[i], v, None if ex is None else ex[i])
            axes[r, c0].set_title(_label(poses, i)[:28], fontsize=6, loc="left")
        axes[0, s_i * cols_per * 2].annotate(
            f"{name}  (front | side)", (0, 1.25), xycoords="axes fraction", fontsize=11, weight="bold"
        )
    for r in range(rows):  # hide unused cells
        for c in range(ncols):
            if r * cols_per + (c % (cols_per * 2)) // 2 >= n_per:
                axes[r, c].axis("off")
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - 0.5 / (1.3 * rows + 0.5), wspace=0.05, hspace=0.25
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_contact_sheet(cfg: DictConfig, path: Path, stages: dict[str, Any] | None = None) -> Path:
    """Contact sheet of sampled skeletons: the configured strategy first, then the repo's other plain
    strategies."""
    gen = Generator(cfg, stages)
    samplers = {str(cfg.pose_sampling.get("name", "configured")): gen.pose_sampler}
    for f in sorted((config_dir() / "pose_sampling").glob("*.yaml")):
        node = OmegaConf.load(f)
        if f.stem not in samplers and "defaults" not in node:  # composed ones (mixture) only when configured
            samplers[f.stem] = instantiate_stage("pose_sampling", node)
    return contact_sheet(gen.body, samplers, path, seed=int(cfg.seed))
