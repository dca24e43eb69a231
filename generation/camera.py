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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from depth_pose import geometry
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
        w = torch.ones(len(self.image_sizes)) if image_size_weights is None else torch.tensor(image_size_weights)
        self.image_size_weights = w.float()
        self.pp_jitter = float(principal_point_jitter)
        self.principal_point = None if principal_point is None else tuple(float(v) for v in principal_point)
        self.lateral = (float(lateral_min), float(lateral_max))
        self.min_visible = int(min_visible_keypoints)
        self.min_person_px = float(min_person_px)
        self.max_rounds = int(max_resample_rounds)
        self._validate()

    def _validate(self) -> None:
        def rng(name: str, lo: float, hi: float, low_bound: float | None = None, high_bound: float | None = None):
            if not (lo <= hi):
                raise ValueError(f"camera.{name}: min {lo} must be <= max {hi}")
            if low_bound is not None and lo < low_bound:
                raise ValueError(f"camera.{name}: min {lo} must be >= {low_bound}")
            if high_bound is not None and hi > high_bound:
                raise ValueError(f"camera.{name}: max {hi} must be <= {high_bound}")

        if not 0 < self.depth[0] < self.depth[1]:
            raise ValueError(f"camera.depth_min_m/depth_max_m: need 0 < min < max, got {self.depth}")
        if self.depth_distribution not in ("uniform", "log_uniform"):
            raise ValueError(f"camera.depth_distribution must be uniform|log_uniform, got {self.depth_distribution!r}")
        rng("height_m", *self.height, low_bound=0.0)
        if not 0.0 <= self.high_share <= 1.0:
            raise ValueError(f"camera.high_share must be in [0, 1], got {self.high_share}")
        if self.high_share > 0 and self.high_max < self.height[1]:
            raise ValueError(f"camera.high_max_m ({self.high_max}) must be >= height_max_m ({self.height[1]})")
        rng("tilt_deg", *self.tilt, -89.0, 89.0)
        rng("roll_max_deg", 0.0, self.roll_max, high_bound=89.0)
        rng("yaw_deg", *self.yaw)
        rng("hfov_deg", *self.hfov, 1.0, 179.0)
        if self.image_sizes.ndim != 2 or self.image_sizes.shape[1] != 2 or (self.image_sizes <= 0).any():
            raise ValueError(f"camera.image_sizes must be a non-empty list of [width, height] > 0, got {self.image_sizes.tolist()}")
        if len(self.image_size_weights) != len(self.image_sizes) or (self.image_size_weights < 0).any() or self.image_size_weights.sum() <= 0:
            raise ValueError("camera.image_size_weights must be non-negative, one per image size, not all zero")
        rng("lateral", *self.lateral)
        if not 0 <= self.min_visible <= 17:
            raise ValueError(f"camera.min_visible_keypoints must be in [0, 17], got {self.min_visible}")
        if self.min_person_px < 0:
            raise ValueError(f"camera.min_person_px must be >= 0, got {self.min_person_px}")

    # ------------------------------------------------------------------ sampling helpers
    @staticmethod
    def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g, device=device)

    def _draw(self, n: int, g: torch.Generator, device) -> dict[str, Tensor]:
        """Independent draws of all camera parameters for ``n`` rows (float32, degrees)."""
        u = lambda lo, hi: self._uniform(n, lo, hi, g, device)  # noqa: E731
        if self.depth_distribution == "uniform":
            z = u(*self.depth)
        else:
            z = torch.exp(u(math.log(self.depth[0]), math.log(self.depth[1])))
        h = u(*self.height)
        if self.high_share > 0:
            high = torch.rand(n, generator=g, device=device) < self.high_share
            h = torch.where(high, u(self.height[1], self.high_max), h)
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
        return {
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
        t = (Rc[:, :, 0] * X[:, None]).addcmul_(Rc[:, :, 1], Y[:, None]).addcmul_(Rc[:, :, 2], p["height"][:, None],
                                                                                  value=-1.0)
        # R = Rc @ rot_z(yaw), written out (a batched 3x3 matmul is slow for large batches)
        yaw = p["yaw"] * deg
        c, s = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
        R = torch.empty_like(Rc)
        R[:, :, 0] = (Rc[:, :, 0] * c).addcmul_(Rc[:, :, 1], s)
        R[:, :, 1] = (Rc[:, :, 1] * c).addcmul_(Rc[:, :, 0], s, value=-1.0)
        R[:, :, 2] = Rc[:, :, 2]
        K = geometry.intrinsics(p["f"], p["f"], p["cx"], p["cy"])
        return K, R, t

    def _accept(self, px: Tensor, w: Tensor, h: Tensor) -> Tensor:
        """(B,) bool: at least ``min_visible`` keypoints inside the image and a keypoint box of at least
        ``min_person_px`` (larger side; NaN pixels, i.e. behind the camera, count as 0)."""
        u, v = px.unbind(-1)  # contiguous (B, N) planes: world_to_pixels returns planar storage
        inside = (u >= 0).logical_and_(u < w[:, None]).logical_and_(v >= 0).logical_and_(v < h[:, None])
        ok = inside.sum(-1) >= self.min_visible
        if self.min_person_px > 0:
            u_lo, u_hi = torch.aminmax(torch.nan_to_num(u, nan=0.0), dim=1)
            v_lo, v_hi = torch.aminmax(torch.nan_to_num(v, nan=0.0), dim=1)
            ok &= torch.maximum(u_hi - u_lo, v_hi - v_lo) >= self.min_person_px
        return ok

    # ------------------------------------------------------------------ public
    def sample(self, posed: PosedBodies, generator: torch.Generator, return_projection: bool = False
               ) -> Cameras | tuple[Cameras, tuple[Tensor, Tensor] | None]:
        """One camera per row of ``posed`` (float32, on the keypoints' device).

        ``return_projection``: also return ``(keypoints_cam, pixels)`` of the final cameras when the visibility
        check computed them (else None), for :func:`generation.project.observe` to reuse.
        """
        kp = posed.keypoints.float()
        n, device = kp.shape[0], kp.device
        hip_height = geometry.mid_hip(kp)[:, 2]
        p = self._draw(n, generator, device)
        K, R, t = self._place(p, hip_height)
        proj = None
        if self.min_visible > 0 or self.min_person_px > 0:
            kp_cam, px = geometry.world_to_pixels(kp, R, t, K)
            bad = ~self._accept(px, p["w"], p["h"])
            # Resample the rejected rows' parameters (only the scalars are copied back; the cameras and the
            # projection are rebuilt once for every row at the end: same formulas, fewer scattered copies).
            changed = False
            for _ in range(self.max_rounds):
                idx = bad.nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                q = self._draw(idx.numel(), generator, device)
                q["z"] = p["z"].index_select(0, idx)  # keep the target: its distribution stays exactly the configured one
                Kq, Rq, tq = self._place(q, hip_height.index_select(0, idx))
                _, pq = geometry.world_to_pixels(kp.index_select(0, idx), Rq, tq, Kq)
                okn = self._accept(pq, q["w"], q["h"]).nonzero().squeeze(1)
                sel = idx.index_select(0, okn)
                for key in p:
                    p[key].index_copy_(0, sel, q[key].index_select(0, okn))
                bad.index_fill_(0, sel, False)
                changed = True
            idx = bad.nonzero().squeeze(1)
            if idx.numel():
                # Last resort: aim the optical axis (tilt) at the hip (clamped to the tilt range), narrowest lens.
                elev = torch.atan2(hip_height[idx] - p["height"][idx], p["z"][idx]) * (180.0 / math.pi)
                p["tilt"][idx] = elev.clamp(*self.tilt)
                p["lat"][idx] = 0.5
                p["hfov"][idx] = self.hfov[0]  # narrowest lens: largest person
                p["f"][idx] = geometry.focal_from_hfov(p["hfov"][idx], p["w"][idx])
                changed = True
            if changed:
                K, R, t = self._place(p, hip_height)
                kp_cam, px = geometry.world_to_pixels(kp, R, t, K)
            proj = (kp_cam, px)
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
