"""Camera sampling: intrinsics, height, tilt, roll, person yaw and an exact placement of the person.

Placement: the camera sits at world ``(0, 0, h)`` with rotation :func:`depth_pose.geometry.camera_rotation`
(tilt, roll). The person (posed, mid-hip at X = Y = 0, floor at Z = 0) is yawed about world Z, then moved on
the floor to ``(X_p, Y_p)``. ``X_p, Y_p`` solve a 2x2 linear system so that the mid-hip lands at the sampled
camera depth ``Z`` (the target) and at the sampled horizontal pixel ``u``: the target distribution is exactly
the configured one and people appear anywhere across the frame. Cameras that see fewer than
``min_visible_keypoints`` keypoints in the image, or whose keypoint box is smaller than ``min_person_px``
(a detector would miss such a person), are resampled (vectorised, all parameters but the target depth, so the
depth distribution stays exactly the configured one) a few times; the rest get a tilt aimed at the hip (still
within the tilt range) so no row is lost.

``vertical_min``/``vertical_max`` (ceiling mounts): the mid-hip's vertical pixel is drawn too (fraction of
the image height) and the camera height follows from it, the tilt, roll and depth (rows whose height falls
outside ``[height_min_m, high_max_m]`` are resampled), so steep views cover every depth instead of only
the few that a drawn height happens to put in the frame.

``min_clearance_m`` (ceiling mounts): the camera is raised, where needed, to at least this much above the
highest keypoint of the person it sees, so a ceiling camera is above everyone it sees. :class:`CameraMixture`
draws each row's camera from one of several samplers (level, ceiling, low robot, phone ...) with weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor

from depth_pose import geometry
from generation.kernels import kernel, nan_to, take_last
from generation.mixture import mixture_components, mixture_probs
from generation.project import inside_planar
from generation.types import Cameras, PosedBodies


class CameraSampler:
    """Samples one camera per posed body (see module docstring). Angles in the config are degrees."""

    def __init__(
        self,
        name: str = "default",
        depth_min_m: float = 1.0,
        depth_max_m: float = 60.0,
        depth_distribution: str = "uniform",
        height_min_m: float = 0.3,
        height_max_m: float = 3.0,
        high_share: float = 0.1,
        high_max_m: float = 6.0,
        tilt_min_deg: float = -30.0,
        tilt_max_deg: float = 10.0,
        roll_max_deg: float = 5.0,
        yaw_min_deg: float = 0.0,
        yaw_max_deg: float = 360.0,
        hfov_min_deg: float = 30.0,
        hfov_max_deg: float = 100.0,
        image_sizes: Sequence[Sequence[int]] = ((640, 640), (1242, 375), (1280, 720), (1920, 1080)),
        image_size_weights: Sequence[float] | None = None,
        principal_point_jitter: float = 0.02,
        principal_point: Sequence[float] | None = None,
        lateral_min: float = 0.02,
        lateral_max: float = 0.98,
        min_visible_keypoints: int = 6,
        min_person_px: float = 16.0,
        max_resample_rounds: int = 8,
        min_clearance_m: float | None = None,
        vertical_min: float | None = None,
        vertical_max: float | None = None,
    ) -> None:
        self.name = name
        self.depth = (float(depth_min_m), float(depth_max_m))
        self.depth_distribution = depth_distribution
        self.height = (float(height_min_m), float(height_max_m))
        self.high_share, self.high_max = float(high_share), float(high_max_m)
        self.tilt = (float(tilt_min_deg), float(tilt_max_deg))
        self.roll_max = float(roll_max_deg)
        self.yaw = (float(yaw_min_deg), float(yaw_max_deg))
        self.hfov = (float(hfov_min_deg), float(hfov_max_deg))
        self.image_sizes = torch.tensor([list(map(int, s)) for s in image_sizes], dtype=torch.long)
        w = (
            torch.ones(len(self.image_sizes))
            if image_size_weights is None
            else torch.tensor(image_size_weights)
        )
        self.image_size_weights = w.float()
        self.pp_jitter = float(principal_point_jitter)
        self.principal_point = None if principal_point is None else tuple(float(v) for v in principal_point)
        self.lateral = (float(lateral_min), float(lateral_max))
        self.min_visible = int(min_visible_keypoints)
        self.min_person_px = float(min_person_px)
        self.max_rounds = int(max_resample_rounds)
        self.min_clearance = None if min_clearance_m is None else float(min_clearance_m)
        if (vertical_min is None) != (vertical_max is None):
            raise ValueError("camera.vertical_min and vertical_max: give both or neither")
        self.vertical = None if vertical_min is None else (float(vertical_min), float(vertical_max))
        self._validate()

    def _validate(self) -> None:
        def rng(
            name: str, lo: float, hi: float, low_bound: float | None = None, high_bound: float | None = None
        ):
            if not (lo <= hi):
                raise ValueError(f"camera.{name}: min {lo} must be <= max {hi}")
            if low_bound is not None and lo < low_bound:
                raise ValueError(f"camera.{name}: min {lo} must be >= {low_bound}")
            if high_bound is not None and hi > high_bound:
                raise ValueError(f"camera.{name}: max {hi} must be <= {high_bound}")

        if not 0 < self.depth[0] < self.depth[1]:
            raise ValueError(f"camera.depth_min_m/depth_max_m: need 0 < min < max, got {self.depth}")
        if self.depth_distribution not in ("uniform", "log_uniform"):
            raise ValueError(
                f"camera.depth_distribution must be uniform|log_uniform, got {self.depth_distribution!r}"
            )
        rng("height_m", *self.height, low_bound=0.0)
        if not 0.0 <= self.high_share <= 1.0:
            raise ValueError(f"camera.high_share must be in [0, 1], got {self.high_share}")
        if self.high_share > 0 and self.high_max < self.height[1]:
            raise ValueError(
                f"camera.high_max_m ({self.high_max}) must be >= height_max_m ({self.height[1]})"
            )
        rng("tilt_deg", *self.tilt, -89.0, 89.0)
        rng("roll_max_deg", 0.0, self.roll_max, high_bound=89.0)
        rng("yaw_deg", *self.yaw)
        rng("hfov_deg", *self.hfov, 1.0, 179.0)
        if self.image_sizes.ndim != 2 or self.image_sizes.shape[1] != 2 or (self.image_sizes <= 0).any():
            raise ValueError(
                "camera.image_sizes must be a non-empty list of [width, height] > 0, "
                f"got {self.image_sizes.tolist()}"
            )
        if (
            len(self.image_size_weights) != len(self.image_sizes)
            or (self.image_size_weights < 0).any()
            or self.image_size_weights.sum() <= 0
        ):
            raise ValueError(
                "camera.image_size_weights must be non-negative, one per image size, not all zero"
            )
        rng("lateral", *self.lateral)
        if self.vertical is not None:
            rng("vertical", *self.vertical)
        if not 0 <= self.min_visible <= 17:
            raise ValueError(f"camera.min_visible_keypoints must be in [0, 17], got {self.min_visible}")
        if self.min_person_px < 0:
            raise ValueError(f"camera.min_person_px must be >= 0, got {self.min_person_px}")
        if self.min_clearance is not None and not self.min_clearance >= 0:
            raise ValueError(f"camera.min_clearance_m must be >= 0 or null, got {self.min_clearance}")

    # ------------------------------------------------------------------ sampling helpers
    @staticmethod
    def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g, device=device)

    def _draw(
        self, n: int, g: torch.Generator, device, top: Tensor | None = None, hip: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Independent draws of all camera parameters for ``n`` rows (float32, degrees); ``top`` / ``hip``
        (n,): the highest keypoint and the mid-hip height of each row's person (``min_clearance_m``,
        ``vertical_*``)."""
        u = lambda lo, hi: self._uniform(n, lo, hi, g, device)  # noqa: E731
        if self.depth_distribution == "uniform":
            z = u(*self.depth)
        else:
            z = torch.exp(u(math.log(self.depth[0]), math.log(self.depth[1])))
        h = u(*self.height)
        if self.high_share > 0:
            high = torch.rand(n, generator=g, device=device) < self.high_share
            h = torch.where(high, u(self.height[1], self.high_max), h)
        if self.min_clearance is not None and top is not None:
            h = torch.maximum(h, top + self.min_clearance)
        idx = torch.multinomial(self.image_size_weights.to(device), n, replacement=True, generator=g)
        wh = self.image_sizes.to(device)[idx]
        w, hh = wh[:, 0].float(), wh[:, 1].float()
        hfov = u(*self.hfov)
        f = geometry.focal_from_hfov(hfov, w)
        if self.principal_point is not None:
            cx = torch.full_like(w, self.principal_point[0])
            cy = torch.full_like(w, self.principal_point[1])
        else:
            cx = w * (0.5 + self.pp_jitter * (2 * torch.rand(n, generator=g, device=device) - 1))
            cy = hh * (0.5 + self.pp_jitter * (2 * torch.rand(n, generator=g, device=device) - 1))
        p = {
            "z": z,
            "height": h,
            "tilt": u(*self.tilt),
            "roll": u(-self.roll_max, self.roll_max),
            "yaw": u(*self.yaw),
            "hfov": hfov,
            "f": f,
            "cx": cx,
            "cy": cy,
            "w": w,
            "h": hh,
            "lat": u(*self.lateral),
        }
        if self.vertical is not None and hip is not None:
            # Height from the drawn pixel (u, v) of the hip at depth z: height = hip - up_cam . hip_cam.
            b = (u(*self.vertical) * hh - cy) / f
            a = (p["lat"] * w - cx) / f
            up = geometry.up_from_pitch_roll(p["tilt"], p["roll"])
            h = hip - z * (a * up[:, 0] + b * up[:, 1] + up[:, 2])
            top_h = self.high_max if self.high_share > 0 else self.height[1]
            ok = (h >= self.height[0]) & (h <= top_h)
            if self.min_clearance is not None and top is not None:
                ok &= h >= top + self.min_clearance
            p["height"] = h
            p["valid"] = ok.float()
        return p

    @staticmethod
    def _place(p: dict[str, Tensor], hip_height: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """K, R (world->camera incl. person yaw), t such that the mid-hip has camera z = p['z'] at pixel u."""
        deg = math.pi / 180.0
        Rc = geometry.camera_rotation(p["tilt"] * deg, p["roll"] * deg)  # (n, 3, 3)
        # Hip offset from the camera in world coordinates: d = (X, Y, hip_h - cam_h); hip_cam = Rc d.
        dz = hip_height - p["height"]
        a = (p["lat"] * p["w"] - p["cx"]) / p["f"]  # x/z of the hip in the camera
        z = p["z"]
        # Rows of Rc: camera x and z axes. Solve [[r00, r01], [r20, r21]] [X, Y] = [a z - r02 dz, z - r22 dz].
        r00, r01, r02 = Rc[:, 0, 0], Rc[:, 0, 1], Rc[:, 0, 2]
        r20, r21, r22 = Rc[:, 2, 0], Rc[:, 2, 1], Rc[:, 2, 2]
        b0 = a * z - r02 * dz
        b1 = z - r22 * dz
        det = r00 * r21 - r01 * r20
        X = (b0 * r21 - r01 * b1) / det
        Y = (r00 * b1 - r20 * b0) / det
        # t = Rc d_floor, d_floor = (X, Y, -height): the floor point below the hip minus the camera centre
        t = (
            (Rc[:, :, 0] * X[:, None])
            .addcmul_(Rc[:, :, 1], Y[:, None])
            .addcmul_(Rc[:, :, 2], p["height"][:, None], value=-1.0)
        )
        # R = Rc @ rot_z(yaw), written out (a batched 3x3 matmul is slow for large batches)
        yaw = p["yaw"] * deg
        c, s = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
        R = torch.empty_like(Rc)
        R[:, :, 0] = (Rc[:, :, 0] * c).addcmul_(Rc[:, :, 1], s)
        R[:, :, 1] = (Rc[:, :, 1] * c).addcmul_(Rc[:, :, 0], s, value=-1.0)
        R[:, :, 2] = Rc[:, :, 2]
        K = geometry.intrinsics(p["f"], p["f"], p["cx"], p["cy"])
        return K, R, t

    def _check(
        self, p: dict[str, Tensor], hip_height: Tensor, kp: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Cameras of ``p`` + projection of ``kp`` + acceptance, in one fused kernel
        (:func:`_place_and_check`)."""
        return _place_and_check(p, hip_height, kp, self.min_visible, self.min_person_px)

    @staticmethod
    def _scatter(
        p: dict[str, Tensor], out: list[Tensor], rows: Tensor, q: dict[str, Tensor], res: tuple, pick: Tensor
    ) -> None:
        """Write entries ``pick`` of a resampled subset (parameters ``q``, results ``res``) to ``rows``."""
        for key in p:
            p[key].index_copy_(0, rows, q[key].index_select(0, pick))
        for k in range(3):  # K, R, t: per-sample first axis
            out[k].index_copy_(0, rows, res[k].index_select(0, pick))
        for k in (3, 4):  # planar projections: samples on the last axis
            out[k].view(-1, out[k].shape[-1]).index_copy_(1, rows, take_last(res[k], pick).flatten(0, -2))

    # ------------------------------------------------------------------ public
    def sample(
        self, posed: PosedBodies, generator: torch.Generator, return_projection: bool = False
    ) -> Cameras | tuple[Cameras, tuple[Tensor, Tensor] | None]:
        """One camera per row of ``posed`` (float32, on the keypoints' device).

        ``return_projection``: also return ``(keypoints_cam, pixels)`` of the final cameras when the
        visibility check computed them (else None), for :func:`generation.project.observe` to reuse:
        (B, 17, 3) / (B, 17, 2) views of planar storage.
        """
        kp = geometry.planar(posed.keypoints.float())  # (3, 17, B); free when the body model made it planar
        n, device = kp.shape[2], kp.device
        hip_height = geometry.mid_hip(kp.permute(2, 1, 0))[:, 2]
        top = nan_to(kp[2], -math.inf).amax(0) if self.min_clearance is not None else None
        p = self._draw(n, generator, device, top, hip_height)
        proj = None
        if self.min_visible > 0 or self.min_person_px > 0 or self.vertical is not None:
            out = list(self._check(p, hip_height, kp))  # K, R, t, keypoints_cam, pixels, ok
            bad = ~out[5]
            # Resample the rejected rows (all parameters but the target depth) and write the accepted ones'
            # parameters, cameras and projections into place (planar arrays: along the sample axis).
            for _ in range(self.max_rounds):
                idx = bad.nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                q = self._draw(
                    idx.numel(), generator, device, None if top is None else top[idx], hip_height[idx]
                )
                q["z"] = p["z"].index_select(
                    0, idx
                )  # keep the target: its distribution stays exactly the configured one
                res = self._check(q, hip_height.index_select(0, idx), take_last(kp, idx))
                okn = res[5].nonzero().squeeze(1)
                sel = idx.index_select(0, okn)
                self._scatter(p, out, sel, q, res, okn)
                bad.index_fill_(0, sel, False)
            idx = bad.nonzero().squeeze(1)
            if idx.numel():
                # Last resort: aim the optical axis (tilt) at the hip (clamped to the tilt range),
                # narrowest lens.
                q = {k: v.index_select(0, idx) for k, v in p.items()}
                if "valid" in q:  # derived heights: back inside the range (and above the person)
                    top_h = self.high_max if self.high_share > 0 else self.height[1]
                    h = q["height"].clamp(self.height[0], top_h)
                    if top is not None:
                        h = torch.maximum(h, top[idx] + self.min_clearance)
                    q["height"], q["valid"] = h, torch.ones_like(h)
                elev = torch.atan2(hip_height[idx] - q["height"], q["z"]) * (180.0 / math.pi)
                q["tilt"] = elev.clamp(*self.tilt)
                q["lat"] = torch.full_like(q["lat"], 0.5)
                q["hfov"] = torch.full_like(q["hfov"], self.hfov[0])  # narrowest lens: largest person
                q["f"] = geometry.focal_from_hfov(q["hfov"], q["w"])
                res = self._check(q, hip_height.index_select(0, idx), take_last(kp, idx))
                self._scatter(p, out, idx, q, res, torch.arange(idx.numel(), device=device))
            K, R, t, kp_cam, px, _ = out
            proj = (kp_cam.permute(2, 1, 0), px.permute(2, 1, 0))
        else:
            K, R, t = self._place(p, hip_height)
        cams = Cameras(
            K=K,
            R=R,
            t=t,
            img_w=p["w"].long(),
            img_h=p["h"].long(),
            height_m=p["height"],
            tilt_deg=p["tilt"],
            roll_deg=p["roll"],
            yaw_deg=p["yaw"],
            hfov_deg=p["hfov"],
        )
        return (cams, proj) if return_projection else cams


class CameraMixture:
    """Each row's camera from one of several :class:`CameraSampler` components (how cameras are really
    mounted: level handheld, ceiling/CCTV, low robots looking up, phones with roll), drawn by ``weights``."""

    def __init__(
        self, components: Mapping[str, Any], weights: Mapping[str, float] | None = None, name: str = "mixture"
    ) -> None:
        self.name = name
        self.parts = mixture_components(components, CameraSampler, "camera mixture")
        self.probs = mixture_probs(self.parts, weights, "camera mixture")

    def sample(
        self, posed: PosedBodies, generator: torch.Generator, return_projection: bool = False
    ) -> Cameras | tuple[Cameras, tuple[Tensor, Tensor] | None]:
        """As :meth:`CameraSampler.sample`, each row from its drawn component."""
        kp = posed.keypoints
        n, device = kp.shape[0], kp.device
        comp = torch.multinomial(self.probs.to(device), max(n, 1), replacement=True, generator=generator)[:n]
        out: dict[str, Tensor] = {}
        proj: list[Tensor] | None = [] if return_projection else None
        for i, part in enumerate(self.parts.values()):
            idx = torch.nonzero(comp == i).flatten()
            if idx.numel() == 0:
                continue
            sub = PosedBodies(
                keypoints=kp.index_select(0, idx),
                body_index=posed.body_index.index_select(0, idx.to(posed.body_index.device)),
                extra_points=None
                if posed.extra_points is None
                else posed.extra_points.index_select(0, idx.to(posed.extra_points.device)),
            )
            cams, pr = part.sample(sub, generator, return_projection=True)
            for f in fields(Cameras):
                v = getattr(cams, f.name)
                if f.name not in out:
                    out[f.name] = torch.empty((n, *v.shape[1:]), dtype=v.dtype, device=v.device)
                out[f.name].index_copy_(0, idx, v)
            if pr is None:  # a component without the visibility check: observe() projects again
                proj = None
            if proj is not None:
                if not proj:
                    proj.extend(torch.empty((n, *t.shape[1:]), dtype=t.dtype, device=t.device) for t in pr)
                for dst, src in zip(proj, pr):
                    dst.index_copy_(0, idx, src)
        cams = Cameras(**out)
        return (cams, tuple(proj) if proj else None) if return_projection else cams


def _placed_and_checked(
    p: dict[str, Tensor], hip_height: Tensor, kp: Tensor, min_visible: int, min_person_px: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(K, R, t, keypoints_cam, pixels, ok)``: the cameras of ``p`` (:meth:`CameraSampler._place`), the
    projection of the planar keypoints ``kp`` (3, N, B) through them (planar (3, N, B) / (2, N, B)) and the
    acceptance test: at least ``min_visible`` keypoints inside the image and a keypoint box of at least
    ``min_person_px`` (larger side; NaN pixels, i.e. behind the camera, count as 0)."""
    K, R, t = CameraSampler._place(p, hip_height)
    kp_cam, px = geometry.world_to_pixels_planar(kp, R, t, K)
    # (N, B) planes: reductions over the joints are element-wise ops over rows
    ok = inside_planar(px, p["w"], p["h"]).sum(0) >= min_visible
    if "valid" in p:  # a derived camera height outside the configured range
        ok = ok & (p["valid"] > 0)
    if min_person_px > 0:
        u0, v0 = nan_to(px[0], 0.0), nan_to(px[1], 0.0)
        ext = torch.maximum(u0.amax(0) - u0.amin(0), v0.amax(0) - v0.amin(0))
        ok = ok & (ext >= min_person_px)
    return K, R, t, kp_cam, px, ok


@kernel
def _place_and_check(
    p: dict[str, Tensor], hip_height: Tensor, kp: Tensor, min_visible: int, min_person_px: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`_placed_and_checked` as a fused kernel (:mod:`generation.kernels`)."""
    return _placed_and_checked(p, hip_height, kp, min_visible, min_person_px)
