"""depth_pose: metric depth of people from 2D pose, trained on synthetic data."""

from depth_pose.env import apply_defaults as _apply_defaults

_apply_defaults()

__version__ = "0.1.0"
