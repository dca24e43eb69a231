"""Synthetic data: body -> pose -> camera -> (render -> detect | project -> noise) -> shards."""

import depth_pose  # noqa: F401  (sets project-local cache/offline env vars before anny is imported)
