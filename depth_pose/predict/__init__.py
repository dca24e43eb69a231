"""Prediction on images, folders, videos, cameras and streams (dp-predict):
see :mod:`depth_pose.predict.run`."""
