"""Typed hand-offs between the generation stages: body -> pose -> camera -> project/render -> shards.

All tensors are batched along dim 0 and live on one device; angles in these containers are radians unless a
field name says ``_deg``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class BodyShapes:
    """A bank of sampled body shapes (N bodies). ``phenotypes`` feed Anny; the rest is recorded per sample."""

    phenotypes: Tensor  # (N, P) Anny phenotype values in [0, 1], columns = phenotype_labels
    phenotype_labels: list[str]
    stature_m: Tensor  # (N,) standing height of the unposed body, metres
    age_years: Tensor  # (N,)
    gender: Tensor  # (N,) 0 = male, 1 = female (Anny's convention)

    def __len__(self) -> int:
        return int(self.stature_m.shape[0])


@dataclass
class PoseBatch:
    """B sampled poses as Anny local-ref rotation deltas, plus the anatomical angles and tags that made them.

    ``rotations[:, i]`` is the delta rotation of bone ``bone_names[i]`` (Anny's local-ref axes: X lateral, Y
    back, Z up); bones not listed stay at identity. ``root`` (if present) rotates the whole body (lying).
    """

    bone_names: list[str]
    rotations: Tensor  # (B, n_bones, 3, 3)
    joint_names: list[str]  # anatomical joints, order of angles_deg
    angles_deg: Tensor  # (B, n_joints, 3): flexion/extension, abduction/adduction, internal/external rotation
    strategy: str
    preset: list[str]  # (B,) preset name, "" when the legs came from no preset
    tags: dict[str, Tensor] = field(default_factory=dict)  # name -> (B,) bool: walk, both_walk, hands_up, ...

    def __len__(self) -> int:
        return int(self.rotations.shape[0])


@dataclass
class PosedBodies:
    """Posed bodies in world coordinates (Z up, metres), standing on the floor (lowest foot point at Z = 0)
    and centred so that the mid-hip point is at X = Y = 0. Facing -Y at yaw 0 (Anny's rest facing)."""

    keypoints: Tensor  # (B, 17, 3) COCO keypoints, world
    body_index: Tensor  # (B,) long, row of the BodyShapes bank
    extra_points: Tensor | None = None  # (B, M, 3) optional foot points (toes, heels) used for the floor


@dataclass
class Cameras:
    """B cameras. ``p_cam = R @ p_world + t``; the person has already been yawed and placed in ``t``."""

    K: Tensor  # (B, 3, 3)
    R: Tensor  # (B, 3, 3)
    t: Tensor  # (B, 3)
    img_w: Tensor  # (B,) long
    img_h: Tensor  # (B,) long
    height_m: Tensor  # (B,) camera height above the floor
    tilt_deg: Tensor  # (B,)
    roll_deg: Tensor  # (B,)
    yaw_deg: Tensor  # (B,) person yaw about world Z
    hfov_deg: Tensor  # (B,)

    def __len__(self) -> int:
        return int(self.K.shape[0])


@dataclass
class Observations:
    """What one camera sees of one person: exact projection, detector-like keypoints and the target."""

    keypoints_cam: Tensor  # (B, 17, 3) camera-frame 3D keypoints
    gt_px: Tensor  # (B, 17, 2) exact pixel projection
    gt_visible: Tensor  # (B, 17) bool: inside the image (and not self-occluded when enabled)
    det_xyc: Tensor  # (B, 17, 3) detector-like keypoints (pixels, confidence; unseen -> conf 0)
    z_m: Tensor  # (B,) camera z of the mid-hip point: THE target
    hip_cam: Tensor  # (B, 3)
    ground_cam: Tensor  # (B, 3) floor point below the mid-hip, camera frame
    person_px_height: Tensor  # (B,) vertical pixel extent of the exact keypoints


def to_device(obj, device: torch.device | str):
    """Move every tensor field of a dataclass to ``device`` (returns a new instance)."""
    kwargs = {}
    for name, value in obj.__dict__.items():
        if isinstance(value, Tensor):
            value = value.to(device)
        elif isinstance(value, dict):
            value = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in value.items()}
        kwargs[name] = value
    return type(obj)(**kwargs)
