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
from generation.kernels import kernel, nan_to
from generation.types import Cameras, Observations, PosedBodies

_FACE = (NOSE, INDEX["left_eye"], INDEX["right_eye"])
_L_EAR, _R_EAR = INDEX["left_ear"], INDEX["right_ear"]
_LIMBS = tuple(
    INDEX[n] for n in ("left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_knee", "right_knee")
)


def inside_planar(pp: Tensor, img_w: Tensor, img_h: Tensor) -> Tensor:
    """(N, B) 0/1 mask of planar pixels ``pp`` (2, N, B) inside ``[0, w) x [0, h)`` (NaN, i.e. behind the
    camera, is outside). Float: masks in the fused kernels are floats (Inductor stores bools slowly)."""
    u, v = pp[0], pp[1]
    return ((u >= 0) & (u < img_w.to(pp.dtype)) & (v >= 0) & (v < img_h.to(pp.dtype))).to(pp.dtype)


def exact_detections(px: Tensor, visible: Tensor) -> Tensor:
    """The 'no noise' detector: (B, N, 3) = exact pixels + confidence 1 (visible) / 0 (unseen), as a view of
    planar (3, N, B) storage like :func:`depth_pose.geometry.world_to_pixels`' outputs."""
    return torch.cat((geometry.planar(px), visible.T[None].to(px.dtype))).permute(2, 1, 0)


def self_occluded(
    kp_cam: Tensor, px: Tensor, ear_cos: float = 0.8, face_margin_m: float = 0.05, torso_margin_m: float = 0.1
) -> Tensor:
    """(B, 17) bool: joints hidden by the person's own head or torso (cheap geometric rules)."""
    return (
        _self_occluded_planar(
            geometry.planar(kp_cam), geometry.planar(px), ear_cos, face_margin_m, torso_margin_m
        ).T
        > 0
    )


def _self_occluded_planar(
    kc: Tensor, pp: Tensor, ear_cos: float = 0.8, face_margin_m: float = 0.05, torso_margin_m: float = 0.1
) -> Tensor:
    """:func:`self_occluded` on planar camera points (3, 17, B) and pixels (2, 17, B); returns a (17, B) 0/1
    float mask."""
    no = torch.zeros_like(kc[0, 0], dtype=torch.bool)
    hidden = [no] * kc.shape[1]
    # Head: viewing ray to the ear midpoint; face hidden when the nose is farther than the ears.
    l_ear, r_ear = kc[:, _L_EAR], kc[:, _R_EAR]  # (3, B)
    head = 0.5 * (l_ear + r_ear)
    ray = head / (head * head).sum(0).sqrt().clamp_min(1e-6)
    away = ((kc[:, NOSE] - head) * ray).sum(0) > face_margin_m
    for j in _FACE:
        hidden[j] = away
    ear = l_ear - r_ear
    cos = (ear * ray).sum(0) / (ear * ear).sum(0).sqrt().clamp_min(1e-6)
    hidden[_L_EAR] = cos > ear_cos  # left ear farther, ear axis near the ray
    hidden[_R_EAR] = cos < -ear_cos
    # Torso: two triangles (ls, rs, rh) and (ls, rh, lh) in the image; depth interpolated barycentrically.
    z = kc[2]
    limbs = list(_LIMBS)
    pu, pv, zp = pp[0, limbs], pp[1, limbs], z[limbs]  # (L, B)
    behind = torch.zeros_like(zp, dtype=torch.bool)
    for a, b, c in ((L_SHOULDER, R_SHOULDER, R_HIP), (L_SHOULDER, R_HIP, L_HIP)):
        au, av = pp[0, a], pp[1, a]  # (B,)
        v0u, v0v = pp[0, b] - au, pp[1, b] - av
        v1u, v1v = pp[0, c] - au, pp[1, c] - av
        v2u, v2v = pu - au, pv - av  # (L, B)
        den = v0u * v1v - v1u * v0v
        den = torch.where(den.abs() < 1e-9, torch.full_like(den, 1e-9), den)
        l1 = (v2u * v1v - v1u * v2v) / den
        l2 = (v0u * v2v - v2u * v0v) / den
        l0 = 1 - l1 - l2
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        zt = l0 * z[a] + l1 * z[b] + l2 * z[c]
        behind = behind | (inside & (zp > zt + torso_margin_m))
    for k, j in enumerate(limbs):
        hidden[j] = behind[k]
    return torch.stack([h.to(kc.dtype) for h in hidden])


@kernel
def _observe_planar(
    kw: Tensor, kc: Tensor, pp: Tensor, R: Tensor, img_w: Tensor, img_h: Tensor, self_occlusion: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Planar core of :func:`observe`: world points ``kw`` and camera points ``kc`` (3, 17, B), pixels ``pp``
    (2, 17, B) -> visible (17, B, 0/1 float), hip_cam (3, B), ground_cam (3, B), person_px_height (B,), the
    exact detections (3, 17, B). Pure math (a :func:`generation.kernels.kernel`)."""
    visible = inside_planar(pp, img_w, img_h)
    if self_occlusion:
        visible = visible * (1.0 - _self_occluded_planar(kc, pp))
    hip_cam = geometry.mid_hip(kc.permute(2, 1, 0), L_HIP, R_HIP).T  # (3, B)
    hip_height = geometry.mid_hip(kw.permute(2, 1, 0), L_HIP, R_HIP)[:, 2]
    ground_cam = hip_cam - hip_height * R[:, :, 2].T  # R[:, :, 2]: world +Z in the camera frame
    v = pp[1]  # non-finite (behind the camera) excluded from the extent
    vmax, vmin = nan_to(v, -torch.inf).amax(0), nan_to(v, torch.inf).amin(0)  # pixels are finite or NaN
    person_px_height = torch.where(vmax >= vmin, vmax - vmin, 0.0)  # 0 when no joint is in front
    det = torch.cat((pp, visible[None]))
    return visible, hip_cam, ground_cam, person_px_height, det


def observe(
    posed: PosedBodies,
    cameras: Cameras,
    self_occlusion: bool = True,
    projection: tuple[Tensor, Tensor] | None = None,
) -> Observations:
    """Exact projection of ``posed`` through ``cameras`` (row-aligned). ``det_xyc`` is the exact projection
    with confidence 1 (visible) / 0 (unseen): the 'no noise' detector; :mod:`generation.noise` replaces it.

    ``projection``: ``(keypoints_cam, pixels)`` already computed for these cameras
    (``CameraSampler.sample(..., return_projection=True)``), to skip computing them again. Computed on planar
    (component, joint, sample) storage; the (B, 17, k) fields are views of it.
    """
    kw = geometry.planar(posed.keypoints.to(cameras.R.dtype))
    if projection is None:
        kc, pp = geometry.world_to_pixels_planar(kw, cameras.R, cameras.t, cameras.K)
    else:
        kc, pp = geometry.planar(projection[0]), geometry.planar(projection[1])
    visible, hip_cam, ground_cam, height, det = _observe_planar(
        kw, kc, pp, cameras.R, cameras.img_w, cameras.img_h, self_occlusion
    )
    return Observations(
        keypoints_cam=kc.permute(2, 1, 0),
        gt_px=pp.permute(2, 1, 0),
        gt_visible=(visible > 0).T,
        det_xyc=det.permute(2, 1, 0),
        z_m=hip_cam[2],
        hip_cam=hip_cam.T,
        ground_cam=ground_cam.T,
        person_px_height=height,
    )
