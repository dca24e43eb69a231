"""Keypoints no body produces, as a training augmentation: the detector's gross errors (issue 20).

A detector sometimes reports a skeleton no body can make: both ankles on one leg, a limb far too long or too
short for the rest of the body, the legs folded up over the torso, a few joints thrown somewhere in the
person's box. The depth target of such a row stays the true one, so a model trained with a share of them
(``augment.p_corrupt``) learns from the data itself how much such inputs still say about depth: where the
corruption hides the scale, its predicted spread (sigma) widens; where the rest of the body still tells the
scale, it learns to look past the corrupted joints. Nothing is a hand rule on the model's output.

Kinds (:data:`KINDS`, one per corrupted row, uniformly):

* ``one_leg``: the other leg's ankle (and on half of the rows its knee) put onto this leg's, a little apart;
* ``limb_ratio``: one leg or both (or one arm) stretched or shrunk from its root by a factor 1.6-2.5 or its
  inverse (impossible proportions; a mild factor could be foreshortening);
* ``fold``: the knees and ankles reflected through the hip line across the torso axis (feet above the head);
* ``scramble``: 2-5 random visible joints moved to random places within the person's extent.

Every corrupted row is also scaled about its centre by a log-normal factor (:data:`SCALE_LOG_SIGMA`): a
detector that fails this way is off as a whole too. Measured on YOLO's render pairs (seed-0 full-body people,
the detection's global scale vs the exact skeleton, :func:`generation.detector_model.similarity`): detections
with both ankles on one leg or crossed legs spread 0.12-0.13 in log scale, the others 0.083 — an extra
sqrt(0.129^2 - 0.083^2) ~ 0.10 (docs/bench_detector_model.md).

Works on :class:`depth_pose.features.Observed` coordinates (normalised rays or pixels): every operation is
a similarity-invariant construction from the person's own joints.
"""

from __future__ import annotations

import torch
from torch import Tensor

from depth_pose.keypoints import INDEX, L_HIP, L_SHOULDER, R_HIP, R_SHOULDER

KINDS = ("one_leg", "limb_ratio", "fold", "scramble")
_LEGS = (
    (L_HIP, INDEX["left_knee"], INDEX["left_ankle"]),
    (R_HIP, INDEX["right_knee"], INDEX["right_ankle"]),
)
_ARMS = (
    (L_SHOULDER, INDEX["left_elbow"], INDEX["left_wrist"]),
    (R_SHOULDER, INDEX["right_elbow"], INDEX["right_wrist"]),
)
_LEG_ENDS = (INDEX["left_knee"], INDEX["right_knee"], INDEX["left_ankle"], INDEX["right_ankle"])
RATIO_RANGE = (1.6, 2.5)  # limb_ratio factors: this range or its inverse
SCALE_LOG_SIGMA = 0.10  # a corrupted detection's extra global scale error (log), measured (module doc)


def corrupt(
    xy: Tensor,
    mask: Tensor,
    rows: Tensor,
    kind: Tensor,
    generator: torch.Generator | None,
    scale_log_sigma: float = SCALE_LOG_SIGMA,
) -> Tensor:
    """``xy`` (B, 17, 2) with the rows ``rows`` (B,) bool corrupted by ``kind`` (B,) int in ``range(4)``
    (:data:`KINDS`) and scaled as a whole by ``exp(N(0, scale_log_sigma))``; ``mask`` (B, 17) bool visible
    joints (scramble moves visible ones only). Rows not selected are returned unchanged (same values)."""
    B, J, _ = xy.shape
    dev, dt = xy.device, xy.dtype

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, device=dev, dtype=dt, generator=generator)

    out = xy.clone()
    hips = 0.5 * (xy[:, L_HIP] + xy[:, R_HIP])
    shoulders = 0.5 * (xy[:, L_SHOULDER] + xy[:, R_SHOULDER])
    axis = shoulders - hips
    torso = axis.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    axis = axis / torso  # (B, 2) unit, hips -> shoulders
    u = rand(B, 6)
    side = u[:, 0] < 0.5
    # one_leg: the other leg's ankle (and knee on half of the rows) next to this leg's own.
    sel = rows & (kind == 0)
    if sel.any():
        for this, other in ((_LEGS[0], _LEGS[1]), (_LEGS[1], _LEGS[0])):
            r = sel & (side if this is _LEGS[0] else ~side)
            off = (rand(B, 2) - 0.5) * 0.1 * torso
            for k, (jt, jo) in enumerate(zip(this[1:], other[1:])):
                move = r if k == 1 else r & (u[:, 1] < 0.5)
                out[:, jo] = torch.where(move[:, None], xy[:, jt] + off, out[:, jo])
    # limb_ratio: a chain scaled from its root (every segment by the same factor).
    sel = rows & (kind == 1)
    if sel.any():
        f = RATIO_RANGE[0] + (RATIO_RANGE[1] - RATIO_RANGE[0]) * u[:, 2]
        f = torch.where(u[:, 3] < 0.5, f, 1.0 / f)[:, None]
        which = (u[:, 4] * 4).long().clamp_max(3)  # 0/1: one leg, 2: both legs, 3: an arm
        for c, chain in enumerate((*_LEGS, *_ARMS)):
            if c < 2:
                r = sel & ((which == c) | (which == 2))
            else:
                r = sel & (which == 3) & (side if c == 2 else ~side)
            root, mid, end = chain
            mid_new = xy[:, root] + f * (xy[:, mid] - xy[:, root])
            end_new = mid_new + f * (xy[:, end] - xy[:, mid])
            out[:, mid] = torch.where(r[:, None], mid_new, out[:, mid])
            out[:, end] = torch.where(r[:, None], end_new, out[:, end])
    # fold: knees and ankles mirrored through the hip line (the line through the hips across the torso axis).
    sel = rows & (kind == 2)
    if sel.any():
        for j in _LEG_ENDS:
            d = xy[:, j] - hips
            refl = xy[:, j] - 2.0 * (d * axis).sum(-1, keepdim=True) * axis
            out[:, j] = torch.where(sel[:, None], refl, out[:, j])
    # scramble: 2-5 visible joints to random places in the person's extent.
    sel = rows & (kind == 3)
    if sel.any():
        big = torch.finfo(dt).max
        lo = torch.where(mask[..., None], xy, torch.full_like(xy, big)).amin(1)
        hi = torch.where(mask[..., None], xy, torch.full_like(xy, -big)).amax(1)
        ok = (hi >= lo).all(-1)
        lo, hi = torch.where(ok[:, None], lo, hips), torch.where(ok[:, None], hi, hips)
        k = 2 + (u[:, 5] * 4).long().clamp_max(3)  # 2..5
        score = torch.where(mask, rand(B, J), torch.full((B, J), 2.0, device=dev, dtype=dt))
        pick = (score.argsort(1).argsort(1) < k[:, None]) & mask & sel[:, None]
        place = lo[:, None] + rand(B, J, 2) * (hi - lo)[:, None]
        out = torch.where(pick[..., None], place, out)
    # The whole detection off in scale, about its visible joints' centre.
    w = mask.to(dt)[..., None]
    c = (out * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B, 2)
    f = torch.exp(scale_log_sigma * torch.randn(B, device=dev, dtype=dt, generator=generator))
    return torch.where(rows[:, None, None], c[:, None] + f[:, None, None] * (out - c[:, None]), out)
