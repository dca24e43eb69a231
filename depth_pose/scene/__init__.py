"""A fixed camera that calibrates itself from the people it watches (core: numpy/torch, no generation).

* :mod:`~depth_pose.scene.joints`: joint midpoints and rays per person-frame, upright-body tests.
* :mod:`~depth_pose.scene.vanishing`: the up direction from upright people (vertical vanishing point).
* :mod:`~depth_pose.scene.floor`: the camera's height above the floor (model depths and the people's
  proportions); the mid-hip depth from the feet.
* :mod:`~depth_pose.scene.planarity`: the floor's tilt against up; whether the floor is one level plane (else:
  single-frame depths).
* :mod:`~depth_pose.scene.calibration`: :class:`SceneCalibration` (JSON file) and :func:`calibrate_scene`.
* :mod:`~depth_pose.scene.fusion`: model depth + ground contact + per-track scale.
"""

from depth_pose.scene.calibration import (
    CalibrationMismatchError,
    SceneCalibration,
    SceneCalibrationError,
    calibrate_scene,
)
from depth_pose.scene.floor import ANKLE_HEIGHT_M, FloorEstimate, fit_floor, ground_depth
from depth_pose.scene.fusion import FusedDepth, TrackScale, fuse_depths
from depth_pose.scene.joints import BodyPoints, TooFewPeopleError, body_points, upright_mask
from depth_pose.scene.planarity import Planarity, check_planarity
from depth_pose.scene.vanishing import UpEstimate, estimate_up

__all__ = [
    "ANKLE_HEIGHT_M",
    "BodyPoints",
    "CalibrationMismatchError",
    "FloorEstimate",
    "FusedDepth",
    "Planarity",
    "SceneCalibration",
    "SceneCalibrationError",
    "TooFewPeopleError",
    "TrackScale",
    "UpEstimate",
    "body_points",
    "calibrate_scene",
    "check_planarity",
    "estimate_up",
    "fit_floor",
    "fuse_depths",
    "ground_depth",
    "upright_mask",
]
