"""Evaluation: keypoint/image sets with ground truth, geometric baselines, metrics, plots,
pose-invariance suite.

Entry point ``dp-eval`` (:mod:`depth_pose.cli.eval`) over :func:`depth_pose.evaluate.evaluate`.
"""
