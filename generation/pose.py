"""Pose samplers: anatomical joint angles -> Anny local-ref bone rotations
(:class:`generation.types.PoseBatch`).

Strategies, built with ``hydra.utils.instantiate(cfg.pose_sampling)``:

* ``uniform``: every joint angle uniform within its anatomical limits (``data/joint_limits.yaml``);
* ``normal``: truncated normal per angle, mean mid-range, sigma = ``sigma_frac`` x range;
* ``hybrid``: realistic poses: legs from presets (``data/presets/*.yaml``, interpolated toward a compatible
  neighbour and jittered) or from a walk cycle, then spine turn, random arms, hands up, head turn, each with a
  configurable probability and recorded as a tag;
* ``mixture``: each pose from one of the above, drawn with configured weights.

The anatomical -> Anny mapping (one convention for all joints, right side = mirror of the left) is described
in ``data/joint_limits.yaml`` and ``docs/joint_limits.md``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor

from generation.anny_model import DATA_DIR, DEFAULT_LIMITS, DEFAULT_PRESETS, bone_axes
from generation.kernels import kernel
from generation.mixture import mixture_components, mixture_probs
from generation.threads import torch_threads
from generation.types import PoseBatch

AXES = ("flex", "abd", "rot")
TAGS = ("walk", "both_walk", "hands_up", "spine_turn", "head_turn")
NAMED_POSES = (
    "standing",
    "squat",
    "kneel",
    "crouch",
    "sit_heels",
    "sit_chair",
    "sit_floor",
    "lying",
    "hands_up",
    "bent_forward",
)
# Poses on and near the floor (issue 19), scored as their own group by the invariance suite.
FLOOR_POSES = (
    "reclining",
    "reclining_leg_up",
    "sit_floor_legs_raised",
    "sit_cross",
    "lying_side",
    "lying_front",
    "kneel_both",
    "pick_up",
    "climb_step",
)
_MIRROR = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])  # M R M, M = diag(-1, 1, 1)


def moved(x: Any, device: torch.device) -> Any:
    """``x`` with every tensor in it on ``device``: tensors, tuples / lists / dicts of them, the dataclasses
    here (:class:`JointSet`, :class:`Preset`) and nested samplers (a mixture's components)."""
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, PoseSampler):
        return x.to(device)
    if isinstance(x, (JointSet, Preset)):
        out = copy.copy(x)
        for k, v in vars(x).items():
            setattr(out, k, moved(v, device))
        return out
    if isinstance(x, (tuple, list)):
        return type(x)(moved(v, device) for v in x)
    if isinstance(x, dict):
        return {k: moved(v, device) for k, v in x.items()}
    return x


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """New tensors on ``device`` inside the block (off the CPU only: the CPU path runs unchanged)."""
    return contextlib.nullcontext() if device.type == "cpu" else torch.device(device)


def _resolve(path: str | Path | None, default: Path) -> Path:
    if path is None or str(path) in ("", "null", "None"):
        return default
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = DATA_DIR / p
    return p


def _sel(idx: list[int]) -> slice | list[int]:
    """A slice for evenly spaced increasing indices (a view, fast), else the list itself."""
    if len(idx) > 1 and idx[1] > idx[0] and all(b - a == idx[1] - idx[0] for a, b in zip(idx, idx[1:])):
        return slice(idx[0], idx[-1] + 1, idx[1] - idx[0])
    return idx


@dataclass
class JointSet:
    """Anatomical joints (one Anny bone each) with limits and the anatomical -> Anny axis mapping."""

    names: list[str]  # e.g. hip_L, knee_R, spine03, root
    bones: list[str]  # Anny bone of each joint
    right: Tensor  # (J,) bool: mirrored joint
    axis: Tensor  # (J, 3, 3): unit axis (last dim) of flex, abd, rot (left-side frame)
    sign: Tensor  # (J, 3)
    rest: Tensor  # (J, 3) anatomical angles of Anny's rest pose
    lo: Tensor  # (J, 3)
    hi: Tensor  # (J, 3)
    relaxed: Tensor  # (J, 3)

    @classmethod
    def load(cls, path: str | Path | None = None) -> JointSet:
        path = _resolve(path, DEFAULT_LIMITS)
        if not path.exists():
            raise FileNotFoundError(f"joint limits file not found: {path}")
        spec = yaml.safe_load(path.read_text())["joints"]
        names, bones, right, axis, sign, rest, lo, hi, relaxed = [], [], [], [], [], [], [], [], []
        for jname, j in spec.items():
            sides = j.get("sides")
            for side in sides or [None]:
                names.append(jname if side is None else f"{jname}_{side}")
                bones.append(j["bone"] if side is None else f"{j['bone']}.{side}")
                right.append(side == "R")
                ax, sg = [], []
                for a in AXES:
                    name, s = j["axes"][a]
                    if name in ("X", "Y", "Z"):
                        v = torch.zeros(3)
                        v["XYZ".index(name)] = 1.0
                    elif name in ("bone_x", "bone_y", "bone_z"):
                        left_bone = j["bone"] if side is None else f"{j['bone']}.L"
                        v = bone_axes(left_bone)[:, "xyz".index(name[-1])]  # data/bone_axes.json
                    else:
                        raise ValueError(f"{path}: joint {jname}: unknown axis {name!r}")
                    ax.append(v / v.norm())
                    sg.append(float(s))
                axis.append(torch.stack(ax))
                sign.append(sg)
                lim = j["limits"]
                for a in AXES:
                    if lim[a][0] > lim[a][1]:
                        raise ValueError(f"{path}: joint {jname}: limits {a} {lim[a]} have min > max")
                lo.append([float(lim[a][0]) for a in AXES])
                hi.append([float(lim[a][1]) for a in AXES])
                rest.append([float(v) for v in j.get("rest", [0, 0, 0])])
                relaxed.append([float(v) for v in j.get("relaxed", [0, 0, 0])])
        t = torch.tensor
        return cls(names, bones, t(right), torch.stack(axis), t(sign), t(rest), t(lo), t(hi), t(relaxed))

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown joint {name!r}; known: {self.names}") from None

    def rotations(self, angles_deg: Tensor) -> Tensor:
        """Anatomical angles (B, J, 3) in degrees -> Anny local-ref delta rotations (B, J, 3, 3).

        Each factor is Rodrigues' ``R_k = I + sin(t_k) K_k + (1 - cos(t_k)) K_k^2`` about a fixed joint axis,
        so ``R_flex R_abd R_rot`` (mirrored on the right) is a fixed per-joint linear map of the 27 monomials
        ``[1, sin, vers]_flex x [1, sin, vers]_abd x [1, sin, vers]_rot``: one batched GEMM per call. The
        result is a view of (J, 3, 3, B) storage, the layout the body model's forward kinematics reads.
        """
        return _rotations(angles_deg, self.rest, self.sign, self._monomial_map())

    def _monomial_map(self) -> Tensor:
        """(J, 27, 9): row (i, j, k) = (A_i B_j C_k) flattened, A/B/C in {I, K, K^2} of the
        flex/abd/rot axes."""
        if getattr(self, "_mono", None) is None:  # built on the CPU wherever it is used: the same bits
            a = self.axis.cpu()  # (J, 3 axes, 3)
            z = torch.zeros_like(a[..., 0])
            K = torch.stack(
                [
                    torch.stack([z, -a[..., 2], a[..., 1]], -1),
                    torch.stack([a[..., 2], z, -a[..., 0]], -1),
                    torch.stack([-a[..., 1], a[..., 0], z], -1),
                ],
                -2,
            )  # (J, 3 axes, 3, 3)
            eye = torch.eye(3).expand_as(K)
            basis = torch.stack((eye, K, K @ K), 2)  # (J, 3 axes, 3 terms, 3, 3)
            prod = (basis[:, 0, :, None, None] @ basis[:, 1, None, :, None]) @ basis[:, 2, None, None, :]
            prod = prod * torch.where(self.right.cpu()[:, None, None, None, None, None], _MIRROR, 1.0)
            self._mono = prod.reshape(len(self.names), 27, 9).contiguous().to(self.axis.device)
        return self._mono

    def clamp(self, angles: Tensor, skip_root: bool = True) -> Tensor:
        out = torch.minimum(torch.maximum(angles, self.lo), self.hi)
        if skip_root and "root" in self.names:
            r = self.index("root")
            out[:, r] = angles[:, r]
        return out


class PoseSampler:
    """Base class: subclasses implement :meth:`sample_angles`; :meth:`sample` turns them into a PoseBatch."""

    name = "base"
    device = torch.device("cpu")

    def __init__(self, limits_file: str | None = None, name: str | None = None, threads: int = 1) -> None:
        self.joints = JointSet.load(limits_file)
        self.threads = int(threads)
        if name is not None and name != self.name:
            raise ValueError(f"{type(self).__name__} has name {self.name!r}, config says {name!r}")

    def sample(self, n: int, generator: torch.Generator) -> PoseBatch:
        """``n`` poses drawn with ``generator``, on its device (a CUDA generator: every draw and the
        rotations on the GPU; the sampler's tables follow it there)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        dev = generator.device
        self.to(dev)
        with torch_threads(self.threads), on_device(dev):
            angles, preset, tags = self.sample_angles(n, generator)
            return self.to_batch(angles, preset, tags)

    def to(self, device: torch.device | str) -> PoseSampler:
        """The sampler with every tensor it holds (limits, presets, tables, components) on ``device``."""
        device = torch.device(device)
        if device != self.device:
            self.joints._monomial_map()  # built before it leaves (on the CPU): the rotation table travels
            for k, v in list(vars(self).items()):
                setattr(self, k, moved(v, device))
            self.device = device
        return self

    def sample_angles(self, n: int, g: torch.Generator) -> tuple[Tensor, list[str], dict[str, Tensor]]:
        raise NotImplementedError

    def to_batch(
        self, angles: Tensor, preset: list[str], tags: dict[str, Tensor], strategy: str | None = None
    ) -> PoseBatch:
        n = angles.shape[0]
        full = {t: torch.zeros(n, dtype=torch.bool) for t in TAGS}
        full.update(tags)
        return PoseBatch(
            bone_names=list(self.joints.bones),
            rotations=self.joints.rotations(angles),
            joint_names=list(self.joints.names),
            angles_deg=angles,
            strategy=strategy or self.name,
            preset=preset,
            tags=full,
        )


class UniformPoseSampler(PoseSampler):
    """Every joint angle independent and uniform within its limits."""

    name = "uniform"

    def sample_angles(self, n, g):
        j = self.joints
        u = torch.rand(n, *j.lo.shape, generator=g)
        return j.lo + u * (j.hi - j.lo), [""] * n, {}


@kernel
def _rotations(angles_deg: Tensor, rest: Tensor, sign: Tensor, mono_map: Tensor) -> Tensor:
    """:meth:`JointSet.rotations`' math: (B, J, 3, 3) view of (J, 3, 3, B) storage. Pure (a
    :func:`generation.kernels.kernel`)."""
    B, J = angles_deg.shape[:2]
    rad = torch.deg2rad((angles_deg - rest) * sign).permute(2, 1, 0)  # (3 axes, J, B)
    b = torch.stack(
        (torch.ones_like(rad), torch.sin(rad), 1.0 - torch.cos(rad)), 1
    )  # (3 axes, 3 terms, J, B)
    mono = (b[0][:, None, None] * b[1][None, :, None] * b[2][None, None, :]).reshape(27, J, B)
    R = torch.bmm(mono_map.transpose(1, 2).to(mono.dtype), mono.transpose(0, 1))  # (J, 9, B)
    return R.view(J, 3, 3, B).permute(3, 0, 1, 2)


def truncnorm(n: int, mean: Tensor, sigma: Tensor, lo: Tensor, hi: Tensor, g: torch.Generator) -> Tensor:
    """(n, *mean.shape) samples of N(mean, sigma) truncated to [lo, hi] (inverse CDF; sigma = 0 -> mean)."""
    s = sigma.clamp_min(1e-9)
    a, b = torch.special.ndtr((lo - mean) / s), torch.special.ndtr((hi - mean) / s)
    u = torch.rand(n, *mean.shape, generator=g, dtype=torch.float64)
    x = mean + s * torch.special.ndtri((a + u * (b - a)).clamp(1e-12, 1 - 1e-12)).float()
    return torch.minimum(torch.maximum(x, lo), hi)


class NormalPoseSampler(PoseSampler):
    """Truncated normal per angle: mean mid-range, sigma = ``sigma_frac`` x range, truncated to the limits."""

    name = "normal"

    def __init__(
        self,
        sigma_frac: float = 0.25,
        limits_file: str | None = None,
        name: str | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(limits_file, name, threads)
        if sigma_frac <= 0:
            raise ValueError(f"sigma_frac must be > 0, got {sigma_frac}")
        self.sigma_frac = float(sigma_frac)

    def sample_angles(self, n, g):
        j = self.joints
        mean, sigma = 0.5 * (j.lo + j.hi), self.sigma_frac * (j.hi - j.lo)
        return (
            truncnorm(n, mean.double(), sigma.double(), j.lo.double(), j.hi.double(), g).float(),
            [""] * n,
            {},
        )


@dataclass
class Preset:
    name: str
    angles: Tensor  # (J, 3) full anatomical angles (unlisted joints 0)
    mask: Tensor  # (J,) bool: joints the preset sets
    neighbours: list[str]
    hands_up: bool  # whether hands-up arms make sense (wrists end above the nose)


def load_presets(joints: JointSet, presets_dir: str | Path | None = None) -> dict[str, Preset]:
    """Presets from ``presets_dir/*.yaml``. A joint name without side (``hip``) sets both sides."""
    d = _resolve(presets_dir, DEFAULT_PRESETS)
    files = sorted(d.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no preset files in {d}")
    out = {}
    for f in files:
        spec = yaml.safe_load(f.read_text())
        name = spec.get("name", f.stem)
        ang = torch.zeros(len(joints.names), 3)
        mask = torch.zeros(len(joints.names), dtype=torch.bool)
        for jn, v in (spec.get("angles") or {}).items():
            targets = [jn] if jn in joints.names else [f"{jn}_L", f"{jn}_R"]
            for t in targets:
                i = joints.index(t)
                ang[i] = torch.tensor([float(x) for x in v])
                mask[i] = True
        outside = ((ang < joints.lo - 1e-6) | (ang > joints.hi + 1e-6)).any(1) & mask
        outside[joints.index("root")] = False
        if outside.any():
            bad = [joints.names[i] for i in outside.nonzero().squeeze(1).tolist()]
            raise ValueError(f"preset {f}: angles of {bad} outside the joint limits")
        out[name] = Preset(
            name, ang, mask, list(spec.get("neighbours") or []), bool(spec.get("hands_up", True))
        )
    for p in out.values():
        missing = [nb for nb in p.neighbours if nb not in out]
        if missing:
            raise ValueError(f"preset {p.name}: unknown neighbours {missing}")
    return out


def pose_files_digest(pose_cfg: Mapping[str, Any] | None) -> str | None:
    """sha256 (16 hex) of the files a pose-sampling config reads: the joint-limits file of every sampler in
    it and the preset files (names and bytes) of every hybrid sampler in it (mixture components included).
    Part of the dataset id, so editing, adding or removing a preset never reuses a set made from the old
    ones. ``None`` for a config without samplers."""
    h, found = hashlib.sha256(), False

    def add_file(path: Path) -> None:
        data = path.read_bytes() if path.is_file() else b"<missing>"
        h.update(f"{path.name}\0{len(data)}\0".encode() + data)

    def walk(node: Any) -> None:
        nonlocal found
        if not isinstance(node, Mapping):
            return
        target = str(node.get("_target_", ""))
        if target.startswith("generation.pose."):
            found = True
            add_file(_resolve(node.get("limits_file"), DEFAULT_LIMITS))
            if target.endswith("HybridPoseSampler") or "presets_dir" in node:
                d = _resolve(node.get("presets_dir"), DEFAULT_PRESETS)
                for f in sorted(d.glob("*.yaml")):
                    add_file(f)
        for v in node.values():
            walk(v)

    walk(pose_cfg)
    return h.hexdigest()[:16] if found else None


class HybridPoseSampler(PoseSampler):
    """Realistic mixture: presets / walk cycle for the legs, then spine, arms, hands up, head
    (see module doc).

    Probabilities (all config values): ``p_preset`` legs from a preset; otherwise walk (both legs in one gait
    cycle, opposite phases) except ``p_both_walk`` of them where each leg takes its own random gait phase;
    then ``p_spine_turn``, ``p_hands_up`` (only for presets with ``hands_up: true``; always allowed for walk),
    ``p_head_turn``. Arms are random (truncated normal around the relaxed pose) unless the drawn preset sets
    them (e.g. ``reclining``: propped on the elbows), then the preset's arms, jittered like its legs.
    """

    name = "hybrid"

    def __init__(
        self,
        p_preset: float = 0.5,
        p_both_walk: float = 0.1,
        p_spine_turn: float = 0.3,
        p_hands_up: float = 0.3,
        p_head_turn: float = 0.3,
        interp_max: float = 0.5,
        jitter_deg: float = 5.0,
        arm_sigma_frac: float = 0.15,
        walk_scale: tuple[float, float] = (0.4, 1.3),
        spine_turn_deg: float = 40.0,
        head_turn_deg: float = 70.0,
        preset_weights: dict | None = None,
        presets_dir: str | None = None,
        limits_file: str | None = None,
        name: str | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(limits_file, name, threads)
        for k, v in dict(
            p_preset=p_preset,
            p_both_walk=p_both_walk,
            p_spine_turn=p_spine_turn,
            p_hands_up=p_hands_up,
            p_head_turn=p_head_turn,
            interp_max=interp_max,
        ).items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{k} must be in [0, 1], got {v}")
        self.p_preset, self.p_both_walk = float(p_preset), float(p_both_walk)
        self.p_spine_turn, self.p_hands_up, self.p_head_turn = (
            float(p_spine_turn),
            float(p_hands_up),
            float(p_head_turn),
        )
        self.interp_max, self.jitter_deg, self.arm_sigma_frac = (
            float(interp_max),
            float(jitter_deg),
            float(arm_sigma_frac),
        )
        self.walk_scale = tuple(float(v) for v in walk_scale)
        self.spine_turn_deg, self.head_turn_deg = float(spine_turn_deg), float(head_turn_deg)
        self.presets = load_presets(self.joints, presets_dir)
        self.preset_names = sorted(self.presets)
        w = preset_weights or {}
        unknown = [k for k in w if k not in self.presets]
        if unknown:
            raise ValueError(f"preset_weights name unknown presets {unknown}; known: {self.preset_names}")
        self.preset_weights = torch.tensor([float(w.get(k, 1.0)) for k in self.preset_names])
        nbs = [
            [self.preset_names.index(x) for x in self.presets[k].neighbours] or [i]
            for i, k in enumerate(self.preset_names)
        ]
        table = torch.tensor([v + [v[-1]] * (max(map(len, nbs)) - len(v)) for v in nbs])
        self._tables = (
            torch.stack([self.presets[k].angles for k in self.preset_names]),
            torch.stack([self.presets[k].mask for k in self.preset_names]),
            table,
            torch.tensor([len(v) for v in nbs]),
        )
        self._allow_hands_up = torch.tensor([self.presets[k].hands_up for k in self.preset_names])
        self._preset_lut = np.array(["", *self.preset_names], dtype=object)  # row name: index + 1 (0: none)
        J = self.joints
        # joint groups as slices where the joint order allows it (fancy indexing is slow on big batches)
        self._side = {s: _sel([J.index(f"{j}_{s}") for j in ("hip", "knee", "ankle")]) for s in "LR"}
        arm = sorted(J.index(f"{j}_{s}") for s in "LR" for j in ("shoulder", "elbow", "wrist"))
        self._arm, self._arm_names = _sel(arm), [J.names[i] for i in arm]
        self._spine = _sel([J.index(f"spine0{i}") for i in range(5, 0, -1)])
        self._n_spine = 5
        self._neck = _sel([J.index(n) for n in ("neck01", "neck02", "neck03", "head")])

    # -- pieces
    def _preset_angles(
        self, idx: Tensor, g: torch.Generator, interp_max: float, jitter: float
    ) -> tuple[Tensor, Tensor]:
        """Angles (n, J, 3) and mask (n, J) of presets ``idx`` interpolated toward a random
        neighbour + jitter."""
        P, M, table, count = self._tables
        n = len(idx)
        u = torch.rand(n, generator=g)
        nb = table[idx, (u * count[idx]).long().clamp(max=table.shape[1] - 1)]  # random neighbour (or itself)
        t = torch.rand(n, generator=g) * interp_max
        ang = torch.lerp(P[idx], P[nb], t[:, None, None])
        mask = M[idx] | M[nb]
        ang = ang + jitter * torch.randn(ang.shape, generator=g) * mask[..., None]
        return ang, mask

    def _walk(self, n: int, g: torch.Generator, independent: Tensor) -> Tensor:
        """Leg angles (n, 2 sides, 3 joints, 3) from a simple gait cycle; ``independent`` legs
        get own phases."""
        t_l = torch.rand(n, generator=g)
        t_r = torch.where(independent, torch.rand(n, generator=g), (t_l + 0.5) % 1.0)
        lo, hi = self.walk_scale
        s = lo + (hi - lo) * torch.rand(n, generator=g)
        return self.gait_legs(t_l, t_r, s)

    @staticmethod
    def gait_legs(phase_left: Tensor, phase_right: Tensor, scale: Tensor) -> Tensor:
        """Leg angles (n, 2 sides (L, R), 3 joints (hip, knee, ankle), 3) of the gait cycle at the legs'
        phases (in [0, 1), 0 = heel strike), flexion scaled by ``scale`` (1 = a normal stride): a caller
        that advances the phase in time gets a continuous walk (the scene suite)."""
        n = len(phase_left)
        out = torch.zeros(n, 2, 3, 3)
        for k, t in enumerate((phase_left, phase_right)):
            hip = 8.0 + 22.0 * torch.cos(2 * math.pi * t)  # +30 at heel strike, -14 at terminal stance
            knee = (
                3.0
                + 15.0 * torch.exp(-(((t - 0.15) / 0.08) ** 2))
                + 57.0 * torch.exp(-(((t - 0.72) / 0.12) ** 2))
            )
            ankle = (
                10.0 * torch.exp(-(((t - 0.45) / 0.12) ** 2))
                - 20.0 * torch.exp(-(((t - 0.63) / 0.06) ** 2))
                - 8.0 * torch.exp(-(((t - 0.08) / 0.05) ** 2))
            )
            out[:, k, 0, 0], out[:, k, 1, 0], out[:, k, 2, 0] = scale * hip, scale * knee, scale * ankle
        return out

    def with_legs(self, angles: Tensor, legs: Tensor) -> Tensor:
        """``angles`` (n, J, 3) with the legs replaced by ``legs`` (n, 2, 3, 3) from :meth:`gait_legs`,
        clamped to the joint limits."""
        out = angles.clone()
        for k, s in enumerate("LR"):
            out[:, self._side[s]] = legs[:, k]
        return self.joints.clamp(out)

    def _hands_up(self, n: int, g: torch.Generator) -> Tensor:
        """Arm angles (n, 6 joints in ``_arm_names`` order, 3) with both hands raised overhead."""
        out = torch.zeros(n, 6, 3)
        for i, name in enumerate(self._arm_names):
            if name.startswith("shoulder"):  # arm up (abduction kept small: flexion then does the lifting)
                out[:, i, 0] = 160.0 + 12.0 * torch.rand(n, generator=g)
                out[:, i, 1] = 20.0 * torch.rand(n, generator=g)
                out[:, i, 2] = -20.0 + 40.0 * torch.rand(n, generator=g)
            elif name.startswith("elbow"):  # nearly straight
                out[:, i, 0] = 25.0 * torch.rand(n, generator=g)
            else:  # wrist
                out[:, i, :2] = 10.0 * torch.randn(n, 2, generator=g)
        return out

    def sample_angles(self, n, g):
        J = self.joints
        ang = torch.zeros(n, len(J.names), 3)
        # legs: preset or walk
        use_preset = torch.rand(n, generator=g) < self.p_preset
        pidx = torch.multinomial(self.preset_weights, max(n, 1), replacement=True, generator=g)[:n]
        p_ang, p_mask = self._preset_angles(pidx, g, self.interp_max, self.jitter_deg)
        ang = torch.where(use_preset[:, None, None], p_ang, ang)
        both = (torch.rand(n, generator=g) < self.p_both_walk) & ~use_preset
        walk = ~use_preset & ~both
        legs = self._walk(n, g, both)
        for k, s in enumerate("LR"):
            ang[:, self._side[s]] = torch.where(use_preset[:, None, None], ang[:, self._side[s]], legs[:, k])
        row_name = torch.where(use_preset, pidx + 1, 0).cpu().numpy()  # 0: no preset (one gather, no loop)
        preset = self._preset_lut[row_name].tolist()
        # spine: small posture noise; turn with probability p_spine_turn
        spine_set = use_preset[:, None] & p_mask[:, self._spine]
        noise = 2.0 * torch.randn(n, self._n_spine, 3, generator=g)
        ang[:, self._spine] = torch.where(spine_set[..., None], ang[:, self._spine], noise)
        spine_turn = torch.rand(n, generator=g) < self.p_spine_turn
        total = self.spine_turn_deg * (2 * torch.rand(n, generator=g) - 1)
        bend = 0.2 * self.spine_turn_deg * (2 * torch.rand(n, generator=g) - 1)
        share = torch.tensor([0.1, 0.15, 0.25, 0.25, 0.25])
        turn = torch.zeros(n, self._n_spine, 3)
        turn[..., 2] = total[:, None] * share
        turn[..., 1] = bend[:, None] * share
        ang[:, self._spine] += turn * spine_turn[:, None, None]
        # arms: always random around the relaxed pose; hands up with probability p_hands_up where allowed
        lo, hi = J.lo[self._arm], J.hi[self._arm]
        arms = truncnorm(
            n,
            J.relaxed[self._arm].double(),
            (self.arm_sigma_frac * (hi - lo)).double(),
            lo.double(),
            hi.double(),
            g,
        ).float()
        arm_set = use_preset[:, None] & p_mask[:, self._arm]  # arms the drawn preset sets (no new draws)
        arms = torch.where(arm_set[..., None], p_ang[:, self._arm], arms)
        allowed = self._allow_hands_up[pidx] | ~use_preset
        hands_up = (torch.rand(n, generator=g) < self.p_hands_up) & allowed
        arms = torch.where(hands_up[:, None, None], self._hands_up(n, g), arms)
        ang[:, self._arm] = arms
        # keep raised hands above the head: halve the trunk's side bend when the hands are up
        ang[:, self._spine, 1] *= torch.where(hands_up, 0.5, 1.0)[:, None]
        # head: near neutral, or turned with probability p_head_turn
        head_turn = torch.rand(n, generator=g) < self.p_head_turn
        neck = 3.0 * torch.randn(n, 4, 3, generator=g)
        yaw = self.head_turn_deg * (2 * torch.rand(n, generator=g) - 1)
        tilt = 15.0 * (2 * torch.rand(n, generator=g) - 1)
        share = torch.tensor([0.2, 0.2, 0.2, 0.4])
        neck[..., 2] += (yaw[:, None] * share) * head_turn[:, None]
        neck[..., 0] += (tilt[:, None] * share) * head_turn[:, None]
        neck_set = use_preset[:, None] & p_mask[:, self._neck]
        ang[:, self._neck] = torch.where(neck_set[..., None], ang[:, self._neck] + neck, neck)
        ang = J.clamp(ang)
        tags = dict(walk=walk, both_walk=both, hands_up=hands_up, spine_turn=spine_turn, head_turn=head_turn)
        return ang, preset, tags


class MixturePoseSampler(PoseSampler):
    """Each pose from one of several samplers, drawn with ``weights`` (e.g. mostly ``hybrid`` plus some
    ``uniform`` random-angle poses): a middle ground between the pure strategies. Rows keep their component's
    presets and tags; the ``strategy`` column says ``mixture``, so per-pose reports label the rows that have
    neither a preset nor a gait tag (the random-angle ones) ``mixture``."""

    name = "mixture"

    def __init__(
        self,
        components: Mapping[str, Any],
        weights: Mapping[str, float] | None = None,
        limits_file: str | None = None,
        name: str | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(limits_file=limits_file, name=name, threads=threads)
        parts = mixture_components(components, PoseSampler, "mixture")
        for key, comp in parts.items():
            if (
                list(comp.joints.names) != list(self.joints.names)
                or not torch.equal(comp.joints.lo, self.joints.lo)
                or not torch.equal(comp.joints.hi, self.joints.hi)
            ):
                raise ValueError(
                    f"mixture component {key!r} uses other joint limits than the mixture (limits_file)"
                )
        self.parts, self.probs = parts, mixture_probs(parts, weights, "mixture")

    def sample_angles(self, n, g):
        comp = torch.multinomial(self.probs, max(n, 1), replacement=True, generator=g)[:n]
        angles = torch.zeros(n, len(self.joints.names), 3)
        preset = np.full(n, "", dtype=object)
        tags = {t: torch.zeros(n, dtype=torch.bool) for t in TAGS}
        for i, part in enumerate(self.parts.values()):
            idx = torch.nonzero(comp == i).flatten()
            if idx.numel() == 0:
                continue
            a, p, t = part.sample_angles(int(idx.numel()), g)
            angles[idx] = a
            preset[idx.cpu().numpy()] = np.array(p, dtype=object)  # one scatter, no loop over rows
            for name, v in t.items():
                tags[name][idx] = v
        return angles, preset.tolist(), tags


def named_poses(
    names: list[str],
    n_per_name: int,
    generator: torch.Generator,
    jitter_deg: float = 5.0,
    interp_max: float = 0.3,
    limits_file: str | None = None,
    presets_dir: str | None = None,
) -> PoseBatch:
    """``n_per_name`` VARIANTS of each named pose (pose-invariance suite): the preset interpolated a random
    fraction (<= ``interp_max``) toward one of its neighbours, plus ``jitter_deg`` Gaussian jitter; arms
    relaxed (``hands_up``: standing legs with both hands raised). ``preset`` of each sample = its name."""
    s = HybridPoseSampler(limits_file=limits_file, presets_dir=presets_dir)
    J = s.joints
    out, preset = [], []
    tags = {t: [] for t in TAGS}
    for name in names:
        base = "standing" if name == "hands_up" else name
        if base not in s.presets:
            raise KeyError(
                f"unknown named pose {name!r}; known: {sorted(set(s.preset_names) | {'hands_up'})}"
            )
        idx = torch.full((n_per_name,), s.preset_names.index(base), dtype=torch.long)
        ang, mask = s._preset_angles(idx, generator, interp_max, jitter_deg)
        arms = J.relaxed[s._arm] + jitter_deg * torch.randn(n_per_name, 6, 3, generator=generator)
        if name == "hands_up":
            arms = s._hands_up(n_per_name, generator)
        ang[:, s._arm] = torch.where(mask[:, s._arm, None], ang[:, s._arm], arms)
        out.append(J.clamp(ang))
        preset += [name] * n_per_name
        for t in TAGS:
            tags[t].append(torch.full((n_per_name,), t == "hands_up" and name == "hands_up"))
    angles = torch.cat(out) if out else torch.zeros(0, len(J.names), 3)
    batch = s.to_batch(
        angles,
        preset,
        {t: torch.cat(v) if v else torch.zeros(0, dtype=torch.bool) for t, v in tags.items()},
        strategy="named",
    )
    return batch
