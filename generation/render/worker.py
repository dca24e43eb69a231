"""Crash-isolated render workers: each is a spawned process holding one :class:`BlenderScene`.

A Blender/Cycles crash (segfault, Mesa abort) kills only its worker: the pool is rebuilt and the job retried
once, then reported as failed (``None`` images) so the run goes on and the failure is counted in the manifest.
One job = one posed mesh and its look, rendered from several views (the "pose first, many cameras" trick:
the mesh and its BVH are built once per pose; Blender's persistent data keeps it between views).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from generation.lifetime import die_with_parent

_SCENE = None


def _init(
    faces: np.ndarray,
    face_part: np.ndarray,
    hair_score: np.ndarray,
    settings: dict,
    parent_pid: int | None = None,
) -> None:
    global _SCENE
    if parent_pid is not None:
        die_with_parent(parent_pid)
    # A parent that imported bpy has Blender's script dirs (.../bpy/5.0/scripts/...) on sys.path, which spawn
    # copies here; they would shadow the real bpy module ("No module named '_bpy'").
    sys.path[:] = [p for p in sys.path if f"{os.sep}bpy{os.sep}" not in p]
    import depth_pose  # noqa: F401  (env defaults)
    from generation.render.scene import BlenderScene

    _SCENE = BlenderScene(faces, face_part, hair_score, settings)


def render_job(job: dict) -> list[np.ndarray]:
    """Render one job in this worker:
    ``{"vertices": (V, 3), "look": {...}, "views": [{"camera", "scene", "seed"}]}``.

    ``job["abort"] = True`` aborts the worker process (as a Cycles/Mesa crash would): used to test isolation.
    """
    if job.get("abort"):
        os.abort()
    _SCENE.set_person(job["vertices"], job["look"])
    out = []
    for view in job["views"]:
        _SCENE.set_camera(view["camera"])
        _SCENE.set_scene(view["scene"])
        out.append(_SCENE.render(view["seed"]))
    return out


class RenderPool:
    """``workers`` Blender processes; :meth:`submit` a job, get a Future of its list of BGR images."""

    def __init__(self, faces, face_part, hair_score, settings: dict, workers: int = 1) -> None:
        self.workers = max(1, int(workers))
        settings = dict(settings)
        if not settings.get("threads"):
            settings["threads"] = max(1, (os.cpu_count() or 1) // self.workers)
        # the workers' frame files live here, removed on close (a killed worker cannot clean up after itself)
        self.tmp_dir = settings["tmp_dir"] = tempfile.mkdtemp(prefix="dp_render_")
        self._initargs = (faces, face_part, hair_score, settings, os.getpid())
        self.failed_jobs = 0
        self._pool = None
        self._start()

    def _start(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=mp.get_context("spawn"), initializer=_init, initargs=self._initargs
        )

    def submit(self, job: dict) -> Future:
        return self._pool.submit(render_job, job)

    def result(self, job: dict, future: Future) -> list[np.ndarray | None]:
        """The images of ``job`` (its ``future`` from :meth:`submit`); on a worker crash rebuild and retry
        once."""
        for attempt in range(2):
            try:
                return future.result()
            except BrokenProcessPool:
                if getattr(self._pool, "_broken", False):
                    self._start()
                if attempt == 0:
                    future = self.submit(job)
            except Exception as exc:  # a Python error inside Blender: count it, keep going
                warnings.warn(f"render job failed: {exc!r}", RuntimeWarning, stacklevel=2)
                break
        self.failed_jobs += 1
        return [None] * len(job["views"])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
