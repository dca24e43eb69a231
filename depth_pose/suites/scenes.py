"""Scene suite (issue 16): fixed cameras watching people walk about for 30 s. How much of the single-frame
depth error does a camera win back by calibrating itself from the people it sees (:mod:`depth_pose.scene`)?

Fixed by ``conf/eval.yaml``'s ``scenes:`` block (nothing here is tuned to the results):

* Mounts (``mounts``): level at 1.5 m, CCTV 3 m / -30 deg, CCTV 6 m / -50 deg, ceiling 10 m / -70 deg (pitch
  negative = looking down), roll uniform in +-``roll_deg_max`` per scene, hfov uniform in ``hfov_deg`` per
  scene, ``img_w`` x ``img_h`` pixels. The camera stands at world (0, 0, height) looking along +Y.
* Scenes: ``n_scenes`` per mount, scene seeds 0 ... n_scenes-1 (the scene's draws come from
  ``numpy.random.default_rng([seed, scene_seed])``: scene s has the same people, hfov, activities and pose
  draws under every mount; only the camera and hence the walkable floor differ).
* People: ``n_people`` per scene drawn without replacement from a held-out body bank (``body_bank``: a saved
  :mod:`generation.bank` file, posed without Anny; null: a :class:`generation.body.BodyModel` of ``n_bodies``
  bodies, ``body_seed``, ``child_share`` children aged 5-17, built with Anny); at least ``min_children`` of
  them children (as many as the bank has), the rest uniformly from the other bodies. Each person walks for
  ``n_frames`` frames at ``fps``: straight or (share ``turn_share``) turning at a constant rate, at a constant
  speed, on the floor region where an adult's mid-hip (0.9 m above the floor) is inside the image
  (``edge_margin`` from the border) and between ``depth_range_m`` in camera depth; reaching its edge the
  person turns toward a random point of the region. ``stand_share`` of each person's frames (one block)
  standing still, ``sit_share`` (one block) sitting or crouching (one of ``sit_poses``), both blocks at random
  places of the timeline. Walking poses: :class:`generation.pose.HybridPoseSampler`'s gait cycle (legs
  only from the walk cycle, no hands up) as a continuous walk: the legs' phase advances at the person's
  cadence (``cadence_hz`` gait cycles per second) from a random start, the stride's amplitude and the upper
  body (arms, spine and head turns) are drawn once per walking block, so a time filter meets the gait's
  error as it would on a video (until session 16 every frame drew its own phase and upper body, which
  flattered the filter); standing / sitting: one jittered named pose (:func:`generation.pose.named_poses`)
  per block. Body yaw = walking direction.
* Floors (``floors``): ``flat``; ``step``: people beyond the middle (in world Y) of the walkable region stand
  ``step_m`` higher; ``ramp``: the floor rises linearly from 0 to ``ramp_m`` across the region's Y range. The
  same scenes (people, poses, detector-noise and path draws) on every floor; the walkable region is that of
  the floor at hand (on a ramp, the part raised out of view is left), so paths part where the regions do.
* Detection: exact projection (:func:`generation.project.observe`, self-occlusion), then ``noise``
  (``conf/noise/yolo_like.yaml``: joints outside the image are unseen, i.e. truncation by the frame; YOLO's
  unseen-joint pattern only, occluders kept). A person-frame is detected when at least ``min_joints`` joints
  have a confidence >= ``vis_threshold``. Tracks = the true identities.
* Scoring: person-frames in time order (frame, then person); only those after the first
  ``warmup_person_frames`` of each scene count. Methods (cumulative):

  - ``single``: the model, one frame, no up direction;
  - ``true_up``: + the camera's true up direction (a model without gravity input: = ``single``);
  - ``est_up``: + the up direction of :func:`depth_pose.scene.calibrate_scene` where it is precise enough for
    the model (:attr:`depth_pose.scene.SceneCalibration.model_up`; = ``single`` elsewhere and for a model
    without gravity input);
  - ``ground``: + ground-contact fusion (:func:`depth_pose.scene.fuse_depths` without tracks);
  - ``track``: + per-track stature scale (``fuse_depths`` with the tracks);
  - ``smooth``: + ``dp-predict``'s per-track temporal filter at its defaults
    (:class:`depth_pose.predict.smoothing.TrackSmoother`: a causal constant-velocity Kalman filter whose lag
    is held to about 0.5 s) over the ``track`` depths and their sigmas in time order: the *scene-aware*
    result, what ``dp-predict`` reports for a video.

  Reference, not cumulative: ``single_smooth``, the same filter over the ``single`` depths: what
  ``dp-predict`` reports for the same video without the scene (the baseline of the non-planar target).
  Caveats: the detector noise is independent per frame and the tracks are the true identities (no identity
  switches), so the filter gains more here than on a real video; every target's value without the filter
  (``track`` against ``single``) is reported beside it.

  Causality: the scene is calibrated on its first ``c`` person-frames (model depths without up) for each ``c``
  in ``calib_at`` (not every frame, for speed); a person-frame of rank r uses the calibration of the largest
  ``c <= r`` that succeeded (none before: the model's depths). Fusion runs on all person-frames up to the end
  of the current block of ``fusion_every_frames`` frames (and of the current calibration segment), so a
  track's scale may use up to that many frames ahead (1 s at the defaults), never more.

Metrics (``metrics.json``): per floor x mount x method: n, median |z/true - 1|, its p90, median bias of z/true
- 1 (in ``per_mount``, for ``single``, ``track`` and ``smooth``: the shares within 1 and 2 stated sigmas), of
all scored person-frames (``per_mount``) and of the standing and walking ones (``per_mount_upright``: sitting
/ crouching frames left out, as the issue's depth target says); the same medians per bin of person-frames seen
(``seen_bins``); per floor x mount x checkpoint (and on all person-frames): the calibration's |pitch|, |roll|
errors (deg) and |height/true - 1| (median, p90, max over scenes), how many scenes calibrated, found a floor,
called it planar, knew up well enough for a gravity model (``n_up_precise``: ``SceneCalibration.model_up``),
and how often the calibration's stated pitch, roll and height sigmas covered their errors (``covered``:
shares of scenes within 1 and 2 sigmas); per scene single-frame and scene-aware medians, their ratio
(``smooth`` / ``single_smooth``: both with the time filter) and ``ratio_unsmoothed`` (``track`` /
``single``), and whether each checkpoint's calibration called the floor level; the sources of the scene-aware
depths (``none``, ``fallback`` = no level floor, ``model``, ``track``, ``ground``: :func:`fuse_online`); the
targets (``targets``) with pass/fail (and the ``track`` values beside them, not judged): flat floor per mount
scene-aware median of the standing and walking person-frames <= ``scene_aware_median``; calibration at the
first checkpoint, flat floor, per mount: median over scenes of |pitch|, |roll| errors <= ``pitch_roll_deg``
and of |height/true - 1| <= ``height_rel``, every scene calibrated by then (with a height); step and ramp
floors: every scene's scene-aware median <= ``non_planar_ratio`` x its single-frame median, both with the time
filter. Samples (the JSONL): one line per track (floor, mount, scene, person) with its medians per method, or
one per scored person-frame (``per_frame_samples``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from depth_pose import geometry
from depth_pose.eval import plots
from depth_pose.eval.io import atomic_write_json, atomic_write_jsonl
from depth_pose.eval.metrics import calibration_curve, relative_abs_error
from depth_pose.eval.report import CALIB_PARAMS
from depth_pose.predict.smoothing import TrackSmoother
from depth_pose.scene import SceneCalibration, TooFewPeopleError, calibrate_scene, fuse_depths
from depth_pose.suites.invariance import noise_label
from depth_pose.suites.scene_config import SceneSuiteConfigError, check_scene_suite
from generation.types import Cameras, PosedBodies

if TYPE_CHECKING:
    from generation.body import KeypointBank

METHODS = ("single", "true_up", "est_up", "ground", "track", "smooth")  # cumulative
SCENE_AWARE = "smooth"
REFERENCE = "single_smooth"  # the time filter over the single-frame depths: dp-predict without the scene
SCORED = (*METHODS, REFERENCE)
FLAT = "flat"
WALK, STAND, SIT = 0, 1, 2
ACTIVITIES = ("walk", "stand", "sit")
HIP_REF_M = 0.9  # the mid-hip of an adult: the point kept inside the image and the depth range
POOL_SIZE = 20000  # candidate floor points of the walkable region


@dataclass
class SceneRun:
    """One scene on one floor: the camera, and the detected person-frames in time order (frame, person)."""

    mount: str
    seed: int
    floor: str
    hfov_deg: float
    pitch_deg: float
    roll_deg: float
    height_m: float
    K: np.ndarray  # (3, 3)
    up_cam: np.ndarray  # (3,) the true up direction
    keypoints: np.ndarray  # (n, 17, 3) float32
    z_true: np.ndarray  # (n,)
    track: np.ndarray  # (n,) person index 0 ... n_people-1
    frame: np.ndarray  # (n,)
    activity: np.ndarray  # (n,) WALK | STAND | SIT
    body_index: np.ndarray  # (n,)
    stature_m: np.ndarray  # (n,)
    age_years: np.ndarray  # (n,)
    n_candidates: int  # person-frames before the detection test (n_people x n_frames)
    calibs: list[tuple[int, SceneCalibration | None, str]] = field(default_factory=list)
    final: tuple[int, SceneCalibration | None, str] | None = None

    def __len__(self) -> int:
        return len(self.z_true)


# ---- the world -------------------------------------------------------------------------------------------


def load_bodies(cfg) -> KeypointBank:
    """The held-out body bank: a saved bank (``cfg.body_bank``, no Anny) or a fresh
    :class:`~generation.body.BodyModel` (``n_bodies``, ``body_seed``, ``child_share``)."""
    if cfg.get("body_bank"):
        from generation.bank import BankBody

        return BankBody(str(cfg.body_bank))
    from generation.body import BodyModel

    return BodyModel(n_bodies=int(cfg.n_bodies), seed=int(cfg.body_seed), child_share=float(cfg.child_share))


def camera_pose(pitch_deg: float, roll_deg: float, height_m: float) -> tuple[np.ndarray, np.ndarray]:
    """World->camera ``R`` (3, 3) and ``t`` (3,) of a camera at (0, 0, height) looking along +Y, pitched
    (negative = down) and rolled in the project's conventions."""
    R = geometry.camera_rotation(
        torch.tensor(math.radians(pitch_deg), dtype=torch.float64),
        torch.tensor(math.radians(roll_deg), dtype=torch.float64),
    ).numpy()
    return R, -R @ np.array([0.0, 0.0, height_m])


class Region:
    """The walkable floor of a camera: where a point ``HIP_REF_M`` above the floor (``floor(x, y)`` high;
    None: flat, height 0) is inside the image (``margin`` x size from the border) at a camera depth within
    ``depth_range``."""

    def __init__(
        self,
        K: np.ndarray,
        R: np.ndarray,
        t: np.ndarray,
        wh: tuple[int, int],
        depth_range,
        margin,
        floor=None,
    ):
        self.K, self.R, self.t, self.floor = K, R, t, floor
        self.lo = np.array([margin * wh[0], margin * wh[1]])
        self.hi = np.array([(1 - margin) * wh[0], (1 - margin) * wh[1]])
        self.zr = (float(depth_range[0]), float(depth_range[1]))

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """(n,) bool for floor points ``xy`` (n, 2)."""
        h = HIP_REF_M + (0.0 if self.floor is None else self.floor(xy[:, 0], xy[:, 1]))
        p = np.concatenate((xy, np.broadcast_to(h, (len(xy),))[:, None]), 1) @ self.R.T + self.t
        z = p[:, 2]
        uv = (p @ self.K.T)[:, :2] / np.where(np.abs(z) > 1e-9, z, 1e-9)[:, None]
        return (z >= self.zr[0]) & (z <= self.zr[1]) & (uv >= self.lo).all(1) & (uv <= self.hi).all(1)

    def pool(self, rng: np.random.Generator, n: int = POOL_SIZE) -> np.ndarray:
        """Points (m, 2) uniform over the region's area (flat floor): rays through random pixels give its
        bounding box, uniform points of the box are kept when inside."""
        uv = rng.uniform(self.lo, self.hi, (4 * n, 2))
        rays = np.concatenate((uv, np.ones((len(uv), 1))), 1) @ np.linalg.inv(self.K).T @ self.R  # world dirs
        centre = -self.R.T @ self.t
        down = rays[:, 2] < -1e-6
        s = (HIP_REF_M - centre[2]) / rays[down, 2]
        hit = centre[None, :2] + s[:, None] * rays[down, :2]
        hit = hit[self.inside(hit)]
        if len(hit) < 10:
            raise SceneSuiteConfigError(
                "the camera sees no walkable floor (check the mount, hfov_deg and depth_range_m)"
            )
        lo, hi = hit.min(0), hit.max(0)
        box = rng.uniform(lo, hi, (4 * n, 2))
        return box[self.inside(box)][:n]


def floor_height(kind: str, pool: np.ndarray, step_m: float, ramp_m: float):
    """``f(x, y) -> z`` of the floor ``kind`` (flat | step | ramp) over the walkable region ``pool``."""
    y = pool[:, 1]
    if kind == FLAT:
        return lambda x, yy: np.zeros_like(yy)
    if kind == "step":
        mid = float(np.median(y))
        return lambda x, yy: np.where(yy > mid, step_m, 0.0)
    if kind == "ramp":
        lo, hi = float(y.min()), float(y.max())
        return lambda x, yy: ramp_m * np.clip((yy - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    raise ValueError(f"unknown floor {kind!r} (flat, step, ramp)")


def timelines(rng: np.random.Generator, n_people: int, n_frames: int, stand_share: float, sit_share: float):
    """(P, T) activity codes: one block of ``stand_share`` x T standing frames and one of ``sit_share`` x T
    sitting frames per person, in random order at random places among the walking frames."""
    T = n_frames
    n_stand, n_sit = round(stand_share * T), round(sit_share * T)
    n_walk = T - n_stand - n_sit
    if n_walk < 0:
        raise ValueError(f"stand_share + sit_share must be <= 1, got {stand_share} + {sit_share}")
    out = np.full((n_people, T), WALK, dtype=np.int8)
    for p in range(n_people):
        cuts = np.sort(rng.integers(0, n_walk + 1, 2))
        walks = (cuts[0], cuts[1] - cuts[0], n_walk - cuts[1])
        blocks = [(STAND, n_stand), (SIT, n_sit)]
        if rng.random() < 0.5:
            blocks.reverse()
        seq = [WALK] * walks[0] + [blocks[0][0]] * blocks[0][1] + [WALK] * walks[1]
        seq += [blocks[1][0]] * blocks[1][1] + [WALK] * walks[2]
        out[p] = seq
    return out


def walk_paths(rng: np.random.Generator, region: Region, pool: np.ndarray, activity: np.ndarray, cfg):
    """Floor positions (P, T, 2) and headings (P, T) (radians from world +X) of people following
    ``activity``: walking at a constant speed straight or at a constant turn rate; at the region's edge a
    walker turns toward a random point of the region; standing and sitting people stay put."""
    P, T = activity.shape
    fps = float(cfg.fps)
    pos = pool[rng.integers(len(pool), size=P)].copy()
    heading = rng.uniform(0.0, 2 * math.pi, P)
    speed = rng.uniform(*cfg.walk_speed_mps, P) / fps
    turning = rng.random(P) < float(cfg.turn_share)
    rate = np.where(turning, rng.choice([-1.0, 1.0], P) * np.radians(rng.uniform(*cfg.turn_rate_dps, P)), 0.0)
    rate /= fps
    xy, hd = np.empty((P, T, 2)), np.empty((P, T))
    for f in range(T):
        if f:
            moving = activity[:, f] == WALK
            heading = heading + rate * moving
            nxt = pos + (moving * speed)[:, None] * np.stack((np.cos(heading), np.sin(heading)), 1)
            out = moving & ~region.inside(nxt)
            if out.any():
                target = pool[rng.integers(len(pool), size=int(out.sum()))]
                d = target - pos[out]
                heading[out] = np.arctan2(d[:, 1], d[:, 0])
                nxt[out] = pos[out] + speed[out, None] * np.stack(
                    (np.cos(heading[out]), np.sin(heading[out])), 1
                )
                stuck = out & ~region.inside(nxt)
                nxt[stuck] = pos[stuck]
            pos = nxt
        xy[:, f], hd[:, f] = pos, heading
    return xy, hd


def walk_sampler():
    """Walking poses: the hybrid sampler's gait cycle only (no presets, both legs in one cycle, no hands up;
    random arms, spine and head turns as in training)."""
    from generation.pose import HybridPoseSampler

    return HybridPoseSampler(p_preset=0.0, p_both_walk=0.0, p_hands_up=0.0)


def walk_blocks(activity: np.ndarray) -> np.ndarray:
    """(P, T) index of each frame's walking block within its person's timeline (0, 1, ...; -1 where not
    walking): a person who stops and walks on starts a new block."""
    walking = activity == WALK
    starts = walking & ~np.concatenate((np.zeros((len(activity), 1), bool), walking[:, :-1]), 1)
    return np.where(walking, np.cumsum(starts, 1) - 1, -1)


def gait_phase(activity: np.ndarray, fps: float, cadence_hz: np.ndarray, phase0: np.ndarray) -> np.ndarray:
    """(P, T) gait phase in [0, 1) of the left leg: ``phase0`` at the first frame, advancing by ``cadence_hz``
    (gait cycles per second, per person) over each walking frame and held while standing or sitting."""
    steps = np.cumsum(activity == WALK, 1) - (activity[:, :1] == WALK)
    return (phase0[:, None] + steps * cadence_hz[:, None] / fps) % 1.0


def pose_people(bodies, body_index: np.ndarray, activity: np.ndarray, cfg, g: torch.Generator, walker=None):
    """Keypoints (P, T, 17, 3) of the posed bodies in their own frame (mid-hip above the origin, feet on the
    floor, facing -Y) and each person's sitting pose name. Walking (``walker``, default :func:`walk_sampler`):
    a continuous gait, the legs' phase advancing at the person's cadence (uniform in ``cadence_hz``) from a
    random start, the stride's amplitude and the upper body (arms, spine and head turns) drawn once per
    walking block; one standing and one sitting/crouching pose per person for its blocks."""
    from generation.pose import named_poses

    P, T = activity.shape
    kp = torch.empty(P, T, 17, 3)
    walk = torch.as_tensor(activity == WALK)
    n_walk = int(walk.sum())
    bi = torch.as_tensor(body_index, dtype=torch.long)
    if n_walk:
        walker = walker or walk_sampler()
        block = walk_blocks(activity)
        n_blocks = int(block.max()) + 1
        upper, preset, tags = walker.sample_angles(P * n_blocks, g)
        lo, hi = walker.walk_scale
        amp = lo + (hi - lo) * torch.rand(P * n_blocks, generator=g, dtype=torch.float64)
        cad_lo, cad_hi = (float(v) for v in cfg.cadence_hz)
        cadence = cad_lo + (cad_hi - cad_lo) * torch.rand(P, generator=g, dtype=torch.float64)
        phase0 = torch.rand(P, generator=g, dtype=torch.float64)
        phase = torch.as_tensor(gait_phase(activity, float(cfg.fps), cadence.numpy(), phase0.numpy()))
        which = torch.as_tensor(np.arange(P)[:, None] * n_blocks + block)[walk]  # (n_walk,) upper-body row
        ph = phase[walk]
        legs = walker.gait_legs(ph.float(), ((ph + 0.5) % 1.0).float(), amp[which].float())
        angles = walker.with_legs(upper[which], legs)
        batch = walker.to_batch(
            angles, [preset[i] for i in which.tolist()], {k: v[which] for k, v in tags.items()}
        )
        rows = bi[:, None].expand(P, T)[walk]
        kp[walk] = bodies.pose(rows, batch).keypoints.float()
    jitter = float(cfg.jitter_deg)
    stand = bodies.pose(bi, named_poses(["standing"], P, g, jitter_deg=jitter)).keypoints.float()
    names = list(cfg.sit_poses)
    try:
        sits = named_poses(names, P, g, jitter_deg=jitter)  # rows name-major: name k, person p -> k * P + p
    except KeyError as e:
        raise SceneSuiteConfigError(f"scenes.sit_poses: {e.args[0]}") from e
    choice = torch.randint(0, len(names), (P,), generator=g)
    sit = bodies.pose(bi.repeat(len(names)), sits).keypoints.float()[choice * P + torch.arange(P)]
    act = torch.as_tensor(activity)
    kp = torch.where((act == STAND)[..., None, None], stand[:, None], kp)
    kp = torch.where((act == SIT)[..., None, None], sit[:, None], kp)
    return kp, [names[int(k)] for k in choice]


def pick_people(rng: np.random.Generator, ages: np.ndarray, n: int, min_children: int) -> np.ndarray:
    """``n`` distinct bodies of the bank: ``min_children`` children (age < 18; as many as the bank has)
    and the rest uniformly from the other bodies, in random order."""
    kids = np.flatnonzero(ages < 18)
    k = min(min_children, len(kids), n)
    chosen = rng.choice(kids, size=k, replace=False) if k else np.zeros(0, dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(ages)), chosen)
    if len(rest) < n - k:
        raise SceneSuiteConfigError(f"the body bank has {len(ages)} bodies, fewer than {n} people per scene")
    out = np.concatenate((chosen, rng.choice(rest, size=n - k, replace=False)))
    return rng.permutation(out)


def build_scene(
    cfg, bodies, mount: str, mcfg, mount_index: int, seed: int, walker=None, noise=None
) -> list[SceneRun]:
    """Scene ``seed`` under ``mount`` on every floor of ``cfg.floors`` (the same people, poses and
    detector-noise draws on each; the same path draws, see :func:`walk_paths`). ``walker`` / ``noise``: the
    walking-pose sampler and the detector noise (default: made here)."""
    from hydra.utils import instantiate

    from generation.project import observe

    noise = noise if noise is not None else instantiate(cfg.noise)

    rng = np.random.default_rng([int(cfg.seed), int(seed)])
    W, H = int(cfg.img_w), int(cfg.img_h)
    P, T = int(cfg.n_people), int(cfg.n_frames)
    # Scene content first (the same for every mount), then the camera's draws.
    hfov = float(rng.uniform(*cfg.hfov_deg))
    roll_u = float(rng.uniform(-1.0, 1.0))
    body_index = pick_people(rng, bodies.shapes.age_years.cpu().numpy(), P, int(cfg.min_children))
    activity = timelines(rng, P, T, float(cfg.stand_share), float(cfg.sit_share))
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    local, _ = pose_people(bodies, body_index, activity, cfg, g, walker)
    noise_seed = int(rng.integers(2**62))
    pitch, roll, height = float(mcfg.pitch_deg), roll_u * float(mcfg.roll_deg_max) + 0.0, float(mcfg.height_m)
    K = geometry.intrinsics_from_hfov(hfov, W, H).double().numpy()
    R, t = camera_pose(pitch, roll, height)
    path_seed = [int(cfg.seed), int(seed), mount_index]
    region = Region(K, R, t, (W, H), cfg.depth_range_m, float(cfg.edge_margin))
    pool = region.pool(np.random.default_rng([*path_seed, 0]))
    flat_kp = local.reshape(P * T, 17, 3)
    n = P * T
    cams = Cameras(
        K=torch.as_tensor(K, dtype=torch.float32).expand(n, 3, 3).clone(),
        R=torch.as_tensor(R, dtype=torch.float32).expand(n, 3, 3).clone(),
        t=torch.as_tensor(t, dtype=torch.float32).expand(n, 3).clone(),
        img_w=torch.full((n,), W, dtype=torch.long),
        img_h=torch.full((n,), H, dtype=torch.long),
        height_m=torch.full((n,), height),
        tilt_deg=torch.full((n,), pitch),
        roll_deg=torch.full((n,), roll),
        yaw_deg=torch.zeros(n),  # the people are yawed in their world keypoints
        hfov_deg=torch.full((n,), hfov),
    )
    rows = np.arange(n)
    person, frame = rows // T, rows % T
    order = np.lexsort((person, frame))  # time order: frame, then person
    thr = float(cfg.vis_threshold)
    bi_rows = np.repeat(body_index, T)
    out = []
    for floor in cfg.floors:
        # Paths on this floor (the same draws on every floor: they differ only where a raised floor takes
        # the flat floor's walkable region out of view).
        fz = floor_height(str(floor), pool, float(cfg.step_m), float(cfg.ramp_m))
        region_f = Region(K, R, t, (W, H), cfg.depth_range_m, float(cfg.edge_margin), floor=fz)
        pool_f = pool[region_f.inside(pool)]
        if len(pool_f) < 10:
            raise SceneSuiteConfigError(f"no walkable {floor} floor in view")
        xy, heading = walk_paths(np.random.default_rng([*path_seed, 1]), region_f, pool_f, activity, cfg)
        # Body yaw: facing -Y at yaw 0, so facing the heading h at yaw h + 90 deg.
        yaw = torch.as_tensor(heading + math.pi / 2, dtype=torch.float32).reshape(-1)
        c, s = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
        x, y = flat_kp[..., 0], flat_kp[..., 1]
        turned = torch.stack((c * x - s * y, s * x + c * y, flat_kp[..., 2]), -1)
        lift = fz(xy[..., 0], xy[..., 1]).reshape(-1, 1)
        place = torch.as_tensor(np.concatenate((xy.reshape(-1, 2), lift), 1), dtype=torch.float32)
        world = turned + place[:, None]
        posed = PosedBodies(keypoints=world, body_index=torch.as_tensor(bi_rows))
        obs = observe(posed, cams)
        det = noise(obs, torch.Generator().manual_seed(noise_seed), cams)
        det = det.numpy().astype(np.float32)
        z = obs.z_m.numpy().astype(np.float64)
        n_vis = ((det[..., 2] >= thr) & np.isfinite(det[..., :2]).all(-1)).sum(1)
        keep = order[(z[order] > 0.5) & (n_vis[order] >= int(cfg.min_joints))]
        out.append(
            SceneRun(
                mount=mount,
                seed=int(seed),
                floor=str(floor),
                hfov_deg=hfov,
                pitch_deg=pitch,
                roll_deg=roll,
                height_m=height,
                K=K,
                up_cam=R[:, 2].copy(),
                keypoints=np.ascontiguousarray(det[keep]),
                z_true=z[keep],
                track=person[keep],
                frame=frame[keep],
                activity=activity.reshape(-1)[keep],
                body_index=bi_rows[keep],
                stature_m=bodies.shapes.stature_m.cpu().numpy()[bi_rows[keep]].astype(np.float64),
                age_years=bodies.shapes.age_years.cpu().numpy()[bi_rows[keep]].astype(np.float64),
                n_candidates=n,
            )
        )
    return out


def build_scenes(cfg, progress: bool = True) -> tuple[list[SceneRun], dict]:
    """Every mount x scene x floor; returns the runs and what the bank holds (bodies, children).
    :class:`~depth_pose.suites.scene_config.SceneSuiteConfigError` (exit 2) for a bad ``scenes.*`` value."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    check_scene_suite(cfg)
    bodies = load_bodies(cfg)
    try:
        noise = instantiate(cfg.noise)
    except InstantiationException as e:  # a bad noise value: the error Hydra wrapped, on one line
        raise SceneSuiteConfigError(f"scenes.noise: {e.__cause__ or e}") from e
    walker = walk_sampler()
    runs: list[SceneRun] = []
    mounts = list(cfg.mounts.items())
    n_scenes = int(cfg.n_scenes)
    with tqdm(total=len(mounts) * n_scenes, desc="scenes: build", disable=not progress) as bar:
        for mi, (name, mcfg) in enumerate(mounts):
            for s in range(n_scenes):
                try:
                    built = build_scene(cfg, bodies, str(name), mcfg, mi, s, walker, noise)
                    if any(len(r) == 0 for r in built):
                        raise SceneSuiteConfigError(
                            "no person detected in any frame (check hfov_deg, depth_range_m and min_joints)"
                        )
                    runs += built
                except SceneSuiteConfigError as e:
                    raise SceneSuiteConfigError(
                        f"scenes.mounts.{name} (height_m {mcfg.height_m}, pitch_deg {mcfg.pitch_deg}), scene "
                        f"{s}: {e}"
                    ) from e
                bar.update()
    ages = bodies.shapes.age_years.cpu().numpy()
    bank = {
        "source": str(cfg.body_bank) if cfg.get("body_bank") else "BodyModel (Anny)",
        "n_bodies": len(bodies.shapes),
        "n_children": int((ages < 18).sum()),
        "children_in_scenes": int(
            sum(len(np.unique(r.track[r.age_years < 18])) for r in runs if r.floor == FLAT)
        ),
    }
    return runs, bank


# ---- calibration and fusion -------------------------------------------------------------------------------


def calibrate(
    run: SceneRun, n: int, z: np.ndarray, sigma: np.ndarray, image_wh, fps: float | None = None
) -> tuple[SceneCalibration | None, str]:
    """The scene calibrated on its first ``n`` person-frames (None and why when it cannot be); ``fps`` the
    scenes' frame rate, as dp-predict passes a video's."""
    try:
        c = calibrate_scene(run.keypoints[:n], run.K, z[:n], sigma[:n], run.track[:n], image_wh, fps=fps)
    except TooFewPeopleError as e:
        return None, str(e)
    return c, c.planarity


def segment_calibration(run: SceneRun, rank: int) -> SceneCalibration | None:
    """The calibration in effect for person-frame ``rank``: that of the latest checkpoint at or before it
    that calibrated (a failed later attempt keeps the earlier calibration)."""
    best = None
    for c, calib, _ in run.calibs:
        if c <= rank and calib is not None:
            best = calib
    return best


def up_to_model(run: SceneRun, rank: int, gravity: bool) -> bool:
    """Whether person-frame ``rank``'s calibration in effect gave the depth model (``gravity``: one with the
    up-direction input) its up direction (:attr:`~depth_pose.scene.SceneCalibration.model_up`; ``est_up`` is
    ``single`` elsewhere)."""
    calib = segment_calibration(run, rank)
    return gravity and calib is not None and calib.model_up is not None


def model_ups(run: SceneRun) -> np.ndarray:
    """(n, 3) the up direction a gravity model gets at each person-frame: the calibration in effect
    (:func:`segment_calibration`) when precise enough (:attr:`~depth_pose.scene.SceneCalibration.model_up`),
    else NaN (none)."""
    u = np.full((len(run), 3), np.nan)
    for c, calib, _ in run.calibs:
        if calib is not None:
            u[c:] = np.nan if calib.model_up is None else calib.model_up
    return u


def segments(run: SceneRun, start: int, every_frames: int) -> list[tuple[int, int]]:
    """Rank intervals [a, b) from ``start`` on, cut at each calibration checkpoint and at the first
    person-frame of every ``every_frames``-th frame."""
    n = len(run)
    cuts = {start, n}
    cuts |= {c for c, _, _ in run.calibs if start < c < n}
    if every_frames > 0:
        first = np.searchsorted(
            run.frame, np.arange(0, int(run.frame.max()) + every_frames + 1, every_frames)
        )
        cuts |= {int(r) for r in first if start < r < n}
    edges = sorted(cuts)
    return list(zip(edges[:-1], edges[1:], strict=True))


def fuse_online(run: SceneRun, z: np.ndarray, sigma: np.ndarray, cfg, image_wh) -> dict[str, np.ndarray]:
    """``ground`` and ``track`` depths of every person-frame from the calibration in effect and the
    person-frames seen up to the end of its segment; before the first checkpoint (or without a calibration)
    the model's ``z``; ``smooth``: ``track`` filtered in time (:func:`smooth_in_time`). ``source`` of the
    scene-aware depth: ``fuse_depths``'s (``model``, ``track``, ``ground``), ``fallback`` where the
    calibration in effect found no level floor (fusion returns the model depths), ``none`` where there is
    no calibration yet (warm-up, or too few people)."""
    n = len(run)
    out = {"ground": z.copy(), "track": z.copy(), "source": np.full(n, "none", dtype="<U8")}
    s_track = np.asarray(sigma, np.float64).copy()
    s_shared = np.full(n, np.nan)  # the calibration's part of s_track (none before a calibration)
    start = min(int(cfg.warmup_person_frames), n)
    for a, b in segments(run, start, int(cfg.fusion_every_frames)):
        calib = segment_calibration(run, a)
        if calib is None:
            continue
        kp = run.keypoints[:b]
        g = fuse_depths(calib, kp, z[:b], sigma[:b], None, image_wh=image_wh)
        tr = fuse_depths(calib, kp, z[:b], sigma[:b], run.track[:b], image_wh=image_wh)
        out["ground"][a:b], out["track"][a:b], out["source"][a:b] = g.z[a:b], tr.z[a:b], tr.source[a:b]
        s_track[a:b] = tr.sigma[a:b]
        if tr.sigma_shared is not None:
            s_shared[a:b] = tr.sigma_shared[a:b]
        if not calib.planar:
            out["source"][a:b] = "fallback"
    out["sigma_track"] = s_track
    out["smooth"], out["sigma_smooth"] = smooth_in_time(run, out["track"], s_track, float(cfg.fps), s_shared)
    return out


def smooth_in_time(
    run: SceneRun, z: np.ndarray, sigma: np.ndarray, fps: float, sigma_shared: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``z`` and ``sigma`` (n,) filtered per track in time order by ``dp-predict``'s default
    :class:`TrackSmoother` (``sigma_shared``: the calibration's part of ``sigma``, as dp-predict passes
    it): the filter is causal (a person-frame's value uses that person's earlier values only; the values
    themselves may come from a fusion that saw other people and frames ahead). ValueError when the
    person-frames are not in frame order or a track appears twice in a frame."""
    smoother, out = TrackSmoother(), np.asarray(z, np.float64).copy()
    s_out = np.asarray(sigma, np.float64).copy()
    if len(out) == 0:
        return out, s_out
    step = np.diff(run.frame)
    if (step < 0).any():
        raise ValueError("smooth_in_time: the person-frames are not in frame order")
    if len(np.unique(np.stack([run.frame, run.track], axis=1), axis=0)) != len(out):
        raise ValueError("smooth_in_time: a track appears twice in one frame")
    cuts = np.flatnonzero(step) + 1
    for rows in np.split(np.arange(len(out)), cuts):
        t = float(run.frame[rows[0]]) / fps
        shared = None if sigma_shared is None else sigma_shared[rows]
        out[rows], s_out[rows] = smoother(t, run.track[rows], out[rows], s_out[rows], shared)
    return out, s_out


# ---- metrics -----------------------------------------------------------------------------------------------


def err_stats(z: np.ndarray, z_true: np.ndarray, sigma: np.ndarray | None = None) -> dict:
    """n, median and p90 of |z/true - 1|, median bias of z/true - 1 (NaN-safe; None when empty); with
    ``sigma``, the shares of |z - true| within 1 and 2 sigma (68% and 95% for an honest Gaussian spread)."""
    ok = np.isfinite(z) & np.isfinite(z_true)
    rel = z[ok] / z_true[ok] - 1.0
    if not rel.size:
        return {"n": 0, "median": None, "p90": None, "bias_median": None}
    a = np.abs(rel)
    out = {
        "n": int(rel.size),
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "bias_median": float(np.median(rel)),
    }
    if sigma is not None:
        shares = calibration_curve(z, z_true, sigma, (1.0, 2.0))["observed"]  # NaN: no stated sigma
        out |= {k: v if math.isfinite(v) else None for k, v in zip(("cov_1sigma", "cov_2sigma"), shares)}
    return out


def _med(x: np.ndarray) -> float | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None


def spread(x: list[float]) -> dict:
    """median / p90 / max of finite values and how many (None when none)."""
    a = np.asarray([v for v in x if v is not None and math.isfinite(v)], np.float64)
    if not a.size:
        return {"n": 0, "median": None, "p90": None, "max": None}
    return {
        "n": int(a.size),
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
    }


def calib_errors(run: SceneRun, calib: SceneCalibration | None) -> dict:
    """|pitch|, |roll| error (deg), |height/true - 1| (None where not estimated), planar flag, whether its up
    is precise enough for a gravity model (``up_precise``: :attr:`~depth_pose.scene.SceneCalibration.
    model_up`); and each error in units of the calibration's stated sigma (``*_z``; None where either is
    unknown)."""
    if calib is None:
        return (
            {"calibrated": False, "planar": False, "up_precise": False}
            | {k: None for k in CALIB_PARAMS}
            | {f"{k}_z": None for k in CALIB_PARAMS}
        )
    h = calib.height_m
    out = {
        "calibrated": True,
        "pitch": abs(float(calib.pitch_deg) - run.pitch_deg),
        "roll": abs((float(calib.roll_deg) - run.roll_deg + 180.0) % 360.0 - 180.0),
        "height_rel": None if h is None else abs(float(h) / run.height_m - 1.0),
        "planar": bool(calib.planar),
        "up_precise": calib.model_up is not None,
    }
    against = {  # (|error|, stated sigma) in the same unit; the height's in metres
        "pitch": (out["pitch"], calib.sigma_pitch_deg),
        "roll": (out["roll"], calib.sigma_roll_deg),
        "height_rel": (None if h is None else abs(h - run.height_m), calib.sigma_height_m),
    }
    for k, (e, s) in against.items():
        ok = e is not None and s is not None and math.isfinite(s) and s > 0
        out[f"{k}_z"] = e / s if ok else None
    return out


def bin_key(lo: float, hi: float) -> str:
    """``50-100``, ``800+``: the key of a bin of person-frames seen."""
    return f"{lo:g}+" if not math.isfinite(hi) else f"{lo:g}-{hi:g}"


def summarise(
    runs: list[SceneRun],
    preds: dict[str, list[np.ndarray]],
    sources: list[np.ndarray],
    cfg,
    sigmas: dict[str, list[np.ndarray]] | None = None,
) -> dict:
    """The metrics of all runs (see the module docstring); ``preds[method][i]`` the depths of ``runs[i]``,
    ``sigmas[method][i]`` their stated spreads (for the methods that have them: their coverage)."""
    sigmas = sigmas or {}
    warm = int(cfg.warmup_person_frames)
    edges = [float(v) for v in cfg.seen_bins] + [math.inf]
    bins = list(zip(edges[:-1], edges[1:], strict=True))
    floors = list(dict.fromkeys(r.floor for r in runs))
    mounts = list(dict.fromkeys(r.mount for r in runs))
    per_mount, upright, per_seen, calibration, per_scene, src_share = {}, {}, {}, {}, {}, {}
    checkpoints = [int(c) for c in cfg.calib_at]
    for floor in floors:
        for d in (per_mount, upright, per_seen, calibration, per_scene, src_share):
            d[floor] = {}
        for mount in mounts:
            idx = [i for i, r in enumerate(runs) if r.floor == floor and r.mount == mount]
            if not idx:
                continue
            scored = [np.arange(len(runs[i])) >= warm for i in idx]
            zt = np.concatenate([runs[i].z_true[m] for i, m in zip(idx, scored, strict=True)])
            rank = np.concatenate([np.arange(len(runs[i]))[m] for i, m in zip(idx, scored, strict=True)])
            cat = {
                k: np.concatenate([preds[k][i][m] for i, m in zip(idx, scored, strict=True)]) for k in SCORED
            }
            stated = {
                k: np.concatenate([sigmas[k][i][m] for i, m in zip(idx, scored, strict=True)]) for k in sigmas
            }
            per_mount[floor][mount] = {k: err_stats(cat[k], zt, stated.get(k)) for k in SCORED}
            act = np.concatenate([runs[i].activity[m] for i, m in zip(idx, scored, strict=True)])
            up_m = act != SIT
            upright[floor][mount] = {k: err_stats(cat[k][up_m], zt[up_m]) for k in SCORED}
            per_seen[floor][mount] = {
                bin_key(lo, hi): {"n": int(((rank >= lo) & (rank < hi)).sum())}
                | {k: _med(relative_abs_error(cat[k], zt)[(rank >= lo) & (rank < hi)]) for k in SCORED}
                for lo, hi in bins
            }
            src = np.concatenate([sources[i][m] for i, m in zip(idx, scored, strict=True)])
            src_share[floor][mount] = {
                s: float((src == s).mean()) if src.size else 0.0 for s in sorted(set(src))
            }
            cal = {}
            for c in checkpoints:
                errs = [
                    calib_errors(runs[i], next((cb for cc, cb, _ in runs[i].calibs if cc == c), None))
                    for i in idx
                ]
                reached = [i for i in idx if any(cc == c for cc, _, _ in runs[i].calibs)]
                cal[str(c)] = calib_block(errs, len(reached))
            errs = [calib_errors(runs[i], runs[i].final[1] if runs[i].final else None) for i in idx]
            cal["all"] = calib_block(errs, len(idx))
            calibration[floor][mount] = cal
            rows = []
            for i, m in zip(idx, scored, strict=True):
                r = runs[i]
                e1 = _med(relative_abs_error(preds["single"][i][m], r.z_true[m]))
                es = _med(relative_abs_error(preds[SCENE_AWARE][i][m], r.z_true[m]))
                e1s = _med(relative_abs_error(preds[REFERENCE][i][m], r.z_true[m]))
                et = _med(relative_abs_error(preds["track"][i][m], r.z_true[m]))
                planar_used = [bool(cb is not None and cb.planar) for _, cb, _ in r.calibs]
                rows.append(
                    {
                        "seed": r.seed,
                        "n_scored": int(m.sum()),
                        "n_detected": len(r),
                        "single": e1,
                        SCENE_AWARE: es,
                        REFERENCE: e1s,
                        "ratio": es / e1s if e1s and es is not None else None,
                        "ratio_unsmoothed": et / e1 if e1 and et is not None else None,
                        "planar_at": planar_used,
                        "changed_share": float(np.mean(preds["track"][i][m] != preds["est_up"][i][m]))
                        if m.any()
                        else 0.0,
                    }
                )
            per_scene[floor][mount] = rows
    return {
        "per_mount": per_mount,
        "per_mount_upright": upright,
        "per_seen": per_seen,
        "calibration": calibration,
        "per_scene": per_scene,
        "scene_aware_sources": src_share,
    }


def calib_block(errs: list[dict], n_reached: int) -> dict:
    """Calibration errors of the scenes at one checkpoint: spreads over scenes and counts."""
    return {
        "n_scenes": n_reached,
        "n_calibrated": int(sum(e["calibrated"] for e in errs)),
        "n_height": int(sum(e["height_rel"] is not None for e in errs)),
        "n_planar": int(sum(e["planar"] for e in errs)),
        "n_up_precise": int(sum(e["up_precise"] for e in errs)),
        "pitch_abs_deg": spread([e["pitch"] for e in errs]),
        "roll_abs_deg": spread([e["roll"] for e in errs]),
        "height_abs_rel": spread([e["height_rel"] for e in errs]),
        "covered": {k: coverage([e[f"{k}_z"] for e in errs]) for k in CALIB_PARAMS},
    }


def coverage(z: list[float | None]) -> dict:
    """How often a stated sigma covered the error: the share of the known |error| / sigma within 1 and 2
    (68% / 95% for an honest Gaussian spread), and how many were known."""
    a = np.array([v for v in z if v is not None], np.float64)
    if not a.size:
        return {"n": 0, "1sigma": None, "2sigma": None}
    return {"n": int(a.size), "1sigma": float((a <= 1.0).mean()), "2sigma": float((a <= 2.0).mean())}


def targets(res: dict, tcfg, first_checkpoint: str) -> dict:
    """The issue's targets with the measured values and pass / fail (see the module docstring)."""
    out = {}
    flat = res["per_mount_upright"].get(FLAT, {})
    for mount, m in flat.items():
        v = m[SCENE_AWARE]["median"]
        lim = float(tcfg.scene_aware_median)
        out[f"scene_aware_median/{mount}"] = {
            "value": v,
            "limit": lim,
            "pass": v is not None and v <= lim,
            "unsmoothed": m["track"]["median"],
        }
        cal = res["calibration"][FLAT][mount].get(first_checkpoint)
        if cal is None:
            continue
        for key, name, lim in (
            ("pitch_abs_deg", "pitch_deg", float(tcfg.pitch_roll_deg)),
            ("roll_abs_deg", "roll_deg", float(tcfg.pitch_roll_deg)),
            ("height_abs_rel", "height_rel", float(tcfg.height_rel)),
        ):
            v = cal[key]["median"]
            ok = v is not None and v <= lim and cal[key]["n"] == cal["n_scenes"]
            out[f"calibration_{name}@{first_checkpoint}/{mount}"] = {
                "value": v,
                "limit": lim,
                "n": cal[key]["n"],
                "n_scenes": cal["n_scenes"],
                "pass": ok,
            }
    for floor, by_mount in res["per_scene"].items():
        if floor == FLAT:
            continue
        lim = float(tcfg.non_planar_ratio)
        for mount, rows in by_mount.items():
            ratios = [r["ratio"] for r in rows]
            ok = [r is not None and r <= lim for r in ratios]
            finite = [r for r in ratios if r is not None]
            raw = [r.get("ratio_unsmoothed") for r in rows]
            raw_finite = [r for r in raw if r is not None]
            out[f"non_planar_ratio/{floor}/{mount}"] = {
                "value": max(finite) if finite else None,
                "limit": lim,
                "n_pass": int(sum(ok)),
                "n": len(rows),
                "pass": all(ok),
                "unsmoothed": max(raw_finite) if raw_finite else None,
                "n_pass_unsmoothed": int(sum(r is not None and r <= lim for r in raw)),
            }
    return out


# ---- the suite -------------------------------------------------------------------------------------------


def run_scenes(predictor, cfg, out_jsonl: Path, plots_enabled: bool = True, progress: bool = True) -> dict:
    """Build the scenes, predict, calibrate, fuse, summarise; write the samples JSONL, metrics.json and the
    plots beside it."""
    t0 = time.perf_counter()
    gravity = bool(getattr(predictor, "uses_gravity", False))
    image_wh = (int(cfg.img_w), int(cfg.img_h))
    runs, bank = build_scenes(cfg, progress)
    t_build = time.perf_counter() - t0
    sizes = [len(r) for r in runs]
    splits = np.cumsum(sizes)[:-1]
    kp = np.concatenate([r.keypoints for r in runs]) if runs else np.zeros((0, 17, 3), np.float32)
    K = np.concatenate([np.broadcast_to(r.K, (len(r), 3, 3)) for r in runs]).astype(np.float32)

    def predict(up: np.ndarray | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        frame = {"image_wh": image_wh} if getattr(predictor, "uses_border", False) else {}
        p = predictor.predict(kp, K, up=up, **frame)
        z, s = np.asarray(p.z_m, np.float64), np.asarray(p.sigma_m, np.float64)
        return np.split(z, splits), np.split(s, splits)

    t1 = time.perf_counter()
    z1, s1 = predict(None)
    preds = {"single": z1}
    if gravity:
        preds["true_up"] = predict(np.concatenate([np.broadcast_to(r.up_cam, (len(r), 3)) for r in runs]))[0]
    else:
        preds["true_up"] = z1
    t_predict = time.perf_counter() - t1
    t2 = time.perf_counter()
    checkpoints = [int(c) for c in cfg.calib_at]
    fps = float(cfg.fps)
    for r, z, s in tqdm(list(zip(runs, z1, s1, strict=True)), desc="scenes: calibrate", disable=not progress):
        r.calibs = [(c, *calibrate(r, c, z, s, image_wh, fps)) for c in checkpoints if c <= len(r)]
        r.final = (len(r), *calibrate(r, len(r), z, s, image_wh, fps))
    t_calib = time.perf_counter() - t2
    if gravity:
        t1 = time.perf_counter()
        z_est, s_est = predict(np.concatenate([model_ups(r) for r in runs]))
        t_predict += time.perf_counter() - t1
    else:
        z_est, s_est = z1, s1
    preds["est_up"] = z_est
    t3 = time.perf_counter()
    fused = [
        fuse_online(r, z, s, cfg, image_wh)
        for r, z, s in tqdm(
            list(zip(runs, z_est, s_est, strict=True)), desc="scenes: fuse", disable=not progress
        )
    ]
    for k in ("ground", "track", "smooth"):
        preds[k] = [f[k] for f in fused]
    sources = [f["source"] for f in fused]
    preds[REFERENCE] = [
        smooth_in_time(r, z, s, float(cfg.fps))[0] for r, z, s in zip(runs, z1, s1, strict=True)
    ]
    sigmas = {"single": s1} | {k: [f[f"sigma_{k}"] for f in fused] for k in ("track", "smooth")}
    t_fuse = time.perf_counter() - t3
    res = {
        "suite": "scenes",
        "model": str((getattr(predictor, "metadata", {}) or {}).get("source", "default")),
        "uses_gravity": gravity,
        "methods": list(SCORED),
        "scene_aware": SCENE_AWARE,
        "reference": REFERENCE,
        "same_as_single": [] if gravity else ["true_up", "est_up"],
        "mounts": {k: dict(v) for k, v in cfg.mounts.items()},
        "floors": [str(f) for f in cfg.floors],
        "n_scenes": int(cfg.n_scenes),
        "n_people": int(cfg.n_people),
        "n_frames": int(cfg.n_frames),
        "fps": float(cfg.fps),
        "hfov_deg": list(cfg.hfov_deg),
        "image_wh": list(image_wh),
        "warmup_person_frames": int(cfg.warmup_person_frames),
        "calib_at": checkpoints,
        "fusion_every_frames": int(cfg.fusion_every_frames),
        "noise": noise_label(cfg.noise),
        "bodies": bank,
        "n_person_frames": int(sum(r.n_candidates for r in runs)),
        "n_detected": int(sum(sizes)),
        "n_scored": int(sum(max(n - int(cfg.warmup_person_frames), 0) for n in sizes)),
    } | summarise(runs, preds, sources, cfg, sigmas)
    first = str(checkpoints[0]) if checkpoints else "all"
    res["targets"] = targets(res, cfg.targets, first)
    res["targets_pass"] = all(t["pass"] for t in res["targets"].values())
    atomic_write_jsonl(out_jsonl, sample_rows(runs, preds, sources, cfg, gravity))
    images = []
    if plots_enabled:
        d = out_jsonl.parent
        images.append(
            plots.method_bars(
                {
                    f: {m: {k: v[k]["median"] for k in METHODS} for m, v in by.items()}
                    for f, by in res["per_mount"].items()
                },
                d / "scenes_methods.png",
                title="Scene suite: median |z/true − 1| per mount and method",
            )
        )
        images.append(
            plots.error_vs_seen(
                res["per_seen"].get(FLAT, {}),
                METHODS,
                d / "scenes_error_vs_seen.png",
                title="Scene suite (flat floor): error vs person-frames seen",
            )
        )
    res["plots"] = [str(p) for p in images]
    res["out"] = str(out_jsonl)
    res["runtime_s"] = {
        "build": round(t_build, 1),
        "predict": round(t_predict, 1),
        "calibrate": round(t_calib, 1),
        "fuse": round(t_fuse, 1),
        "total": round(time.perf_counter() - t0, 1),
    }
    atomic_write_json(out_jsonl.parent / "metrics.json", res)
    return res


def _r(x: Any, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), nd)


def sample_rows(
    runs: list[SceneRun], preds: dict, sources: list[np.ndarray], cfg, gravity: bool
) -> list[dict]:
    """One compact line per track (or per scored person-frame with ``per_frame_samples``; ``gravity``:
    whether the model takes an up direction)."""
    warm = int(cfg.warmup_person_frames)
    rows = []
    for i, r in enumerate(runs):
        m = np.arange(len(r)) >= warm
        if cfg.get("per_frame_samples"):
            for j in np.flatnonzero(m):
                rows.append(
                    {
                        "floor": r.floor,
                        "mount": r.mount,
                        "scene": r.seed,
                        "track": int(r.track[j]),
                        "frame": int(r.frame[j]),
                        "rank": int(j),
                        "activity": ACTIVITIES[int(r.activity[j])],
                        "z_true_m": _r(r.z_true[j]),
                    }
                    | {f"z_{k}_m": _r(preds[k][i][j]) for k in SCORED}
                    | {"source": str(sources[i][j]), "up_to_model": up_to_model(r, int(j), gravity)}
                )
            continue
        for tid in np.unique(r.track):
            sel = m & (r.track == tid)
            if not sel.any():
                continue
            j = int(np.flatnonzero(r.track == tid)[0])
            rows.append(
                {
                    "floor": r.floor,
                    "mount": r.mount,
                    "scene": r.seed,
                    "track": int(tid),
                    "body_index": int(r.body_index[j]),
                    "stature_m": _r(r.stature_m[j], 3),
                    "age_years": _r(r.age_years[j], 1),
                    "hfov_deg": _r(r.hfov_deg, 2),
                    "roll_deg": _r(r.roll_deg, 2),
                    "n_scored": int(sel.sum()),
                    "z_true_median_m": _r(np.median(r.z_true[sel]), 3),
                }
                | {f"err_{k}": _r(_med(relative_abs_error(preds[k][i][sel], r.z_true[sel]))) for k in SCORED}
                | {
                    f"bias_{k}": _r(_med(preds[k][i][sel] / r.z_true[sel] - 1.0))
                    for k in ("track", SCENE_AWARE)
                }
            )
    return rows
