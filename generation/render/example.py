"""Render the bundled example image: three posed Anny people at different depths seen by one 1280x720 camera.

    .venv/bin/python -m generation.render.example            # writes depth_pose/assets/example.{jpg,json}

``example.json``: ``K`` (3x3), ``image_size`` [w, h], the camera (height, tilt, world->camera R, t) and per
person its ground-truth depth ``z_m`` (camera z of the mid-hip, the project's target), ``dist_m``, the exact
17 COCO keypoints in pixels, ``hip_px`` (midpoint of the two hip pixels), stature and the YOLO detection
matched to it (if any). Runs Blender in this process (a one-off script, not the generation pipeline).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

import depth_pose  # noqa: F401

W, H = 1280, 720
PEOPLE = [  # (lateral X m, forward Y m, yaw deg); the camera is at the origin looking along +Y
    (-1.2, 4.0, 25.0),
    (1.5, 7.0, -60.0),
    (-2.0, 11.0, -10.0),
]


def build(seed: int = 3, samples: int = 16) -> tuple[np.ndarray, dict]:
    import torch

    from depth_pose import geometry
    from generation.body import BodyModel
    from generation.pose import HybridPoseSampler
    from generation.render import appearance
    from generation.render.framing import blender_camera
    from generation.render.scene import BlenderScene

    body = BodyModel(n_bodies=16, seed=seed)
    g = torch.Generator().manual_seed(seed)
    poses = HybridPoseSampler(p_preset=0.0, p_hands_up=0.0, p_head_turn=0.0).sample(len(PEOPLE), g)
    bi = torch.tensor([2, 5, 9])
    verts, faces = body.mesh(bi, poses)
    posed = body.pose(bi, poses)
    cam_h, tilt = 1.45, -4.0
    R = geometry.camera_rotation(torch.tensor(math.radians(tilt)), torch.tensor(0.0)).double()
    t = -(R @ torch.tensor([0.0, 0.0, cam_h], dtype=torch.float64))
    K = geometry.intrinsics_from_hfov(62.0, W, H).double()
    V, kps = [], []
    for k, (x, y, yaw) in enumerate(PEOPLE):
        Rz = geometry.rot_z(torch.tensor(math.radians(yaw), dtype=torch.float64))
        off = torch.tensor([x, y, 0.0], dtype=torch.float64)
        V.append(verts[k].double() @ Rz.T + off)
        kps.append(posed.keypoints[k].double() @ Rz.T + off)
    f_np, part, hair = appearance.segment_faces(body.model)
    nv = verts.shape[1]
    faces_all = np.concatenate([f_np + k * nv for k in range(len(PEOPLE))])
    scene = BlenderScene(
        faces_all,
        np.tile(part, len(PEOPLE)),
        np.tile(hair, len(PEOPLE)),
        {"engine": "cycles", "samples": samples, "denoise": True, "max_bounces": 4},
    )
    rng = np.random.default_rng(seed)
    looks = [appearance.person_look(rng) for _ in PEOPLE]
    scene.set_person(torch.cat(V).float().numpy(), looks[0])
    # one material set per person: copy the 5 slot materials and shift each person's face indices
    import bpy

    me = scene.mesh
    nf = len(f_np)
    idx = np.empty(len(faces_all), np.int32)
    me.polygons.foreach_get("material_index", idx)
    for k in range(1, len(PEOPLE)):
        for s, name in enumerate(appearance.SLOTS):
            m = me.materials[s].copy()
            m.name = f"{name}{k}"
            bsdf = m.node_tree.nodes["Principled BSDF"]
            bsdf.inputs["Base Color"].default_value = (*looks[k]["colors"][s], 1.0)
            me.materials.append(m)
        sl = slice(k * nf, (k + 1) * nf)
        idx[sl] = appearance.material_indices(part, hair, looks[k]) + 5 * k
    me.polygons.foreach_set("material_index", idx)
    me.update()
    scene.set_camera(blender_camera(K.numpy(), R.numpy(), t.numpy(), W, H))
    look = appearance.scene_look(rng)
    look.update(
        world_color=[0.55, 0.65, 0.8],
        world_strength=0.9,
        sun_strength=3.5,
        sun_rotation=[math.radians(50), 0.0, math.radians(35)],
        floor_colors=[[0.32, 0.31, 0.29], [0.45, 0.44, 0.4]],
        floor_scale=2.0,
        boxes=[],
    )
    scene.set_scene(look)
    # background buildings (behind everyone)
    for i, (bx, by, sx, sz, col) in enumerate(
        [
            (-6, 22, 5, 6, (0.55, 0.45, 0.35)),
            (3, 25, 7, 9, (0.4, 0.42, 0.45)),
            (11, 20, 4, 4, (0.6, 0.58, 0.5)),
            (-14, 18, 5, 3.5, (0.35, 0.3, 0.28)),
        ]
    ):
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(bx, by, sz / 2))
        ob = bpy.context.active_object
        ob.scale = (sx, 3.0, sz)
        m = bpy.data.materials.new(f"bld{i}")
        m.use_nodes = True
        m.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*col, 1.0)
        ob.data.materials.append(m)
    img = scene.render(seed)
    people = []
    for k in range(len(PEOPLE)):
        pc = geometry.world_to_camera(kps[k][None], R[None], t[None])[0]
        px = geometry.project(pc[None], K[None])[0]
        hip = geometry.mid_hip(pc)
        people.append(
            {
                "z_m": float(hip[2]),
                "dist_m": float(hip.norm()),
                "hip_px": [float(v) for v in geometry.mid_hip(px)],
                "keypoints_px": px.tolist(),
                "stature_m": float(body.shapes.stature_m[bi[k]]),
                "pose": poses.preset[k] or poses.strategy,
            }
        )
    meta = {
        "image": "example.jpg",
        "image_size": [W, H],
        "K": K.tolist(),
        "camera": {"height_m": cam_h, "tilt_deg": tilt, "R": R.tolist(), "t": t.tolist()},
        "people": people,
        "note": (
            "Rendered by generation/render/example.py (Cycles). z_m = camera z of the mid-hip (the target)."
        ),
    }
    return img, meta


def main() -> None:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "depth_pose" / "assets")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--samples", type=int, default=16)
    a = ap.parse_args()
    img, meta = build(a.seed, a.samples)
    from depth_pose.detect import PoseDetector

    dets = PoseDetector()(img)[0]
    for p in meta["people"]:
        gt = np.array(p["keypoints_px"])
        best, err = None, float("inf")
        for i in range(len(dets)):
            e = float(np.nanmean(np.hypot(*(dets.keypoints[i, :, :2] - gt).T)))
            if e < err:
                best, err = i, e
        if best is not None and err < 0.2 * (gt[:, 1].max() - gt[:, 1].min()):
            p["yolo"] = {
                "box_conf": float(dets.scores[best]),
                "mean_kp_err_px": err,
                "keypoints_xyc": dets.keypoints[best].tolist(),
            }
    a.out.mkdir(parents=True, exist_ok=True)
    for q in (92, 88, 84, 80, 75):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if len(buf) < 300_000:
            break
    tmp = a.out / ".example.jpg.tmp"
    tmp.write_bytes(buf.tobytes())
    tmp.replace(a.out / "example.jpg")
    tmp = a.out / ".example.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(a.out / "example.json")
    print(
        json.dumps(
            [
                {k: v for k, v in p.items() if k in ("z_m", "hip_px", "pose")}
                | {"yolo": p.get("yolo", {}).get("mean_kp_err_px")}
                for p in meta["people"]
            ],
            indent=1,
        ),
        len(buf),
        "bytes",
    )


if __name__ == "__main__":
    main()
