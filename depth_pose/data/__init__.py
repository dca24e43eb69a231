"""Training data: the synthetic set as device-resident tensors sliced into batches."""

from depth_pose.data.datamodule import DeviceDataModule
from depth_pose.data.device_data import DeviceBatches, HostSet, load_host_set, rank_slice, split_indices

__all__ = ["DeviceBatches", "DeviceDataModule", "HostSet", "load_host_set", "rank_slice", "split_indices"]
