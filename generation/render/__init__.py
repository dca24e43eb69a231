"""Render path: the Anny mesh in Blender (Cycles), labelled by YOLO pose, written as the same Parquet shards.

Modules: ``framing`` (our camera -> Blender camera, person framing; numpy, no bpy), ``appearance`` (clothing
segmentation and random looks), ``scene`` (the Blender scene, only imported inside render workers), ``worker``
(crash-isolated render processes), ``downscale`` (the downscale trick and tiling), ``label`` (YOLO matching,
OKS filter), ``pipeline`` (:func:`render_dataset`, called by ``generation.pipeline`` when ``render != none``).
"""
