"""Impossible skeletons as augmentation (issue 20): each kind moves what it says and nothing else."""

from __future__ import annotations

import torch

from depth_pose.corrupt import KINDS, corrupt
from depth_pose.features import Augment, Observed
from depth_pose.keypoints import INDEX, L_HIP, NUM_KEYPOINTS, R_HIP

LEG = [INDEX[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle")]


def standing(b: int = 64) -> torch.Tensor:
    """A front-facing standing skeleton (normalised rays; y down), jittered per row."""
    base = torch.tensor(
        [
            [0.0, -0.85], [-0.03, -0.88], [0.03, -0.88], [-0.07, -0.86], [0.07, -0.86],
            [-0.18, -0.65], [0.18, -0.65], [-0.22, -0.35], [0.22, -0.35], [-0.24, -0.08], [0.24, -0.08],
            [-0.1, 0.0], [0.1, 0.0], [-0.11, 0.42], [0.11, 0.42], [-0.12, 0.85], [0.12, 0.85],
        ]
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    return base + 0.01 * torch.randn(b, NUM_KEYPOINTS, 2, generator=g)


def run(kind: int, b: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    xy = standing(b)
    mask = torch.ones(b, NUM_KEYPOINTS, dtype=torch.bool)
    rows = torch.arange(b) % 2 == 0
    out = corrupt(
        xy, mask, rows, torch.full((b,), kind), torch.Generator().manual_seed(1), scale_log_sigma=0.0
    )
    return xy, out


def moved(xy: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return (out - xy).norm(dim=-1) > 1e-6  # (B, 17)


def test_unselected_rows_and_upper_body_untouched():
    for k in range(len(KINDS)):
        xy, out = run(k)
        assert torch.equal(out[1::2], xy[1::2]), KINDS[k]
        if KINDS[k] in ("one_leg", "fold"):
            m = moved(xy, out)[::2]
            assert not m[:, :11].any() and not m[:, [L_HIP, R_HIP]].any(), KINDS[k]
            assert m[:, LEG].any(1).all(), KINDS[k]


def test_one_leg_puts_both_ankles_together():
    xy, out = run(KINDS.index("one_leg"))
    la, ra = INDEX["left_ankle"], INDEX["right_ankle"]
    gap = (out[::2, la] - out[::2, ra]).norm(dim=-1)
    assert (gap < 0.1 * (xy[::2, la] - xy[::2, ra]).norm(dim=-1) + 0.1).all()
    assert gap.max() < 0.15 and (xy[::2, la] - xy[::2, ra]).norm(dim=-1).min() > 0.2


def test_fold_puts_the_feet_above_the_hips():
    xy, out = run(KINDS.index("fold"))
    feet = out[::2][:, [INDEX["left_ankle"], INDEX["right_ankle"]], 1]
    hips = 0.5 * (out[::2, L_HIP, 1] + out[::2, R_HIP, 1])
    assert (feet < hips[:, None] - 0.5).all()  # y down: well above the hips


def test_limb_ratio_is_impossible_not_mild():
    xy, out = run(KINDS.index("limb_ratio"))
    ratios = []
    for hip, knee in ((L_HIP, INDEX["left_knee"]), (R_HIP, INDEX["right_knee"])):
        before = (xy[::2, knee] - xy[::2, hip]).norm(dim=-1)
        after = (out[::2, knee] - out[::2, hip]).norm(dim=-1)
        ratios.append(after / before)
    r = torch.stack(ratios, 1)
    changed = (r - 1).abs() > 1e-4
    assert ((r[changed] >= 1.59) | (r[changed] <= 1 / 1.59)).all()


def test_scramble_moves_2_to_5_visible_joints():
    xy, out = run(KINDS.index("scramble"))
    n = moved(xy, out)[::2].sum(1)
    assert ((n >= 1) & (n <= 5)).all() and n.float().mean() > 2


def test_corrupted_rows_are_also_scaled_as_a_whole():
    b = 2000
    xy = standing(b)
    mask = torch.ones(b, NUM_KEYPOINTS, dtype=torch.bool)
    rows = torch.ones(b, dtype=torch.bool)
    kind = torch.full((b,), KINDS.index("one_leg"))
    out = corrupt(xy, mask, rows, kind, torch.Generator().manual_seed(2), scale_log_sigma=0.1)
    upper = slice(0, 11)  # joints one_leg does not move: only the global scale changes them
    c = lambda v: v.mean(1, keepdim=True)  # noqa: E731
    f = (out[:, upper] - c(out)).norm(dim=-1).mean(1) / (xy[:, upper] - c(xy)).norm(dim=-1).mean(1)
    assert 0.08 < f.log().std() < 0.12 and abs(float(f.log().mean())) < 0.01


def test_augment_off_keeps_its_random_stream_and_on_hides_the_frame_of_corrupted_rows():
    b = 256
    xy = standing(b)
    mask = torch.ones(b, NUM_KEYPOINTS, dtype=torch.bool)
    border = torch.zeros(b, NUM_KEYPOINTS)
    obs = Observed(xy=xy, mask=mask, finite=mask, up=None, border=border)
    kw = dict(p_drop=0.3, p_flip=0.0, p_hide_frame=0.0)
    a = Augment(**kw)(obs, generator=torch.Generator().manual_seed(3))
    b0 = Augment(**kw, p_corrupt=0.0)(obs, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.mask, b0.mask) and torch.equal(a.xy, b0.xy)
    c = Augment(**kw, p_corrupt=0.5)(obs, generator=torch.Generator().manual_seed(3))
    changed = (c.xy != xy).any(-1).any(-1)
    assert 0.3 < changed.float().mean() < 0.7
    assert c.border[changed].isnan().all() and not c.border[~changed].isnan().any()
