"""Depth models: the configurable MLP trunk and the LightningModule around it."""

from depth_pose.models.mlp import MLP, count_parameters
from depth_pose.models.module import DepthModule

__all__ = ["MLP", "DepthModule", "count_parameters"]
