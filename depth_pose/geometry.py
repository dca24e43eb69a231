"""All camera geometry of the project, in one place (torch, batched over leading dimensions).

Conventions
-----------
* Camera coordinates: x right, y down, z forward (metres), as OpenCV and KITTI. Depth = camera z.
* World coordinates (the body model's): Z up, metres, floor at Z = 0. ``p_cam = R @ p_world + t``.
* Intrinsics ``K`` are 3x3 pixel matrices ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``; pixel centres sit at
  integer coordinates + 0.5 of the pixel grid origin used by the detector (ultralytics: top-left corner = 0).
* The project's target: the camera z of the midpoint of the two 3D hip keypoints (:func:`mid_hip`).
* Gravity (``up_cam``, ``pitch_deg`` negative = looking down, ``roll_deg`` positive = scene rotated clockwise
  in the image): the convention is written once, in docs/ARCHITECTURE.md; :func:`up_from_pitch_roll` and
  :func:`pitch_roll_from_up` are the only conversions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def intrinsics(fx: Tensor | float, fy: Tensor | float, cx: Tensor | float, cy: Tensor | float) -> Tensor:
    """Build ``K`` (..., 3, 3) from focal lengths and principal point (scalars or broadcastable tensors)."""
    fx, fy, cx, cy = torch.broadcast_tensors(
        *(torch.as_tensor(v, dtype=torch.float32) for v in (fx, fy, cx, cy))
    )
    K = torch.zeros(*fx.shape, 3, 3, dtype=fx.dtype, device=fx.device)
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = fx, fy, cx, cy, 1.0
    return K


def focal_from_hfov(hfov_deg: Tensor | float, width: Tensor | float) -> Tensor:
    """Focal length in pixels for a horizontal field of view (degrees) and an image width (pixels)."""
    hfov = torch.as_tensor(hfov_deg, dtype=torch.float32)
    return torch.as_tensor(width, dtype=torch.float32) / (2.0 * torch.tan(torch.deg2rad(hfov) / 2.0))


def intrinsics_from_hfov(hfov_deg: Tensor | float, width: Tensor | float, height: Tensor | float) -> Tensor:
    """Square-pixel ``K`` with the principal point at the image centre."""
    f = focal_from_hfov(hfov_deg, width)
    w, h = torch.as_tensor(width, dtype=torch.float32), torch.as_tensor(height, dtype=torch.float32)
    return intrinsics(f, f, w / 2.0, h / 2.0)


def hfov_from_intrinsics(K: Tensor, width: Tensor | float) -> Tensor:
    """Horizontal field of view (degrees) of ``K`` for an image ``width`` pixels wide."""
    return torch.rad2deg(2.0 * torch.atan(torch.as_tensor(width, dtype=K.dtype) / (2.0 * K[..., 0, 0])))


SANE_HFOV_DEG = (1.0, 175.0)  # a horizontal field of view outside this is a unit or input mistake


def _fmt(v: Tensor) -> str:
    return "[" + ", ".join(f"{float(x):.6g}" for x in v) + "]"


def check_intrinsics(K: Tensor, image_size: tuple[float, float] | None = None) -> str | None:
    """Why ``K`` (3, 3) or (N, 3, 3) is not a pixel intrinsics matrix
    ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``, else None.

    Checked, in this order: the shape; finite entries, within float32's range; the bottom row ``[0, 0, 1]``
    (within 1e-6; a matrix with the principal point in its bottom row is named as transposed);
    ``K[1][0] = 0``; ``fx, fy > 0``; not singular; and, when the image size ``(W, H)`` is known, a
    horizontal field of view ``2 atan(W / (2 fx))`` within :data:`SANE_HFOV_DEG`. A valid matrix can still
    lie outside what a model was trained on (``fx = 1e12``): that is flagged per person
    (:mod:`depth_pose.ranges`), not refused here. For a batch, the first bad matrix is named ``K[i]``."""
    if K.shape[-2:] != (3, 3):
        return f"K must be 3x3, got shape {tuple(K.shape[-2:])}"
    batched = K.ndim == 3 and K.shape[0] > 1
    Kd = torch.as_tensor(K, dtype=torch.float64).reshape(-1, 3, 3)

    def first(bad: Tensor) -> tuple[str, Tensor] | None:
        if not bool(bad.any()):
            return None
        i = int(bad.nonzero()[0])
        return (f"K[{i}]" if batched else "K"), Kd[i]

    if hit := first(~torch.isfinite(Kd).flatten(1).all(1)):
        return f"{hit[0]} has non-finite entries"
    big = torch.finfo(torch.float32).max  # the model computes in float32: beyond this an entry is infinite
    if hit := first((Kd.abs() > big).flatten(1).any(1)):
        return f"{hit[0]} has entries beyond {big:.3g} (float32's range, in which the model computes)"
    eye_row = torch.tensor([0.0, 0.0, 1.0], dtype=Kd.dtype)
    if hit := first((Kd[:, 2, :] - eye_row).abs().amax(1) > 1e-6):
        name, k = hit
        if (k[2, :2].abs() > 1e-6).any() and (k[:2, 2].abs() <= 1e-6).all():
            return (
                f"{name} looks transposed: its bottom row is {_fmt(k[2])} and its last column "
                f"{_fmt(k[:, 2])}; give it row by row as [[fx, s, cx], [0, fy, cy], [0, 0, 1]]"
            )
        return f"{name}'s bottom row must be [0, 0, 1], got {_fmt(k[2])}"
    if hit := first(Kd[:, 1, 0].abs() > 1e-6):
        name, k = hit
        return f"{name}[1][0] must be 0 ([[fx, s, cx], [0, fy, cy], [0, 0, 1]]), got {float(k[1, 0]):.6g}"
    if hit := first((Kd[:, 0, 0] <= 0) | (Kd[:, 1, 1] <= 0)):
        name, k = hit
        return f"{name} has a non-positive focal length (fx={float(k[0, 0]):.6g}, fy={float(k[1, 1]):.6g})"
    if hit := first(torch.linalg.det(Kd).abs() < 1e-9):
        return f"{hit[0]} is singular"
    if image_size is not None:
        width = float(image_size[0])
        hfov = hfov_from_intrinsics(Kd, width)
        lo, hi = SANE_HFOV_DEG
        if hit := first(~((hfov >= lo) & (hfov <= hi))):
            name, k = hit
            h = float(hfov_from_intrinsics(k, width))
            return (
                f"{name} gives a horizontal field of view of {h:.4g} degrees for a {width:g}-px-wide image "
                f"(fx={float(k[0, 0]):.6g}); expected {lo:g}-{hi:g} degrees: check the focal length and its "
                "unit"
            )
    return None


def project(points_cam: Tensor, K: Tensor, eps: float = 1e-6) -> Tensor:
    """Pinhole projection of camera-frame points (..., N, 3) with ``K`` (..., 3, 3) to pixels (..., N, 2).

    Points at or behind the camera (z <= eps) project to NaN.
    """
    z = points_cam[..., 2:3]
    uvw = torch.einsum("...ij,...nj->...ni", K, points_cam)
    px = uvw[..., :2] / z.clamp_min(eps)
    return torch.where(z > eps, px, torch.full_like(px, float("nan")))


def normalise_pixels(px: Tensor, K: Tensor) -> Tensor:
    """Pixels (..., N, 2) -> normalised image coordinates ``K^-1 [u, v, 1]`` (..., N, 2): camera-agnostic
    rays.

    Exact inverse of :func:`project` up to depth:
    ``normalise_pixels(project(p, K), K) == p[..., :2] / p[..., 2:]``.
    """
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy, s = K[..., 0, 2, None], K[..., 1, 2, None], K[..., 0, 1, None]
    y = (px[..., 1] - cy) / fy
    x = (px[..., 0] - cx - s * y) / fx
    return torch.stack((x, y), dim=-1)


def backproject(px: Tensor, depth: Tensor, K: Tensor) -> Tensor:
    """Pixels (..., N, 2) at camera depths ``z`` (..., N) -> camera-frame points (..., N, 3)."""
    xy = normalise_pixels(px, K) * depth[..., None]
    return torch.cat((xy, depth[..., None]), dim=-1)


def transform_intrinsics(
    K: Tensor, scale: Tensor | float, offset: Tensor | tuple[float, float] = (0.0, 0.0)
) -> Tensor:
    """Intrinsics after resizing an image by ``scale`` then pasting it at pixel ``offset`` of a new canvas.

    Used for the render downscale trick and for zoom crops (a crop at (x0, y0) is offset (-x0, -y0)).
    Pixel coordinates map as ``u' = scale * u + offset_x`` (the convention of a corner-aligned resize).
    """
    scale = torch.as_tensor(scale, dtype=K.dtype, device=K.device)
    offset = torch.as_tensor(offset, dtype=K.dtype, device=K.device)
    out = K.clone()
    out[..., 0, :] = K[..., 0, :] * scale[..., None]
    out[..., 1, :] = K[..., 1, :] * scale[..., None]
    out[..., 0, 2] = out[..., 0, 2] + offset[..., 0]
    out[..., 1, 2] = out[..., 1, 2] + offset[..., 1]
    return out


def transform_pixels(
    px: Tensor, scale: Tensor | float, offset: Tensor | tuple[float, float] = (0.0, 0.0)
) -> Tensor:
    """Pixel coordinates under the same resize+paste as :func:`transform_intrinsics`."""
    scale = torch.as_tensor(scale, dtype=px.dtype, device=px.device)
    offset = torch.as_tensor(offset, dtype=px.dtype, device=px.device)
    return px * scale[..., None, None] + offset[..., None, :]


def rot_x(angle: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) about x by ``angle`` radians (right-handed)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack((o, z, z, z, c, -s, z, s, c), dim=-1).reshape(*angle.shape, 3, 3)


def rot_y(angle: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) about y by ``angle`` radians (right-handed)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack((c, z, s, z, o, z, -s, z, c), dim=-1).reshape(*angle.shape, 3, 3)


def rot_z(angle: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) about z by ``angle`` radians (right-handed)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack((c, -s, z, s, c, z, z, z, o), dim=-1).reshape(*angle.shape, 3, 3)


# World (Z up) looking along world +Y, to camera (x right, y down, z forward), before tilt and roll.
WORLD_TO_LEVEL_CAMERA = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def camera_rotation(tilt: Tensor, roll: Tensor, pan: Tensor | None = None) -> Tensor:
    """World->camera rotation for a camera looking along world +Y (rotated by ``pan`` about Z), pitched up by
    ``tilt`` (radians, positive = looking up) and rolled by ``roll`` about its optical axis."""
    if pan is not None:
        # Pitch about the camera x axis: positive tilt raises the optical axis (camera y is down).
        return rot_z(roll) @ rot_x(-tilt) @ (WORLD_TO_LEVEL_CAMERA.to(tilt) @ rot_z(-pan))
    # rot_z(roll) @ rot_x(-tilt) @ WORLD_TO_LEVEL_CAMERA, written out (the generator's hot path).
    ct, st, cr, sr = torch.cos(tilt), torch.sin(tilt), torch.cos(roll), torch.sin(roll)
    zero = torch.zeros_like(ct)
    rows = (cr, -sr * st, sr * ct, sr, cr * st, -cr * ct, zero, ct, st)
    return torch.stack(rows, dim=-1).reshape(*tilt.shape, 3, 3)


def up_from_pitch_roll(pitch_deg: Tensor | float, roll_deg: Tensor | float) -> Tensor:
    """``up_cam`` (..., 3) of a camera pitched by ``pitch_deg`` (negative = looking down) and rolled by
    ``roll_deg`` (positive = scene rotated clockwise in the image): column 2 of :func:`camera_rotation`."""
    p = torch.as_tensor(pitch_deg, dtype=torch.float32) * (math.pi / 180.0)
    r = torch.as_tensor(roll_deg, dtype=torch.float32) * (math.pi / 180.0)
    p, r = torch.broadcast_tensors(p, r)
    return torch.stack((torch.sin(r) * torch.cos(p), -torch.cos(r) * torch.cos(p), torch.sin(p)), dim=-1)


def pitch_roll_from_up(up_cam: Tensor) -> tuple[Tensor, Tensor]:
    """``(pitch_deg, roll_deg)`` of an up vector in camera coordinates (..., 3; normalised here)."""
    u = torch.as_tensor(up_cam, dtype=torch.float32)
    u = u / u.norm(dim=-1, keepdim=True)
    pitch = torch.asin(u[..., 2].clamp(-1.0, 1.0)) * (180.0 / math.pi)
    roll = torch.atan2(u[..., 0], -u[..., 1]) * (180.0 / math.pi)
    return pitch, roll


def world_to_camera(points_world: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """``p_cam = R p_world + t`` for points (..., N, 3), ``R`` (..., 3, 3), ``t`` (..., 3)."""
    return torch.einsum("...ij,...nj->...ni", R, points_world) + t[..., None, :]


def mid_hip(points: Tensor, l_hip: int = 11, r_hip: int = 12) -> Tensor:
    """Midpoint of the two hip keypoints (..., 3): the point whose camera z is the project's target."""
    return 0.5 * (points[..., l_hip, :] + points[..., r_hip, :])


def deg(x: float) -> float:
    """Degrees -> radians (for config values)."""
    return x * math.pi / 180.0


def planar(points: Tensor) -> Tensor:
    """(B, N, k) -> its component-major "planar" form (k, N, B): a free view when ``points`` is already a view
    of planar storage (what :func:`world_to_pixels_planar` and the generator produce), else one copy."""
    return points.permute(2, 1, 0).contiguous()


def world_to_pixels_planar(
    points: Tensor, R: Tensor, t: Tensor, K: Tensor, eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """``(world_to_camera(p, R, t), project(that, K))`` on planar points (3, N, B) with per-sample ``R``,
    ``t``, ``K`` (B, 3, 3), (B, 3), (B, 3, 3): camera points (3, N, B) and pixels (2, N, B), NaN at or behind
    the camera. Broadcast multiply-adds over the sample axis, which is innermost and contiguous: long vector
    loops instead of batched tiny matmuls (the data generator's hot path; fuses well under
    ``torch.compile``)."""
    X, Y, Z = points[0], points[1], points[2]
    cam = [X * R[:, i, 0] + Y * R[:, i, 1] + Z * R[:, i, 2] + t[:, i] for i in range(3)]
    z = cam[2]
    inv_z = torch.where(z > eps, z, float("nan")).reciprocal()
    px = [(cam[0] * K[:, i, 0] + cam[1] * K[:, i, 1] + z * K[:, i, 2]) * inv_z for i in range(2)]
    return torch.stack(cam), torch.stack(px)


def world_to_pixels(
    points_world: Tensor, R: Tensor, t: Tensor, K: Tensor, eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """:func:`world_to_pixels_planar` for points (B, N, 3): returns (B, N, 3) / (B, N, 2) views of planar
    (3, N, B) / (2, N, B) storage, so every per-component op downstream reads contiguous memory. Same formulas
    as :func:`world_to_camera` + :func:`project`, equal up to float round-off."""
    cam, px = world_to_pixels_planar(planar(points_world), R, t, K, eps)
    return cam.permute(2, 1, 0), px.permute(2, 1, 0)
