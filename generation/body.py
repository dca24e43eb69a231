"""Anny bodies: a bank of realistic body shapes and a fast, exact, batched keypoint forward for posing them.

Why a custom forward: Anny's full forward (blendshapes + skinning of 13,718 vertices + COCO regressor) is
orders of magnitude slower than the rate of posed skeletons the generator needs (rates: docs/bench_body.md).
Linear blend skinning and the keypoint regressor are both linear, so every keypoint is a fixed combination of
bone transforms:

    kp_k = sum_j c_kj w_j + G_j n_kj            (exact, no vertices formed)

with G_j the posed rotation of bone j in world-aligned axes, w_j its posed head and the constants c_kj
(regressor x skinning weights, shape-independent) and n_kj (shape-dependent). Bones that are never posed move
rigidly with their nearest posed ancestor, so the sums fold onto the posable bones (22 by default: the bones
of ``data/joint_limits.yaml`` + root). Everything that depends on the body shape is computed ONCE per body of
the bank; :meth:`BodyModel.pose` then runs forward kinematics on the posable bones only, gathers the per-body
constants by ``body_index`` and writes the tiny 3x3 products as long vector ops in a (component, sample)
layout, chunked so the gathered constants stay in cache.

Anny's ``local-ref`` pose parameterisation (see ``anny/utils/kinematics.py``): with ``D_c`` the delta rotation
of bone c (world-aligned axes at rest), ``G_c = G_parent D_c`` and ``w_c = w_parent + G_parent q_c`` where
``q_c`` is the bone's reference head offset. The root delta rotates the whole body about the origin.
"""

from __future__ import annotations

import torch
from torch import Tensor

import depth_pose  # noqa: F401  (sets ANNY_CACHE_DIR etc. before anny is imported)
from depth_pose.keypoints import L_HIP, R_HIP
from generation.anny_model import limits_bones, load_anny
from generation.kernels import kernel, take_last
from generation.threads import torch_threads
from generation.types import BodyShapes, PoseBatch, PosedBodies

SIDES = ("L", "R")
# A wider posable set (adds twist bones, clavicles, shoulders) usable as ``posable_bones``; the default is the
# bones of joint_limits.yaml. Bones outside the posable set (pelvis, fingers, toes, eyes) stay at identity.
EXTENDED_POSABLE_BONES: tuple[str, ...] = (
    "root",
    "spine05",
    "spine04",
    "spine03",
    "spine02",
    "spine01",
    "neck01",
    "neck02",
    "neck03",
    "head",
    *(
        f"{b}.{s}"
        for s in SIDES
        for b in (
            "upperleg01",
            "upperleg02",
            "lowerleg01",
            "lowerleg02",
            "foot",
            "clavicle",
            "shoulder01",
            "upperarm01",
            "upperarm02",
            "lowerarm01",
            "lowerarm02",
            "wrist",
        )
    ),
)

NUM_REGRESSOR_POINTS = 23  # 17 COCO + (big toe, small toe, heel) x (left, right)
# Samples per forward-kinematics chunk off the CPU: a fixed size (like pose_chunk), few kernel launches, and
# bounded memory (~6 KB a sample with every intermediate alive: < 1 GB).
GPU_POSE_CHUNK = 131_072
# Median stature (m) by age 5..17 (WHO/CDC growth references, rounded); SD = child_stature_cv * median.
_BOYS_MEDIAN = (1.10, 1.16, 1.22, 1.28, 1.33, 1.38, 1.43, 1.49, 1.56, 1.64, 1.70, 1.73, 1.75)
_GIRLS_MEDIAN = (1.09, 1.15, 1.21, 1.27, 1.33, 1.38, 1.44, 1.51, 1.57, 1.60, 1.62, 1.62, 1.63)


def _blendshape_coeffs(model, phenotypes: Tensor) -> Tensor:
    z = phenotypes.new_zeros(phenotypes.shape[0], 0)
    return model._get_phenotype_blendshape_coefficients(
        phenotypes,
        z.new_zeros(phenotypes.shape[0], len(model.local_change_labels)),
        z.new_zeros(phenotypes.shape[0], len(model.facial_action_labels)),
    )


def place_on_floor(points: Tensor, hips: tuple[int, int] = (L_HIP, R_HIP)) -> Tensor:
    """Translation (B, 3) that puts the lowest of ``points`` (B, M, 3) at Z = 0 and the mid-hip
    at X = Y = 0."""
    mid = 0.5 * (points[:, hips[0]] + points[:, hips[1]])
    return torch.stack((-mid[:, 0], -mid[:, 1], -points[..., 2].amin(1)), dim=1)


class KeypointBank:
    """The fast exact keypoint path of a bank of bodies: per-body constants and the posing that uses them (no
    Anny). Subclasses fill in ``shapes`` (:class:`BodyShapes`), ``device``, ``pose_chunk``, ``pose_threads``
    and the fast-path constants (:meth:`BodyModel._build_fast_path` from Anny, :meth:`set_fast_path` from a
    saved bank, :mod:`generation.bank`)."""

    FAST_PATH_TENSORS = ("off_soa", "P_soa", "C", "scatter_kp")

    def fast_path_state(self) -> tuple[dict[str, Tensor], dict]:
        """The fast-path constants as CPU tensors (:data:`FAST_PATH_TENSORS`: head offsets (3, A, N), keypoint
        offsets (3, n_pairs, N), C (K, A), scatter (K, n_pairs)) and the skeleton structure (JSON-able: bone
        names, parent slots, pair ranges): what :meth:`set_fast_path` takes back."""
        tensors = {
            name: getattr(self, f"_{name}").detach().cpu().contiguous() for name in self.FAST_PATH_TENSORS
        }
        structure = {
            "bone_names": list(self.bone_names),
            "pslot": [int(a) for a in self._pslot],
            "pair_ranges": [[int(a), int(b)] for a, b in self._pair_ranges],
        }
        return tensors, structure

    def set_fast_path(self, tensors: dict[str, Tensor], structure: dict) -> None:
        """Install fast-path constants saved by :meth:`fast_path_state` (tensors moved to ``self.device``)."""
        self.bone_names = list(structure["bone_names"])
        self._slot = {b: i for i, b in enumerate(self.bone_names)}
        self._pslot = [int(a) for a in structure["pslot"]]
        self._pair_ranges = [(int(a), int(b)) for a, b in structure["pair_ranges"]]
        for name in self.FAST_PATH_TENSORS:
            setattr(self, f"_{name}", tensors[name].to(self.device))

    def _columns(self, poses: PoseBatch) -> list[int | None]:
        """For each fast-path bone, its column in ``poses.rotations`` (None: identity)."""
        unknown = [b for b in poses.bone_names if b not in self._slot]
        if unknown:
            raise ValueError(
                f"PoseBatch poses bones the body model cannot pose: {unknown} "
                f"(posable: {self.bone_names}; see conf/body posable_bones)"
            )
        col = {b: i for i, b in enumerate(poses.bone_names)}
        return [col.get(b) for b in self.bone_names]

    def keypoints23(self, body_index: Tensor, poses: PoseBatch, chunk: int | None = None) -> Tensor:
        """All 23 regressor keypoints (B, 23, 3) in Anny's posed frame (root at the origin), not yet placed.

        Works in chunks of ``chunk`` samples so that the per-body constants gathered for a chunk stay in
        cache. Default: ``pose_chunk`` on the CPU; elsewhere (a GPU) :data:`GPU_POSE_CHUNK`, since each chunk
        costs some 400 kernel launches and the cache argument is the CPU's (docs/bench_gpu.md).
        """
        if chunk is None and self.device.type != "cpu":
            chunk = GPU_POSE_CHUNK
        chunk = int(chunk or self.pose_chunk)
        with torch_threads(self.pose_threads if self.device.type == "cpu" else 0):
            return self._keypoints23(body_index, poses, chunk)

    def _keypoints23(self, body_index: Tensor, poses: PoseBatch, chunk: int) -> Tensor:
        if body_index.shape[0] != len(poses):
            raise ValueError(f"body_index has {body_index.shape[0]} rows but poses has {len(poses)}")
        bi = body_index.to(self.device)
        if len(bi) and (int(bi.min()) < 0 or int(bi.max()) >= len(self.shapes)):
            raise IndexError(f"body_index out of range [0, {len(self.shapes)})")
        cols = self._columns(poses)
        rot = poses.rotations.to(self.device, torch.float32)
        B, K = len(bi), NUM_REGRESSOR_POINTS
        out = rot.new_empty(3, K, B)  # planar; returned as its (B, K, 3) view
        # structure-of-arrays layout (components, ..., samples): tiny 3x3 products as long vector ops
        for s in range(0, B, chunk):
            b = bi[s : s + chunk]
            off, P = take_last(self._off_soa, b), take_last(self._P_soa, b)  # this chunk's bodies' constants
            kp = _forward_kinematics(
                rot[s : s + chunk], off, P, cols, self._pslot, self._pair_ranges, self._scatter_kp, self._C
            )
            out[:, :, s : s + chunk] = kp
        return out.permute(2, 1, 0)

    def pose(self, body_index: Tensor, poses: PoseBatch) -> PosedBodies:
        """Posed COCO keypoints (B, 17, 3) in the world: lowest of the 23 points on Z = 0,
        mid-hip at X = Y = 0.

        Exact (float32 round-off) equivalent of Anny's full forward + COCO regressor, placed
        like :meth:`BodyModel.mesh`.
        """
        kp = self.keypoints23(body_index, poses)
        kp = kp + place_on_floor(kp)[:, None]
        return PosedBodies(
            keypoints=kp[:, :17], body_index=body_index.to(self.device), extra_points=kp[:, 17:]
        )

    def identity_poses(self, n: int) -> PoseBatch:
        """n rest poses (all deltas identity)."""
        return PoseBatch(
            bone_names=list(self.bone_names),
            rotations=torch.eye(3, device=self.device).expand(n, len(self.bone_names), 3, 3).clone(),
            joint_names=[],
            angles_deg=torch.zeros(n, 0, 3, device=self.device),
            strategy="rest",
            preset=[""] * n,
            tags={},
        )


class BodyModel(KeypointBank):
    """A bank of ``n_bodies`` realistic Anny body shapes, posed fast (:meth:`pose`) or fully (:meth:`mesh`).

    Shapes: sex 50/50; ages: adults 18-64 except ``child_share`` (5-17) and ``elderly_share`` (65-90); stature
    drawn per sex/age (adults N(1.75, 0.075) m for men, N(1.62, 0.07) m for women), clamped to
    ``stature_range_m``, and reached by solving Anny's ``height`` phenotype; weight, muscle and proportions
    from Anny's age-conditional distributions. ``shapes.stature_m`` is the measured rest-mesh height.
    """

    def __init__(
        self,
        n_bodies: int = 4096,
        seed: int = 0,
        child_share: float = 0.05,
        elderly_share: float = 0.10,
        adult_age_range: tuple[float, float] = (18.0, 64.0),
        child_age_range: tuple[float, float] = (5.0, 17.0),
        elderly_age_range: tuple[float, float] = (65.0, 90.0),
        male_stature_m: tuple[float, float] = (1.75, 0.075),
        female_stature_m: tuple[float, float] = (1.62, 0.07),
        child_stature_cv: float = 0.045,
        elderly_shrink_m_per_year: float = 0.003,
        stature_range_m: tuple[float, float] = (1.0, 2.1),
        posable_bones: list[str] | tuple[str, ...] | None = None,
        chunk_size: int = 512,
        pose_chunk: int = 4096,
        pose_threads: int = 1,
        device: str = "cpu",
    ) -> None:
        if n_bodies < 1:
            raise ValueError(f"n_bodies must be >= 1, got {n_bodies}")
        if not (0 <= child_share and 0 <= elderly_share and child_share + elderly_share <= 1):
            raise ValueError(f"bad age shares: child_share={child_share}, elderly_share={elderly_share}")
        lo, hi = (float(v) for v in stature_range_m)
        if not 0.5 <= lo < hi <= 2.5:
            raise ValueError(f"stature_range_m must satisfy 0.5 <= lo < hi <= 2.5, got {stature_range_m}")
        self.device = torch.device(device)
        self.stature_range_m = (lo, hi)
        self.chunk_size = int(chunk_size)
        self.pose_chunk = int(pose_chunk)
        self.pose_threads = int(pose_threads)
        self.seed = int(seed)
        self.model, self.regressor = load_anny()
        # Built under the posing thread cap: the same bank, to the last bit, on any core count (with 2 threads
        # and with 1 the floats differed in the last bit, and every shard's sha256 with them)
        with torch_threads(self.pose_threads if self.device.type == "cpu" else 0):
            self.shapes, coeffs = self._sample_shapes(
                n_bodies,
                seed,
                child_share,
                elderly_share,
                adult_age_range,
                child_age_range,
                elderly_age_range,
                male_stature_m,
                female_stature_m,
                child_stature_cv,
                elderly_shrink_m_per_year,
            )
            bones = list(posable_bones) if posable_bones is not None else limits_bones()
            self._build_fast_path(bones, coeffs)

    # ------------------------------------------------------------------ shapes
    def _coeffs(self, phenotypes: Tensor) -> Tensor:
        """Blendshape coefficients (N, C) of phenotypes (N, P), chunked."""
        return torch.cat(
            [
                _blendshape_coeffs(self.model, phenotypes[s : s + self.chunk_size])
                for s in range(0, phenotypes.shape[0], self.chunk_size)
            ]
        )

    def _sample_shapes(
        self,
        n,
        seed,
        child_share,
        elderly_share,
        adult_r,
        child_r,
        elderly_r,
        male_st,
        female_st,
        child_cv,
        shrink,
    ) -> tuple[BodyShapes, Tensor]:
        """Sample the bank; returns the shapes and their blendshape coefficients."""
        from anny.shape_distribution import SimpleShapeDistribution

        model = self.model
        g = torch.Generator().manual_seed(int(seed))
        labels = list(model.phenotype_labels)
        female = torch.rand(n, generator=g) < 0.5
        u = torch.rand(n, generator=g)
        group = torch.where(u < child_share, 0, torch.where(u < child_share + elderly_share, 2, 1))
        r = torch.tensor([child_r, adult_r, elderly_r], dtype=torch.float32)[group]
        age = r[:, 0] + torch.rand(n, generator=g) * (r[:, 1] - r[:, 0])
        # target stature per sex and age
        mean = torch.where(female, female_st[0], male_st[0]) * torch.ones(n)
        sd = torch.where(female, female_st[1], male_st[1]) * torch.ones(n)
        med = torch.where(female[:, None], torch.tensor(_GIRLS_MEDIAN), torch.tensor(_BOYS_MEDIAN))
        child_med = _interp_rows(age, torch.arange(5, 18, dtype=torch.float32), med)
        is_child, is_old = group == 0, group == 2
        mean = torch.where(is_child, child_med, mean)
        sd = torch.where(is_child, child_cv * child_med, sd)
        mean = torch.where(is_old, mean - shrink * (age - elderly_r[0] + 1.0), mean)
        lo, hi = self.stature_range_m
        margin = 0.002
        target = (mean + sd * torch.randn(n, generator=g)).clamp(lo + margin, hi - margin)

        # weight, muscle, proportions from Anny's age-conditional (WHO-calibrated) distributions
        dist = SimpleShapeDistribution(model)
        anny_age = dist.morphological_age_mapping.morphological_to_anny_age(age).float().clamp(0, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) + 7919)
            params = {}
            for name in ("weight", "muscle", "proportions"):
                b = (
                    getattr(dist, f"boys_conditional_{name}_distribution")
                    .get_torch_distribution(anny_age)
                    .sample()
                )
                gl = (
                    getattr(dist, f"girls_conditional_{name}_distribution")
                    .get_torch_distribution(anny_age)
                    .sample()
                )
                params[name] = torch.where(female, gl, b).float().clamp(0, 1)
        phen = torch.full((n, len(labels)), 0.5)
        phen[:, labels.index("gender")] = female.float()
        phen[:, labels.index("age")] = anny_age
        for name, v in params.items():
            phen[:, labels.index(name)] = v
        hcol = labels.index("height")

        # solve `height` for the target stature. Anny's blendshape coefficients are linear in `height`
        # (anchors 0 and 1), so each vertex's Z is linear in it: bisect on the extreme vertices
        # (top of head, soles)
        if list(model.anchors["height"].tolist()) != [0.0, 1.0]:
            raise RuntimeError(
                "this Anny version's height anchors are not [0, 1]; update BodyModel._sample_shapes"
            )
        tz = model.template_vertices[:, 2]
        cand = ((tz > tz.max() - 0.06) | (tz < tz.min() + 0.03)).nonzero().squeeze(1)
        ends = []
        for hk in (0.0, 1.0):
            p = phen.clone()
            p[:, hcol] = hk
            ends.append(self._coeffs(p))
        z0 = tz[cand][None] + ends[0] @ model.blendshapes[:, cand, 2]
        z1 = tz[cand][None] + ends[1] @ model.blendshapes[:, cand, 2]

        def stature_at(h: Tensor) -> Tensor:
            z = torch.lerp(z0, z1, h[:, None])
            return z.amax(1) - z.amin(1)

        h_lo, h_hi = torch.zeros(n), torch.ones(n)
        for _ in range(20):  # stature increases with `height`; 2^-20 of the range ~ 1 um
            mid = 0.5 * (h_lo + h_hi)
            up = stature_at(mid) < target
            h_lo, h_hi = torch.where(up, mid, h_lo), torch.where(up, h_hi, mid)
        h = 0.5 * (h_lo + h_hi)
        phen[:, hcol] = h
        coeffs = torch.lerp(ends[0], ends[1], h[:, None])
        stature = stature_at(h)
        bad = (stature < lo) | (stature > hi)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} bodies cannot reach stature_range_m={self.stature_range_m} "
                f"(e.g. age {float(age[bad][0]):.1f}, stature {float(stature[bad][0]):.3f} m); "
                "widen the range"
            )
        shapes = BodyShapes(
            phenotypes=phen.to(self.device),
            phenotype_labels=labels,
            stature_m=stature.to(self.device),
            age_years=age.to(self.device),
            gender=female.float().to(self.device),
        )
        return shapes, coeffs

    # ------------------------------------------------------------------ fast path constants
    def _rest_skeleton(self, coeffs: Tensor, bones: Tensor) -> tuple[Tensor, Tensor]:
        """Rest heads (n, J', 3) and orientations (n, J', 3, 3) of ``bones`` (as Anny's cached rest model)."""
        m = self.model
        if m.bone_orientation != "cached" or m.rest_orientation_refiner is not None:  # generic, slower
            rp = m.get_rest_model(coeffs)["rest_bone_poses"][:, bones]
            return rp[..., :3, 3], rp[..., :3, :3]
        h = m.template_bone_heads[bones][None] + torch.einsum(
            "bc,cjd->bjd", coeffs, m.bone_heads_blendshapes[:, bones]
        )
        M = m.bone_template_orientation_matrices[bones][None] + torch.einsum(
            "bc,cjxy->bjxy", coeffs, m.bone_orientation_blendshapes[:, bones]
        )
        R = _special_procrustes(M)
        if m.root_identity_orientation and int(bones[0]) == 0:
            R[:, 0] = torch.eye(3)
        return h, R

    def _build_fast_path(self, posable: list[str], coeffs: Tensor) -> None:
        """Precompute the shape-independent structure and the per-body constants (see the
        module docstring)."""
        from anny.skinning.skinning import dense_bone_weights

        m = self.model
        labels = list(m.bone_labels)
        index = {b: i for i, b in enumerate(labels)}
        unknown = [b for b in posable if b not in index]
        if unknown:
            raise ValueError(f"posable_bones not in Anny's rig: {unknown}")
        parents = [int(p) for p in m.bone_parents]
        pos_idx = sorted({0, *(index[b] for b in posable)})  # Anny order: parents precede children
        self.bone_names = [labels[i] for i in pos_idx]
        self._slot = {b: i for i, b in enumerate(self.bone_names)}
        A = len(pos_idx)
        slot_of = {j: a for a, j in enumerate(pos_idx)}

        def anc(j: int) -> int:  # nearest posable ancestor-or-self (Anny index)
            while j not in slot_of:
                j = parents[j]
            return j

        def path(j: int, a: int) -> list[int]:  # bones from below a down to j (Anny indices)
            out = []
            while j != a:
                out.append(j)
                j = parents[j]
            return out

        self._pslot = [-1] + [slot_of[anc(parents[j])] for j in pos_idx[1:]]

        # shape-independent regressor x skinning weights c_kj
        W = self.regressor.regression_weights  # (K, V)
        K = W.shape[0]
        S = (W != 0).any(0).nonzero().squeeze(1)
        dense = dense_bone_weights(m.vertex_bone_weights[S], m.vertex_bone_indices[S], m.bone_count)  # (S, J)
        KA = W[:, S, None] * dense[None]  # (K, S, J)
        c = KA.sum(1)  # (K, J)
        jkeep = (c.abs() > 0).any(0).nonzero().squeeze(1)  # bones that move some keypoint
        c, KA = c[:, jkeep], KA[:, :, jkeep]
        jk = jkeep.tolist()
        # sparse (k, j) entries with c_kj != 0 (~240 of 23 x 73); m_kj = sum_s W_ks a_sj v_s(shape) is linear
        # in the blendshape coefficients
        ek, ej = (c != 0).nonzero(as_tuple=True)
        KAe = KA[ek, :, ej]  # (E, S)
        m0 = KAe @ m.template_vertices[S]  # (E, 3)
        mc = torch.einsum("es,csd->ced", KAe, m.blendshapes[:, S])  # (C, E, 3)
        ce = c[ek, ej]  # (E,)
        del KA, KAe, dense

        # fold each kept bone onto its nearest posable ancestor a: C_ka = sum_{j: anc(j)=a} c_kj
        owner = torch.tensor([slot_of[anc(j)] for j in jk])
        C = torch.zeros(K, A).index_add_(1, owner, c)
        pairs = (C.t().abs() > 0).nonzero()[:, [1, 0]]  # (n_pairs, 2) = (k, a), grouped by bone a
        pair_id = {(k, a): i for i, (k, a) in enumerate(pairs.tolist())}
        counts = torch.bincount(pairs[:, 1], minlength=A).tolist()
        ends = torch.tensor(counts).cumsum(0).tolist()
        self._pair_ranges = [(e - n, e) for n, e in zip(counts, ends)]
        fold = torch.zeros(len(pairs), len(ek))  # entry (k, j) -> pair (k, anc(j))
        for e, (k, jj) in enumerate(zip(ek.tolist(), ej.tolist())):
            fold[pair_id[(k, slot_of[anc(jk[jj])])], e] = 1.0

        # bones whose rest pose is needed: kept bones, posable bones, every bone on a path, and their parents
        paths_pos = [path(j, pos_idx[self._pslot[a]]) if a > 0 else [] for a, j in enumerate(pos_idx)]
        paths_keep = [path(j, anc(j)) for j in jk]
        need = sorted({0, *jk, *pos_idx, *(b for p in paths_pos + paths_keep for b in p)})
        need = sorted({*need, *(parents[b] for b in need if b > 0)})
        col = {b: i for i, b in enumerate(need)}
        par = torch.tensor([col[parents[b]] if b > 0 else 0 for b in need])
        U = m.reference_bone_orientations[need]  # (J'', 3, 3)
        path_pos = torch.zeros(A, len(need))  # sums of reference head offsets along each path
        for a, p in enumerate(paths_pos):
            path_pos[a, [col[b] for b in p]] = 1.0
        path_keep = torch.zeros(len(jk), len(need))
        for i, p in enumerate(paths_keep):
            path_keep[i, [col[b] for b in p]] = 1.0
        keep_cols = torch.tensor([col[j] for j in jk])

        N = coeffs.shape[0]
        off_all = torch.empty(N, A, 3)
        P_all = torch.empty(N, len(pairs), 3)
        for s in range(0, N, self.chunk_size):
            cf = coeffs[s : s + self.chunk_size]
            n = cf.shape[0]
            h, R = self._rest_skeleton(cf, torch.tensor(need))
            Arot = U[None] @ R.transpose(-1, -2)  # rest -> reference rotation of each bone
            Aoff = Arot.clone()
            if need[0] == 0:
                Aoff[:, 0] = torch.eye(3)  # anny/utils/kinematics.py takes A_0 = I for the head offsets
            q = (Aoff[:, par] @ (h - h[:, par])[..., None])[..., 0]  # reference head offsets (n, J'', 3)
            q[:, 0] = 0.0
            off_all[s : s + n] = path_pos @ q
            mk = m0[None] + torch.einsum("bc,ced->bed", cf, mc)  # (n, E, 3)
            hk, Ak = h[:, keep_cols[ej]], Arot[:, keep_cols[ej]]  # (n, E, 3), (n, E, 3, 3)
            nkj = (Ak @ (mk - ce[None, :, None] * hk)[..., None])[..., 0]  # (n, E, 3)
            Qj = path_keep[ej] @ q  # (n, E, 3) offset of bone j from its posable ancestor
            P_all[s : s + n] = fold @ (ce[None, :, None] * Qj + nkj)
        dev = self.device
        self._off_soa = off_all.permute(2, 1, 0).contiguous().to(dev)  # (3, A, N) head offsets
        self._P_soa = P_all.permute(2, 1, 0).contiguous().to(dev)  # (3, n_pairs, N) keypoint offsets
        self._C = C.to(dev)  # (K, A)
        scatter = torch.zeros(K, len(pairs))
        scatter[pairs[:, 0], torch.arange(len(pairs))] = 1.0
        self._scatter_kp = scatter.to(dev)  # (K, n_pairs)

    @torch.no_grad()
    def mesh(self, body_index: Tensor, poses: PoseBatch) -> tuple[Tensor, Tensor]:
        """Full Anny forward: vertices (B, V, 3) placed exactly like :meth:`pose`, and the faces (F, 3)."""
        m = self.model
        self._columns(poses)  # validates the bone names
        B = len(poses)
        H = torch.eye(4).expand(B, m.bone_count, 4, 4).clone()
        index = {b: i for i, b in enumerate(m.bone_labels)}
        H[:, [index[b] for b in poses.bone_names], :3, :3] = poses.rotations.detach().cpu().float()
        phen = self.shapes.phenotypes[body_index.to(self.shapes.phenotypes.device)].cpu()
        out = m(pose_parameters=H, phenotype_kwargs=phen)
        kp = self.regressor(out)
        v = out["vertices"] + place_on_floor(kp)[:, None]
        return v.to(self.device), m.faces.to(self.device)


@kernel
def _forward_kinematics(
    rot: Tensor,
    off: Tensor,
    P: Tensor,
    cols: list[int | None],
    pslot: list[int],
    pair_ranges: list[tuple[int, int]],
    scatter_kp: Tensor,
    C: Tensor,
) -> Tensor:
    """Keypoints (3, K, n) of ``n`` posed bodies: bone rotations ``rot`` (n, n_bones, 3, 3), the bodies' head
    offsets ``off`` (3, A, n) and keypoint offsets ``P`` (3, n_pairs, n); ``cols``/``pslot``/``pair_ranges``
    describe the posable skeleton (see :meth:`BodyModel._build_fast_path`). Pure math (a
    :func:`generation.kernels.kernel`)."""
    D = rot.permute(1, 2, 3, 0)  # (n_bones, 3, 3, n): free for JointSet.rotations' (J, 3, 3, B) storage
    if D.stride(-1) != 1:
        D = D.contiguous()
    A = len(pslot)
    G: list[Tensor | None] = [None] * A  # posed rotation of each bone, None = identity
    w: list[Tensor] = [torch.zeros_like(off[:, 0])]  # posed head of each bone, (3, n)
    if cols[0] is not None:
        G[0] = D[cols[0]]
    for a in range(1, A):
        p = pslot[a]
        Gp = G[p]
        if Gp is None:
            w.append(w[p] + off[:, a])
        else:
            w.append(w[p] + Gp[:, 0] * off[0, a] + Gp[:, 1] * off[1, a] + Gp[:, 2] * off[2, a])
        ca = cols[a]
        if ca is None:
            G[a] = Gp
        else:
            Da = D[ca]
            G[a] = (
                Da
                if Gp is None
                else (Gp[:, 0, None] * Da[0] + Gp[:, 1, None] * Da[1] + Gp[:, 2, None] * Da[2])
            )
    parts = []
    for a, (p0, p1) in enumerate(pair_ranges):
        if p1 > p0:
            Pa, Ga = P[:, p0:p1], G[a]  # (3, n_a, n)
            parts.append(
                Pa
                if Ga is None
                else (Ga[:, 0, None] * Pa[0] + Ga[:, 1, None] * Pa[1] + Ga[:, 2, None] * Pa[2])
            )
    Pp = torch.cat(parts, dim=1)
    return scatter_kp @ Pp + C @ torch.stack(w, dim=1)  # (3, K, n)


def _det3(M: Tensor) -> Tensor:
    return (
        M[..., 0, 0] * (M[..., 1, 1] * M[..., 2, 2] - M[..., 1, 2] * M[..., 2, 1])
        - M[..., 0, 1] * (M[..., 1, 0] * M[..., 2, 2] - M[..., 1, 2] * M[..., 2, 0])
        + M[..., 0, 2] * (M[..., 1, 0] * M[..., 2, 1] - M[..., 1, 1] * M[..., 2, 0])
    )


def _special_procrustes(M: Tensor, iters: int = 7) -> Tensor:
    """Rotation closest to each 3x3 matrix (the optimum of roma.special_procrustes), fast on CPU.

    Scaled Newton iteration for the orthogonal polar factor, X <- (g X + X^-T / g) / 2 (elementwise 3x3
    algebra, float64); matrices with det <= 0 (never seen for Anny bones) fall back to SVD.
    """
    X = M.double()
    for _ in range(iters):
        d = _det3(X)
        cof = torch.linalg.cross(X[..., [1, 2, 0], :], X[..., [2, 0, 1], :])  # cofactor matrix = det * X^-T
        g = (d.abs() ** (-1.0 / 3.0))[..., None, None]
        X = 0.5 * (g * X + cof / (d[..., None, None] * g))
    bad = ~(_det3(M.double()) > 0)
    if bad.any():
        U, _, Vh = torch.linalg.svd(M[bad].double())
        dd = _det3(U @ Vh)
        X[bad] = torch.cat([U[..., :2], U[..., 2:] * dd[..., None, None]], -1) @ Vh
    return X.to(M.dtype)


def _interp_rows(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Row-wise linear interpolation: x (N,), xp (T,), fp (N, T) -> (N,), clamped at the ends."""
    x = x.clamp(float(xp[0]), float(xp[-1]))
    i = torch.searchsorted(xp, x, right=True).clamp(1, len(xp) - 1)
    x0, x1 = xp[i - 1], xp[i]
    t = (x - x0) / (x1 - x0)
    f0 = fp.gather(1, (i - 1)[:, None])[:, 0]
    f1 = fp.gather(1, i[:, None])[:, 0]
    return f0 + t * (f1 - f0)


__all__ = ["BodyModel", "EXTENDED_POSABLE_BONES", "KeypointBank", "place_on_floor"]
