"""Analytic observation: exact pinhole projection of posed keypoints, visibility and the targets.

Visibility = in front of the camera and inside the image, and (optionally) not self-occluded by two cheap
rules: the face (nose, eyes) is hidden when the head is seen from behind, the far ear is hidden in a near
profile view, and an elbow/wrist/knee whose pixel falls inside the torso quadrilateral (shoulders, hips) while
lying behind it is hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor

from depth_pose import geometry
from depth_pose.keypoints import INDEX, L_HIP, L_SHOULDER, NOSE, R_HIP, R_SHOULDER
from generation.types import Cameras, Observations, PosedBodies

_FACE = (NOSE, INDEX["left_eye"], INDEX["right_eye"])
_L_EAR, _R_EAR = INDEX["left_ear"], INDEX["right_ear"]
_LIMBS = tuple(INDEX[n] for n in ("left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_knee", "right_knee"))
_LIMBS_T = torch.tensor(_LIMBS)
_FACE_SEL = slice(min(_FACE), max(_FACE) + 1) if sorted(_FACE) == list(range(min(_FACE), max(_FACE) + 1)) else list(_FACE)


def inside_image(px: Tensor, img_w: Tensor, img_h: Tensor) -> Tensor:
    """(B, N) bool: finite pixel inside ``[0, w) x [0, h)`` (NaN, i.e. behind the camera, is outside)."""
    w = img_w.to(px.dtype)[:, None]
    h = img_h.to(px.dtype)[:, None]
    u, v = px[..., 0], px[..., 1]
    return (u >= 0).logical_and_(u < w).logical_and_(v >= 0).logical_and_(v < h)


def exact_detections(px: Tensor, visible: Tensor) -> Tensor:
    """The 'no noise' detector: (B, N, 3) = exact pixels + confidence 1 (visible) / 0 (unseen), as a view of
    planar (3, B, N) storage like :func:`depth_pose.geometry.world_to_pixels`' outputs."""
    return torch.cat((px.permute(2, 0, 1), visible[None].to(px.dtype))).permute(1, 2, 0)


def self_occluded(kp_cam: Tensor, px: Tensor, ear_cos: float = 0.8, face_margin_m: float = 0.05,
                  torso_margin_m: float = 0.1) -> Tensor:
    """(B, 17) bool: joints hidden by the person's own head or torso (cheap geometric rules)."""
    B = kp_cam.shape[0]
    hidden = torch.zeros(B, kp_cam.shape[1], dtype=torch.bool, device=kp_cam.device)
    # Head: viewing ray to the ear midpoint; face hidden when the nose is farther than the ears.
    # Component-first (3, B) vectors: contiguous when kp_cam is planar (world_to_pixels), cheap otherwise.
    kc = kp_cam.permute(2, 0, 1)
    l_ear, r_ear = kc[:, :, _L_EAR], kc[:, :, _R_EAR]
    head = 0.5 * (l_ear + r_ear)
    ray = head / (head * head).sum(0).sqrt_().clamp_min_(1e-6)
    away = ((kc[:, :, NOSE] - head) * ray).sum(0) > face_margin_m
    hidden[:, _FACE_SEL] = away[:, None]
    ear = l_ear - r_ear
    cos = (ear * ray).sum(0) / (ear * ear).sum(0).sqrt_().clamp_min_(1e-6)
    hidden[:, _L_EAR] = cos > ear_cos  # left ear farther, ear axis near the ray
    hidden[:, _R_EAR] = cos < -ear_cos
    # Torso: two triangles (ls, rs, rh) and (ls, rh, lh) in the image; depth interpolated barycentrically.
    z = kp_cam[..., 2]
    limbs = _LIMBS_T.to(px.device)
    P, zp = px.index_select(1, limbs), z.index_select(1, limbs)  # (B, L, 2), (B, L)
    pu, pv = P[..., 0], P[..., 1]
    behind = torch.zeros_like(zp, dtype=torch.bool)
    for a, b, c in ((L_SHOULDER, R_SHOULDER, R_HIP), (L_SHOULDER, R_HIP, L_HIP)):
        au, av = px[:, a, 0, None], px[:, a, 1, None]  # (B, 1)
        v0u, v0v = px[:, b, 0, None] - au, px[:, b, 1, None] - av
        v1u, v1v = px[:, c, 0, None] - au, px[:, c, 1, None] - av
        v2u, v2v = pu - au, pv - av  # (B, L)
        den = v0u * v1v - v1u * v0v
        den = torch.where(den.abs() < 1e-9, torch.full_like(den, 1e-9), den)
        l1 = (v2u * v1v - v1u * v2v).div_(den)
        l2 = (v0u * v2v - v2u * v0v).div_(den)
        l0 = 1 - l1 - l2
        inside = (l0 >= 0).logical_and_(l1 >= 0).logical_and_(l2 >= 0)
        zt = (l0 * z[:, a, None]).addcmul_(l1, z[:, b, None]).addcmul_(l2, z[:, c, None])
        behind |= inside.logical_and_(zp > zt.add_(torso_margin_m))
    hidden.index_copy_(1, limbs, behind)
    return hidden


def observe(posed: PosedBodies, cameras: Cameras, self_occlusion: bool = True,
            projection: tuple[Tensor, Tensor] | None = None) -> Observations:
    """Exact projection of ``posed`` through ``cameras`` (row-aligned). ``det_xyc`` is the exact projection
    with confidence 1 (visible) / 0 (unseen): the 'no noise' detector; :mod:`generation.noise` replaces it.

    ``projection``: ``(keypoints_cam, pixels)`` already computed for these cameras (``CameraSampler.sample(...,
    return_projection=True)``), to skip computing them again.
    """
    kp_world = posed.keypoints.to(cameras.R.dtype)
    if projection is None:
        kp_cam, px = geometry.world_to_pixels(kp_world, cameras.R, cameras.t, cameras.K)
    else:
        kp_cam, px = projection
    visible = inside_image(px, cameras.img_w, cameras.img_h)
    if self_occlusion:
        visible &= ~self_occluded(kp_cam, px)
    hip_cam = geometry.mid_hip(kp_cam, L_HIP, R_HIP)
    hip_height = geometry.mid_hip(kp_world, L_HIP, R_HIP)[:, 2]
    up_cam = cameras.R[:, :, 2]  # world +Z expressed in the camera frame (yaw about Z leaves it unchanged)
    ground_cam = hip_cam - hip_height[:, None] * up_cam
    v = px[..., 1]  # non-finite (behind the camera) excluded from the extent
    inf = torch.inf
    vmax = torch.nan_to_num(v, nan=-inf, posinf=-inf, neginf=-inf).amax(-1)
    vmin = torch.nan_to_num(v, nan=inf, posinf=inf, neginf=inf).amin(-1)
    person_px_height = (vmax - vmin).clamp_min(0).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    det = exact_detections(px, visible)
    return Observations(
        keypoints_cam=kp_cam,
        gt_px=px,
        gt_visible=visible,
        det_xyc=det,
        z_m=hip_cam[:, 2],
        hip_cam=hip_cam,
        ground_cam=ground_cam,
        person_px_height=person_px_height,
    )
