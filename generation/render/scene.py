"""The Blender scene of one render worker: the Anny mesh, clothing materials, floor, background boxes, lights.

Imported only inside a render worker process (``bpy`` is heavy and Cycles/Mesa failures must not reach the
main process). The mesh is built once (Anny's topology never changes) and its vertices are overwritten per
pose. Coordinates: Blender world = our body world (Z up, metres, floor Z = 0, the person at X = Y = 0).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterator

import cv2
import numpy as np

from generation.render.appearance import SLOTS, material_indices

_ENGINES = {"cycles": "CYCLES", "eevee": "BLENDER_EEVEE", "workbench": "BLENDER_WORKBENCH"}


def _principled(bpy, name: str):
    m = bpy.data.materials.new(name)
    m.use_nodes = True
    return m, m.node_tree.nodes["Principled BSDF"]


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Blender prints a ``Saved: '...frame.png'`` line per render on the process's stdout (file descriptor 1,
    under any progress bar): dropped while rendering; its errors go to stderr, kept."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class BlenderScene:
    """One reusable scene. ``settings``: engine, samples, denoise, device (cpu|gpu|auto), threads,
    max_bounces."""

    def __init__(
        self, faces: np.ndarray, face_part: np.ndarray, hair_score: np.ndarray, settings: dict
    ) -> None:
        import bpy

        self.bpy = bpy
        self.face_part, self.hair_score = face_part, hair_score
        bpy.ops.wm.read_factory_settings(use_empty=True)
        sc = self.scene = bpy.context.scene
        n_vert = int(faces.max()) + 1
        me = self.mesh = bpy.data.meshes.new("person")
        me.vertices.add(n_vert)
        me.loops.add(faces.size)
        me.polygons.add(len(faces))
        me.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
        me.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
        me.polygons.foreach_set("loop_total", np.full(len(faces), 3, np.int32))
        me.polygons.foreach_set("use_smooth", np.ones(len(faces), bool))
        me.update()
        self.person = bpy.data.objects.new("person", me)
        sc.collection.objects.link(self.person)
        self.mats = []
        for s in SLOTS:
            m, bsdf = _principled(bpy, s)
            me.materials.append(m)
            self.mats.append(bsdf)

        # floor: big plane with a two-colour noise texture
        bpy.ops.mesh.primitive_plane_add(size=400.0)
        self.floor = bpy.context.active_object
        fm, fb = _principled(bpy, "floor")
        nodes, links = fm.node_tree.nodes, fm.node_tree.links
        tex = nodes.new("ShaderNodeTexNoise")
        ramp = nodes.new("ShaderNodeValToRGB")
        links.new(tex.outputs["Fac"], ramp.inputs["Fac"])
        links.new(ramp.outputs["Color"], fb.inputs["Base Color"])
        fb.inputs["Roughness"].default_value = 0.8
        self.floor_tex, self.floor_ramp = tex, ramp
        self.floor.data.materials.append(fm)

        # background boxes (hidden unless used)
        self.boxes = []
        for i in range(4):
            bpy.ops.mesh.primitive_cube_add(size=1.0)
            ob = bpy.context.active_object
            bm, bb = _principled(bpy, f"box{i}")
            ob.data.materials.append(bm)
            self.boxes.append((ob, bb))

        sun = bpy.data.lights.new("sun", "SUN")
        self.sun = bpy.data.objects.new("sun", sun)
        sc.collection.objects.link(self.sun)
        w = bpy.data.worlds.new("world")
        w.use_nodes = True
        sc.world = w
        self.world_bg = w.node_tree.nodes["Background"]
        cd = bpy.data.cameras.new("cam")
        self.cam = bpy.data.objects.new("cam", cd)
        sc.collection.objects.link(self.cam)
        sc.camera = self.cam
        self._configure(settings)
        # in the pool's folder (``settings["tmp_dir"]``, removed by the pool); removed with the scene too
        self._tmp = tempfile.mkdtemp(prefix="dp_render_", dir=settings.get("tmp_dir"))
        weakref.finalize(self, shutil.rmtree, self._tmp, True)

    def _configure(self, s: dict) -> None:
        sc, r = self.scene, self.scene.render
        engine = str(s.get("engine", "cycles")).lower()
        if engine not in _ENGINES:
            raise ValueError(f"render.engine must be one of {sorted(_ENGINES)}, got {engine!r}")
        r.engine = _ENGINES[engine]
        sc.view_settings.view_transform = "Standard"
        r.image_settings.file_format = "PNG"
        r.image_settings.compression = 0
        r.image_settings.color_mode = "RGB"
        r.use_persistent_data = True
        threads = int(s.get("threads", 0) or 0)
        if threads > 0:
            r.threads_mode, r.threads = "FIXED", threads
        if engine == "cycles":
            c = sc.cycles
            c.samples = int(s.get("samples", 4))
            c.use_adaptive_sampling = False
            c.use_denoising = bool(s.get("denoise", False))
            c.max_bounces = int(s.get("max_bounces", 3))
            c.diffuse_bounces = min(c.max_bounces, 2)
            c.glossy_bounces = min(c.max_bounces, 1)
            c.transmission_bounces = c.transparent_max_bounces = 1
            c.caustics_reflective = c.caustics_refractive = False
            c.blur_glossy = 1.0
            c.filter_width = 1.5
            c.device = self._pick_device(str(s.get("device", "cpu")).lower())
        elif engine == "eevee":
            sc.eevee.taa_render_samples = int(s.get("samples", 4))

    def _pick_device(self, want: str) -> str:
        """'CPU' or 'GPU' (OptiX, then CUDA, then HIP/oneAPI/Metal) for Cycles."""
        if want == "cpu":
            return "CPU"
        prefs = self.bpy.context.preferences.addons["cycles"].preferences
        for kind in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
            try:
                prefs.compute_device_type = kind
                prefs.get_devices()
            except (TypeError, ValueError):
                continue
            gpus = [d for d in prefs.devices if d.type == kind]
            if gpus:
                for d in prefs.devices:
                    d.use = d.type == kind
                return "GPU"
        if want == "gpu":
            raise RuntimeError("render.device=gpu but Cycles found no OptiX/CUDA/HIP/oneAPI/Metal device")
        return "CPU"

    # ------------------------------------------------------------------ per pose / per camera
    def set_person(self, vertices: np.ndarray, look: dict) -> None:
        """New vertex positions (V, 3) (world, metres) and the person's look (see appearance.person_look)."""
        me = self.mesh
        me.vertices.foreach_set("co", np.ascontiguousarray(vertices, np.float32).ravel())
        me.polygons.foreach_set("material_index", material_indices(self.face_part, self.hair_score, look))
        me.update()
        for bsdf, col, rough in zip(self.mats, look["colors"], look["roughness"]):
            bsdf.inputs["Base Color"].default_value = (*col, 1.0)
            bsdf.inputs["Roughness"].default_value = rough

    def set_camera(self, cam: dict) -> None:
        """Apply :func:`generation.render.framing.blender_camera` settings."""
        from mathutils import Matrix

        d, r = self.cam.data, self.scene.render
        d.sensor_fit, d.sensor_width, d.lens = cam["sensor_fit"], cam["sensor_width"], cam["lens"]
        d.shift_x, d.shift_y = cam["shift_x"], cam["shift_y"]
        d.clip_start, d.clip_end = 0.05, 1000.0
        r.resolution_x, r.resolution_y, r.resolution_percentage = cam["res_x"], cam["res_y"], 100
        r.pixel_aspect_x = r.pixel_aspect_y = 1.0
        self.cam.matrix_world = Matrix(np.asarray(cam["matrix_world"]).tolist())

    def set_scene(self, look: dict) -> None:
        """Background, floor, sun and boxes (see appearance.scene_look); boxes go behind the person."""
        self.world_bg.inputs[0].default_value = (*look["world_color"], 1.0)
        self.world_bg.inputs[1].default_value = look["world_strength"]
        self.sun.data.energy = look["sun_strength"]
        self.sun.rotation_euler = look["sun_rotation"]
        self.floor_tex.inputs["Scale"].default_value = look["floor_scale"]
        for el, col in zip(self.floor_ramp.color_ramp.elements, look["floor_colors"]):
            el.color = (*col, 1.0)
        c = np.array(self.cam.matrix_world.translation)[:2]
        away = -c / max(np.linalg.norm(c), 1e-6)  # horizontal direction camera -> person (at the origin)
        side = np.array([-away[1], away[0]])
        for i, (ob, bsdf) in enumerate(self.boxes):
            used = i < len(look["boxes"])
            ob.hide_render = not used
            if used:
                b = look["boxes"][i]
                xy = away * (1.0 + b["offset"][1]) + side * b["offset"][0]
                ob.location = (float(xy[0]), float(xy[1]), b["size"][2] / 2)
                ob.scale = b["size"]
                ob.rotation_euler = (0.0, 0.0, b["yaw"])
                bsdf.inputs["Base Color"].default_value = (*b["color"], 1.0)

    def render(self, seed: int = 0) -> np.ndarray:
        """Render the current state; returns a BGR uint8 image (H, W, 3)."""
        if self.scene.render.engine == "CYCLES":
            self.scene.cycles.seed = int(seed) % (2**31)
        path = os.path.join(self._tmp, "frame.png")
        self.scene.render.filepath = path
        with quiet_stdout():
            self.bpy.ops.render.render(write_still=True)
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise RuntimeError(f"Blender wrote no readable image at {path}")
        return img
