"""Our cameras (K, R, t; x right, y down, z forward) as Blender cameras, and framing a person for rendering.

Blender's camera looks down its local -Z with +Y up, so its local axes are ours with y and z flipped:
``R_blender_to_world = R^T diag(1, -1, -1)`` and the camera centre is ``-R^T t``. Intrinsics map to
``sensor_fit='HORIZONTAL'`` (the sensor width spans the image width): ``lens = fx * sensor_width / W`` and the
principal point to ``shift_x = (W/2 - cx) / W``, ``shift_y = (cy - H/2) / W`` (Blender measures shifts in
units of the fitted sensor dimension, +y up). Square pixels and zero skew are required (checked).

Framing (render efficiency): the 3D scene and the camera pose are exactly the sampled ones; only the
intrinsics are replaced by a zoom that puts the person's mesh box at ``fill`` of a square ``res`` image. This
is a pure intrinsics change (same centre of projection), so every label stays an exact projection.
"""

from __future__ import annotations

import numpy as np

SENSOR_WIDTH_MM = 36.0
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def blender_camera(K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int) -> dict:
    """Blender camera settings reproducing ``p_px ~ K (R p_world + t)`` on a ``width`` x ``height`` image."""
    K, R, t = (np.asarray(a, dtype=np.float64) for a in (K, R, t))
    fx, fy, skew = K[0, 0], K[1, 1], K[0, 1]
    if not (np.isfinite(K).all() and fx > 0 and fy > 0):
        raise ValueError(f"blender_camera: bad intrinsics {K.tolist()}")
    if abs(fx - fy) > 1e-4 * fx or abs(skew) > 1e-6 * fx:
        raise ValueError(
            f"blender_camera: needs square pixels and zero skew, got fx={fx}, fy={fy}, skew={skew}"
        )
    M = np.eye(4)
    M[:3, :3] = R.T @ _FLIP_YZ
    M[:3, 3] = -R.T @ t
    return {
        "lens": float(fx * SENSOR_WIDTH_MM / width),
        "sensor_width": SENSOR_WIDTH_MM,
        "sensor_fit": "HORIZONTAL",
        "shift_x": float((width / 2.0 - K[0, 2]) / width),
        "shift_y": float((K[1, 2] - height / 2.0) / width),
        "res_x": int(width),
        "res_y": int(height),
        "matrix_world": M,
    }


def frame_person(
    points_world: np.ndarray, R: np.ndarray, t: np.ndarray, res: int, fill: float = 0.8
) -> np.ndarray:
    """Intrinsics (3, 3) of a square ``res`` image that shows ``points_world`` (N, 3: the mesh) centred, with
    the larger side of their box spanning ``fill * res`` pixels, seen from the camera pose ``R, t``."""
    p = np.asarray(points_world, np.float64) @ np.asarray(R, np.float64).T + np.asarray(t, np.float64)
    if (p[:, 2] <= 1e-3).any():
        raise ValueError("frame_person: part of the person is behind the camera")
    xy = p[:, :2] / p[:, 2:3]
    lo, hi = xy.min(0), xy.max(0)
    span = float((hi - lo).max())
    f = fill * res / max(span, 1e-9)
    c = 0.5 * (lo + hi)
    return np.array([[f, 0.0, res / 2.0 - f * c[0]], [0.0, f, res / 2.0 - f * c[1]], [0.0, 0.0, 1.0]])


def project_np(points_world: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) of world points (numpy twin of geometry.world_to_camera + geometry.project, for
    checks)."""
    p = np.asarray(points_world, np.float64) @ np.asarray(R, np.float64).T + np.asarray(t, np.float64)
    uvw = p @ np.asarray(K, np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]
