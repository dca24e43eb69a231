"""Render path of ``dp-generate``: poses -> Anny meshes -> Blender (Cycles) -> downscale trick ->
YOLO -> shards.

Efficiency (the seed's tricks): a pose is meshed once and rendered from ``samples_per_pose`` sampled cameras
(yaw, height, tilt, roll and distance from :class:`generation.camera.CameraSampler`); each view is rendered
with its exact camera pose but zoomed intrinsics framing the person (``framing.frame_person``), then
downscaled to every ``render.scales`` entry (``downscale``: labels exact under the new intrinsics, target
depth unchanged); the downscaled tiles are packed onto detector-sized canvases and labelled in batched YOLO
passes (``label``). ``render.downscale_trick=false`` is the baseline: every sample is its own render at its
own zoom, on its own canvas (the same samples in distribution, one render + one YOLO pass each).

Output: the same Parquet shards + ``manifest.json`` as the analytic path (``depth_pose.shards``), ``source =
"render"``, YOLO keypoints in ``{name}_x/_y/_c``, exact projections in ``gt_*``; only accepted detections
become rows; the manifest's ``render_stats`` counts what was filtered and why. Shard ``i`` is generated from
its own seed, so a killed run resumes by regenerating only the shards missing from the manifest.

Processes: Blender runs only in ``render.workers`` spawned worker processes (``generation.render.worker``), so
a script that builds a :class:`RenderGenerator` needs the usual ``if __name__ == "__main__":`` guard.

Scaling out: shards are independent given (seed, shard index); ``shard_range=[a, b]`` (or
``render.shard_range``) restricts a run to shards a..b-1, so a Hydra multirun (e.g. the submitit/joblib
launcher) can spread ranges over machines:
``dp-generate -m render=seed shard_range='[0,4]','[4,8]' out_dir=...`` writing into separate ``out_dir``s;
a range run never marks the set complete; ``python -m generation.merge`` joins the parts.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from depth_pose import geometry
from depth_pose import shards as shard_io
from depth_pose.keypoints import SKELETON
from depth_pose.schema import ALL_COLS
from generation.render import appearance, downscale
from generation.render.framing import blender_camera, frame_person
from generation.types import Cameras, PoseBatch


def _mesh_box(vertices: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    p = vertices @ R.T + t
    uv = (p @ K.T)[:, :2] / p[:, 2:3]
    return np.concatenate([uv.min(0), uv.max(0)])


def _select(poses: PoseBatch, idx: torch.Tensor) -> PoseBatch:
    """Rows ``idx`` of a PoseBatch."""
    il = idx.tolist()
    return PoseBatch(
        bone_names=poses.bone_names,
        rotations=poses.rotations[idx],
        joint_names=poses.joint_names,
        angles_deg=poses.angles_deg[idx],
        strategy=poses.strategy,
        preset=[poses.preset[i] for i in il],
        tags={k: v[idx] for k, v in poses.tags.items()},
    )


class RenderGenerator:
    """Everything built once (body bank, samplers, Blender workers, YOLO); :meth:`generate` makes
    labelled rows."""

    def __init__(self, cfg: DictConfig, body=None, pose_sampler=None, camera_sampler=None) -> None:
        from hydra.utils import instantiate

        from generation.render.label import Labeller
        from generation.render.worker import RenderPool

        self.cfg, self.rcfg = cfg, cfg.render
        r = self.rcfg
        self.body = body if body is not None else instantiate(cfg.body)
        self.pose_sampler = pose_sampler if pose_sampler is not None else instantiate(cfg.pose_sampling)
        self.camera_sampler = camera_sampler if camera_sampler is not None else instantiate(cfg.camera)
        self.res = int(r.resolution)
        self.scales = [float(s) for s in r.scales]
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ValueError(f"render.scales must be a non-empty list in (0, 1], got {self.scales}")
        self.trick = bool(r.downscale_trick)
        self.packing = str(r.packing) if self.trick else "single"
        self.canvas = int(r.yolo_imgsz) if self.packing == "mosaic" else self.res
        if self.packing == "mosaic" and self.res > self.canvas:
            raise ValueError(f"render.resolution {self.res} > yolo_imgsz {self.canvas}: use packing=single")
        faces, self.face_part, self.hair = appearance.segment_faces(self.body.model)
        settings = {k: r.get(k) for k in ("engine", "samples", "denoise", "max_bounces", "threads", "device")}
        self.pool = RenderPool(faces, self.face_part, self.hair, settings, workers=int(r.workers))
        self.labeller = Labeller(
            r.yolo_weights,
            imgsz=int(r.yolo_imgsz),
            conf=float(r.yolo_conf),
            device=r.get("yolo_device"),
            oks_threshold=float(r.oks_threshold),
            batch=int(r.yolo_batch),
            area_factor=float(r.area_factor),
            weights_sha256=r.get("yolo_weights_sha256"),
            trust_weights=r.get("yolo_trust_weights", False),
        )
        self.counts: Counter = Counter()
        self.timing: Counter = Counter()

    def close(self) -> None:
        self.pool.close()

    # ------------------------------------------------------------------ one chunk of poses
    def _plan(self, n_poses: int, g: torch.Generator, rng: np.random.Generator) -> dict:
        """Sample poses, bodies, cameras; mesh the poses; build the render jobs (not yet submitted)."""
        spp = int(self.cfg.samples_per_pose)
        poses = self.pose_sampler.sample(n_poses, g)
        bi = torch.randint(0, len(self.body.shapes), (n_poses,), generator=g)
        verts, _ = self.body.mesh(bi, poses)
        verts = verts.cpu().numpy().astype(np.float32)
        rep = torch.arange(n_poses).repeat_interleave(spp)
        poses_v = _select(poses, rep)
        posed_v = self.body.pose(bi[rep], poses_v)
        cams = self.camera_sampler.sample(posed_v, g)
        views, jobs = [], []
        for p in range(n_poses):
            job = {"vertices": verts[p], "look": appearance.person_look(rng), "views": []}
            for v in range(p * spp, (p + 1) * spp):
                R, t = cams.R[v].double().numpy(), cams.t[v].double().numpy()
                try:
                    K0 = frame_person(verts[p], R, t, self.res, float(self.rcfg.fill))
                except ValueError:
                    self.counts["framing_failed"] += 1
                    continue
                scene = appearance.scene_look(rng)
                targets = []  # (scale, K of the render) per sample of this view
                if self.trick:
                    render_Ks = [K0]
                    targets = [[(s, 0) for s in self.scales]]
                else:  # baseline: one render per sample, already at its zoom, on its own canvas
                    render_Ks, targets = [], []
                    for s in self.scales:
                        se, n = downscale.exact_scale(s, self.res)
                        off = ((self.res - n) // 2,) * 2
                        render_Ks.append(downscale.scaled_intrinsics(K0, se, off))
                        targets.append([(se, len(render_Ks) - 1)])
                for Kr, tg in zip(render_Ks, targets):
                    job["views"].append(
                        {
                            "camera": blender_camera(Kr, R, t, self.res, self.res),
                            "scene": scene,
                            "seed": int(rng.integers(2**31)),
                        }
                    )
                    views.append(
                        {
                            "pose": p,
                            "cam": v,
                            "K": Kr,
                            "R": R,
                            "t": t,
                            "targets": tg,
                            "job": len(jobs),
                            "img": len(job["views"]) - 1,
                        }
                    )
            # split a pose's views over several jobs so that every worker has work (the mesh is sent to each)
            # (and at most ``views_per_job`` renders per job, so that little is left to drain at the end)
            n_split = min(
                len(job["views"]),
                max(
                    1,
                    -(-int(self.rcfg.workers) // n_poses),
                    -(-len(job["views"]) // int(self.rcfg.get("views_per_job", 4))),
                ),
            )
            size = -(-len(job["views"]) // n_split) if job["views"] else 1
            first = len(jobs)
            for k in range(max(n_split, 1)):
                jobs.append({**job, "views": job["views"][k * size : (k + 1) * size]})
            for view in views:
                if view["pose"] == p:
                    view["job"], view["img"] = first + view["img"] // size, view["img"] % size
        return {
            "poses": poses,
            "poses_v": poses_v,
            "posed": posed_v,
            "cams": cams,
            "bi": bi[rep],
            "verts": verts,
            "views": views,
            "jobs": jobs,
            "scale_single": not self.trick,
        }

    def _label(self, plan: dict, images: list[list[np.ndarray | None]], rng: np.random.Generator):
        """Downscale, pack, detect, match; returns per-sample records (accepted only) and
        optional canvases."""
        tiles, meta = [], []
        for view in plan["views"]:
            img = images[view["job"]][view["img"]]
            n_samples = len(self.scales) if self.trick else 1
            if img is None:
                self.counts["render_failed"] += n_samples
                continue
            if self.trick:
                keys = list(range(len(meta), len(meta) + len(self.scales)))
                for tile in downscale.make_tiles(img, view["K"], self.scales, keys):
                    tiles.append(tile)
                    meta.append(view)
            else:  # the render already is the canvas
                tiles.append(
                    downscale.Tile(
                        img,
                        downscale.scaled_intrinsics(view["K"], 1.0, (0, 0)),
                        len(meta),
                        view["targets"][0][0],
                    )
                )
                meta.append(view)
        if self.trick:
            canvases = downscale.pack(
                tiles, self.packing, self.canvas, rng if self.packing == "single" else None
            )
        else:
            canvases = [
                downscale.Canvas(t.image, [t.key], [(0, 0)], [t.image.shape[0]], [t.K]) for t in tiles
            ]
        K_of, gt, boxes = {}, {}, {}
        for c in canvases:
            for key, K in zip(c.keys, c.K):
                view = meta[key]
                K_of[key] = K
                kp = plan["posed"].keypoints[view["cam"]].double().numpy()
                p = kp @ view["R"].T + view["t"]
                gt[key] = (p @ K.T)[:, :2] / p[:, 2:3]
                boxes[key] = _mesh_box(plan["verts"][view["pose"]], K, view["R"], view["t"])
        t0 = time.perf_counter()
        labels = self.labeller.label(canvases, gt, boxes)
        self.timing["yolo_s"] += time.perf_counter() - t0
        self.timing["yolo_images"] += len(canvases)
        for lab in labels.values():
            self.counts[lab.status] += 1
        scale_of = {t.key: t.scale for t in tiles}
        recs = [
            {
                "key": k,
                "view": meta[k],
                "K": K_of[k],
                "label": labels[k],
                "scale": scale_of[k],
                "canvas": self.canvas,
            }
            for k in sorted(labels)
        ]
        return recs, canvases

    def _columns(self, plan: dict, recs: list[dict]) -> dict:
        """Schema columns for accepted records: ``generation.pipeline.columns`` on the exact geometry
        (``generation.project.observe`` under each sample's final intrinsics), YOLO keypoints
        as detections."""
        from generation.generator import columns
        from generation.project import observe
        from generation.types import PosedBodies

        rows = torch.tensor([r["view"]["cam"] for r in recs], dtype=torch.long)
        c = plan["cams"]
        K = torch.tensor(np.stack([r["K"] for r in recs]), dtype=torch.float32)
        size = torch.tensor([r["canvas"] for r in recs], dtype=torch.long)
        cams = Cameras(
            K=K,
            R=c.R[rows],
            t=c.t[rows],
            img_w=size,
            img_h=size,
            height_m=c.height_m[rows],
            tilt_deg=c.tilt_deg[rows],
            roll_deg=c.roll_deg[rows],
            yaw_deg=c.yaw_deg[rows],
            hfov_deg=geometry.hfov_from_intrinsics(K, size.float()),
        )
        posed = PosedBodies(
            keypoints=plan["posed"].keypoints[rows], body_index=plan["posed"].body_index[rows]
        )
        obs = observe(
            posed, cams, self_occlusion=bool(self.cfg.get("project", {}).get("self_occlusion", True))
        )
        obs.det_xyc = torch.tensor(np.stack([r["label"].keypoints for r in recs]), dtype=torch.float32)
        rep = torch.tensor([r["view"]["pose"] for r in recs], dtype=torch.long)
        cols = columns(plan["poses"], posed, cams, obs, rep, self.body.shapes)
        cols["source"] = "render"
        cols["scale"] = np.array([r["scale"] for r in recs], np.float32)
        cols["det_conf"] = np.array([r["label"].det_conf for r in recs], np.float32)
        cols["oks"] = np.array([r["label"].oks for r in recs], np.float32)
        return cols

    def generate(
        self,
        n_rows: int,
        seed: int,
        images_dir: Path | None = None,
        progress: bool = False,
        sheet_path: Path | None = None,
    ) -> dict:
        """At least ``n_rows`` accepted rows (truncated to ``n_rows``) as schema columns,
        deterministic in ``seed``.

        Renders of the next chunk run in the workers while YOLO labels the current one.
        """
        from tqdm.auto import tqdm

        g = torch.Generator().manual_seed(int(seed))
        rng = np.random.default_rng(int(seed))
        chunk = max(1, int(self.rcfg.poses_per_chunk))
        parts, got, pose_base, sheet, dead, last_yield = [], 0, 0, [], 0, 0
        bar = tqdm(total=n_rows, desc="render", disable=not progress, unit="row")

        def launch():
            plan = self._plan(chunk, g, rng)
            return plan, [self.pool.submit(j) for j in plan["jobs"]]

        t_start = time.perf_counter()
        nxt = launch()
        while got < n_rows:
            plan, futures = nxt
            t0 = time.perf_counter()
            images = [self.pool.result(j, f) for j, f in zip(plan["jobs"], futures)]
            self.timing["wait_render_s"] += time.perf_counter() - t0
            self.timing["renders"] += sum(len(j["views"]) for j in plan["jobs"])
            if plan["jobs"] and all(im is None for ims in images for im in ims):
                dead += 1
                if dead >= 3:
                    raise RuntimeError(
                        "Blender render workers failed on 3 chunks in a row (see their stderr above); "
                        f"settings: engine={self.rcfg.engine}, device={self.rcfg.device}"
                    )
            else:
                dead = 0
            # overlap: Blender renders the next chunk while YOLO labels this one, unless this chunk probably
            # ends the request (judged by the last chunk's yield), so no renders are wasted at the end
            nxt = launch() if got + last_yield < n_rows else None
            recs, canvases = self._label(plan, images, rng)
            acc = [r for r in recs if r["label"].status == "accepted"]
            last_yield = len(acc)
            if images_dir is not None:
                images_dir.mkdir(parents=True, exist_ok=True)
                for i, c in enumerate(canvases):
                    import cv2

                    cv2.imwrite(str(images_dir / f"s{seed}_p{pose_base:06d}_{i:03d}.jpg"), c.image)
            if sheet_path is not None and len(sheet) < 48:
                sheet.extend(_sheet_cells(recs, canvases, plan))
            if acc:
                cols = self._columns(plan, acc)
                cols["pose_id"] = cols["pose_id"] + pose_base
                parts.append(cols)
                bar.update(min(len(acc), n_rows - got))  # the rows kept: a chunk's surplus is cut
                got += len(acc)
            pose_base += chunk
            if nxt is None and got < n_rows:
                nxt = launch()
        bar.close()
        self.timing["produce_s"] += time.perf_counter() - t_start  # excludes draining the chunk in flight
        if nxt is not None:  # drain the chunk in flight (cancel what has not started)
            for f in nxt[1]:
                f.cancel()
            for j, f in zip(nxt[0]["jobs"], nxt[1]):
                if not f.cancelled():
                    self.pool.result(j, f)
        if sheet_path is not None and sheet:
            write_contact_sheet(sheet[:48], sheet_path)
        out = {}
        for k in ALL_COLS:
            vals = [p[k] for p in parts]
            if isinstance(vals[0], str):
                out[k] = vals[0]
            else:
                out[k] = np.concatenate([np.asarray(v) for v in vals])[:n_rows]
        return out


# ---------------------------------------------------------------------- contact sheet
def _sheet_cells(recs, canvases, plan, size: int = 160) -> list[np.ndarray]:
    """Crops of labelled samples with exact (green) and YOLO (red) keypoints; status written on each."""
    import cv2

    where = {}
    for c in canvases:
        for key, off, n in zip(c.keys, c.offsets, c.sizes):
            where[key] = (c.image, off, n)
    cells = []
    for r in recs:
        img, (x, y), n = where[r["key"]]
        crop = np.ascontiguousarray(img[y : y + n, x : x + n])
        f = size / n
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
        view, K = r["view"], r["K"]
        kp = plan["posed"].keypoints[view["cam"]].double().numpy() @ view["R"].T + view["t"]
        gt = (kp @ K.T)[:, :2] / kp[:, 2:3]
        det = r["label"].keypoints
        for pts, col in ((gt, (0, 220, 0)), (det, (0, 0, 255))):
            q = (pts[:, :2] - (x, y)) * f
            for a, b in SKELETON:
                if np.isfinite(q[[a, b]]).all():
                    cv2.line(
                        crop, tuple(int(v) for v in q[a]), tuple(int(v) for v in q[b]), col, 1, cv2.LINE_AA
                    )
        lab = f"{r['label'].status[:6]} s={r['scale']:.2f} oks={r['label'].oks:.2f}"
        cv2.putText(crop, lab, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        cells.append(crop)
    return cells


def write_contact_sheet(cells: list[np.ndarray], path: Path, cols: int = 8) -> Path:
    """Grid PNG of sheet cells (exact keypoints green, YOLO red), written atomically."""
    import os

    import cv2

    h, w = cells[0].shape[:2]
    rows = math.ceil(len(cells) / cols)
    sheet = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, c in enumerate(cells):
        sheet[(i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] = c
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    cv2.imwrite(str(tmp), sheet)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------- dataset
_POSE_ID_STRIDE = 10_000_000  # pose ids of shard i start at i * stride


def build_generator(cfg: DictConfig) -> RenderGenerator:
    """A :class:`RenderGenerator` from a ``dp-generate`` config (body seed/device filled like the
    analytic path)."""
    from generation.config import instantiate_stage

    body_kwargs = {} if "seed" in cfg.body else {"seed": int(cfg.seed)}
    if "device" not in cfg.body:
        body_kwargs["device"] = "cpu"
    body = instantiate_stage("body", cfg.body, **body_kwargs)
    return RenderGenerator(
        cfg,
        body=body,
        pose_sampler=instantiate_stage("pose_sampling", cfg.pose_sampling),
        camera_sampler=instantiate_stage("camera", cfg.camera),
    )


def render_dataset(cfg: DictConfig, out_dir: str | Path) -> None:
    """Write a rendered, YOLO-labelled set into ``out_dir`` (shards + manifest); resumes a killed run.

    Same layout, dataset id, resume/overwrite rules and per-shard seeds as ``generation.pipeline.generate``;
    the manifest also holds ``render_stats`` (counts of accepted / no_detection / low_oks / render_failed /
    framing_failed samples, renders, YOLO images, seconds).
    """
    from generation.config import GenerationConfigError
    from generation.dataset import dataset_id, prepare_out_dir, shard_seed, shard_span

    out_dir = Path(out_dir)
    r = cfg.render
    for key in ("resolution", "scales", "workers", "yolo_imgsz", "oks_threshold"):
        if r.get(key) is None:
            raise GenerationConfigError(f"render.{key} is missing (use render=draft|seed|high)")
    n_total, shard_size = int(cfg.num_samples), int(cfg.shard_size)
    n_shards = math.ceil(n_total / shard_size)
    lo, hi = shard_span(cfg, n_shards)
    did = dataset_id(cfg)
    manifest = prepare_out_dir(cfg, out_dir, did, n_shards)
    manifest["source"] = "render"
    manifest.setdefault("render_stats", {"counts": {}, "seconds": 0.0})
    done = {s["index"] for s in manifest["shards"] if (out_dir / s["file"]).exists()}
    manifest["shards"] = [s for s in manifest["shards"] if s["index"] in done]
    todo = [i for i in range(lo, hi) if i not in done]
    if todo:
        gen = build_generator(cfg)
        try:
            for i in todo:
                n = min(shard_size, n_total - i * shard_size)
                t0 = time.perf_counter()
                sheet = out_dir / "contact_sheet.png" if bool(r.contact_sheet) and i == todo[0] else None
                cols = gen.generate(
                    n,
                    shard_seed(int(cfg.seed), i) % (2**62),
                    images_dir=out_dir / "images" if bool(r.keep_images) else None,
                    progress=bool(cfg.get("progress", True)),
                    sheet_path=sheet,
                )
                cols["sample_id"] = np.arange(i * shard_size, i * shard_size + n, dtype=np.int64)
                cols["pose_id"] = cols["pose_id"] + i * _POSE_ID_STRIDE
                entry = shard_io.write_shard(out_dir, i, shard_io.to_table(cols))
                manifest["shards"] = sorted([*manifest["shards"], entry], key=lambda s: s["index"])
                stats = manifest["render_stats"]
                counts = Counter(stats.get("counts", {}))
                counts.update(gen.counts)
                counts.update({k: int(v) for k, v in gen.timing.items() if k in ("renders", "yolo_images")})
                gen.counts.clear()
                gen.timing.clear()
                stats["counts"] = dict(counts)
                stats["seconds"] = float(stats.get("seconds", 0.0)) + time.perf_counter() - t0
                stats["note"] = (
                    "rows = accepted samples; no_detection / low_oks (OKS < render.oks_threshold) / "
                    "render_failed / framing_failed samples are counted, not stored"
                )
                shard_io.write_manifest(out_dir, manifest)
        finally:
            gen.close()
    complete = {s["index"] for s in manifest["shards"]} == set(range(n_shards))
    if complete and not manifest.get("complete"):
        manifest["complete"] = True
        shard_io.write_manifest(out_dir, manifest)
