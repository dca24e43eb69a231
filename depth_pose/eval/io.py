"""Reading keypoint sets (JSONL) and image sets (folder + gt.json), writing predictions atomically.

Keypoint-set contract (one person per line, the format of ``kitti_pedestrians_dev.jsonl``): ``id`` (optional,
default ``line<N>``), ``keypoints_xyc`` 17 x [x_px, y_px, conf], ``K`` 3 x 3, optional ``gt_z_m``; other
fields are ignored. A joint with confidence 0 / NaN or NaN coordinates is unseen, not malformed. A line is
malformed when it is not a JSON object, the keypoints are not 17 x 3 numbers (null counts as NaN), ``K`` is
missing or fails :func:`depth_pose.geometry.check_intrinsics`, or ``gt_z_m`` is present but not a
positive number up to :data:`MAX_GT_Z_M` (1000 km).

Optional camera up direction per line (:mod:`depth_pose.gravity`; conventions in :mod:`depth_pose.geometry`):
``up_cam`` (3 numbers, normalised) or ``pitch_deg`` (+ optional ``roll_deg``, default 0), null = not given.
Malformed too: an ``up_cam`` that is not 3 finite numbers or has (near) zero length, an angle out of range,
``roll_deg`` without ``pitch_deg``, or ``up_cam`` and ``pitch_deg``/``roll_deg`` disagreeing by more than
:data:`depth_pose.gravity.AGREE_DEG` degrees.

Optional image size per line: ``image_wh`` ``[width, height]`` in pixels of the image the keypoints come from
(null = not given; models with the border input use it to tell joints a detector put on the image frame);
malformed when it is not two positive finite numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from depth_pose.errors import InputError
from depth_pose.fileio import atomic_write_text
from depth_pose.geometry import check_intrinsics
from depth_pose.gravity import up_from_mapping
from depth_pose.jsonvalues import as_float, json_safe, shown
from depth_pose.keypoints import NUM_KEYPOINTS


class EvalInputError(InputError):
    """Unusable arguments or files (missing file, unreadable checkpoint, no mode chosen): exit code 2."""


@dataclass
class PeopleSet:
    """People to score: ids, keypoints (N, 17, 3) px + conf, K (N, 3, 3), gt depth (N,) NaN when absent.

    ``skipped`` lists ``(where, why)`` for input left out (a line number or an image name); ``extra`` holds
    per-person fields copied to the output lines (image name, detection score, ...); ``groups`` holds label
    arrays (N,) that evaluations report errors per label of (synthetic sets: ``pose``, ``arms``), also copied
    to the output lines. ``up`` (N, 3): the camera's up direction per person (:mod:`depth_pose.gravity`), NaN
    rows = not known; None = none known. ``fields``: raw values (None when absent) of the input fields a
    reader was asked to keep (:func:`read_keypoints_jsonl` ``keep``: a camera id, a track id, ...).
    ``image_wh`` (N, 2): the image [width, height] in pixels per person, NaN rows = not known; None = none
    known.
    """

    ids: list[str]
    keypoints: np.ndarray
    K: np.ndarray
    gt_z: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    n_input: int = 0
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    up: np.ndarray | None = None
    fields: dict[str, list] = field(default_factory=dict)
    image_wh: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_gt(self) -> np.ndarray:
        return np.isfinite(self.gt_z)

    @classmethod
    def from_lists(
        cls,
        ids: list[str],
        kps: list,
        Ks: list,
        gts: list,
        skipped: list[tuple[str, str]],
        extra: list[dict] | None,
        n_input: int,
        ups: list | None = None,
        image_whs: list | None = None,
    ) -> PeopleSet:
        """Stack per-person lists (possibly empty) into a set; ``ups``: (3,) up directions, ``image_whs``:
        (2,) image sizes in pixels, NaN = unknown."""
        return cls(
            ids=ids,
            keypoints=np.asarray(kps, np.float64).reshape(-1, NUM_KEYPOINTS, 3),
            K=np.asarray(Ks, np.float64).reshape(-1, 3, 3),
            gt_z=np.asarray(gts, np.float64).reshape(-1),
            skipped=skipped,
            extra=extra if extra is not None else [{} for _ in ids],
            n_input=n_input,
            up=None if ups is None else np.asarray(ups, np.float64).reshape(-1, 3),
            image_wh=None if image_whs is None else np.asarray(image_whs, np.float64).reshape(-1, 2),
        )


def float_array(value, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Nested lists of numbers (null -> NaN) of exactly ``shape``, else ValueError naming ``what``."""
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a nested list of shape {shape}, got {type(value).__name__}")

    def conv(v):
        if isinstance(v, list):
            return [conv(x) for x in v]
        if v is None:
            return math.nan
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{what} holds a non-number {v!r}")
        return float(v)

    try:
        arr = np.asarray(conv(value), dtype=np.float64)
    except ValueError as e:
        if "non-number" in str(e):
            raise
        raise ValueError(f"{what} must have shape {shape} (ragged lists)") from None
    if arr.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {arr.shape}")
    return arr


def clean_keypoints(kp: np.ndarray) -> np.ndarray:
    """Unseen joints made explicit: non-finite coordinates -> NaN coordinates and confidence 0;
    NaN conf -> 0."""
    kp = np.array(kp, dtype=np.float64, copy=True)
    bad_xy = ~np.isfinite(kp[..., :2]).all(axis=-1)
    kp[bad_xy, :2] = np.nan
    conf = kp[..., 2]
    conf[~np.isfinite(conf) | bad_xy] = 0.0
    return kp


def parse_person(obj, default_id: str) -> tuple[str, np.ndarray, np.ndarray, float]:
    """One JSON object -> (id, keypoints (17, 3), K (3, 3), gt_z or NaN); ValueError says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object (got {type(obj).__name__})")
    if "keypoints_xyc" not in obj:
        raise ValueError("missing 'keypoints_xyc'")
    kp = clean_keypoints(float_array(obj["keypoints_xyc"], (NUM_KEYPOINTS, 3), "keypoints_xyc"))
    if (np.abs(kp[:, :2]) > MAX_KEYPOINT_PX).any():  # NaN (unseen) compares False
        raise ValueError(
            f"keypoints_xyc coordinates must be pixels within ±{MAX_KEYPOINT_PX:g}, got "
            f"{np.nanmax(np.abs(kp[:, :2])):.6g}"
        )
    if (kp[:, 2] > MAX_CONFIDENCE).any():  # another scale (percent, logits) would read every joint as "seen"
        raise ValueError(
            f"keypoints_xyc confidences must be scores in [0, 1] (up to {MAX_CONFIDENCE:g} taken as seen), "
            f"got {kp[:, 2].max():.6g} (another scale?)"
        )
    if "K" not in obj or obj["K"] is None:
        raise ValueError("missing 'K'")
    K = float_array(obj["K"], (3, 3), "K")
    why = check_intrinsics(torch.as_tensor(K))
    if why:
        raise ValueError(why)
    pid = obj.get("id", default_id)
    return str(pid), kp, K, parse_gt_depth(obj.get("gt_z_m"))


def parse_gt_depth(value, key: str = "gt_z_m") -> float:
    """A true depth as given (metres; None = unlabelled: NaN); ValueError naming ``key`` when it is no depth
    (a bool, a string, an integer too large for a float, beyond :data:`MAX_GT_Z_M`)."""
    if value is None:
        return math.nan
    z = as_float(value)
    if not (math.isfinite(z) and 0 < z <= MAX_GT_Z_M):
        raise ValueError(
            f"{key} must be a positive finite number up to {MAX_GT_Z_M:g} m, got {shown(value, 40)}"
        )
    return z


def parse_image_wh(obj: dict) -> np.ndarray | None:
    """A line's optional ``image_wh`` as (2,) [width, height] pixels, None when absent or null; ValueError
    naming the field when it is not two positive finite numbers."""
    value = obj.get("image_wh")
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) == 2
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    try:
        wh = np.asarray(value, dtype=np.float64) if ok else None
    except OverflowError:
        wh = None
    if wh is None or not (np.isfinite(wh).all() and (wh > 0).all() and (wh <= MAX_IMAGE_PX).all()):
        raise ValueError(
            f"image_wh must be [width, height] in pixels (two positive numbers up to {MAX_IMAGE_PX:g}), got "
            f"{shown(value, 40)}"
        )
    return wh


# Heatmap detectors report scores a little above 1; a joint's confidence is only compared with vis_threshold,
# so those are simply "seen". Beyond this it is another scale (percent), where every joint would read as seen.
MAX_CONFIDENCE = 1.5
MAX_KEYPOINT_PX = 1e7  # a joint this far out is no pixel (beyond it float32 products lose the person)
MAX_IMAGE_PX = 1e6  # an image side beyond a million pixels is a mistake (sums of it overflow float32)
MAX_GT_Z_M = 1e6  # a depth beyond 1000 km is not a person (its squared error would overflow float32)
MAX_LINE_CHARS = 1_000_000  # a person is ~1 KB of JSON; longer lines are refused, not parsed


def jsonl_lines(path: Path) -> list[tuple[int, str | None, str]]:
    """The non-blank lines of a JSON Lines file as (line number, text or None, why not): a UTF-8 BOM and CRLF
    endings are read normally; a line that is not UTF-8 is named (not the whole file refused); a UTF-16
    file (its byte-order mark) is refused as a whole."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvalInputError(f"cannot read keypoints file '{path}': {e}") from e
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise EvalInputError(f"keypoints file '{path}' is UTF-16 (its byte-order mark): save it as UTF-8")
    data = data.removeprefix(b"\xef\xbb\xbf")
    out = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        if not raw.strip():
            continue
        try:
            out.append((lineno, raw.decode("utf-8"), ""))
        except UnicodeDecodeError as e:
            out.append((lineno, None, f"not UTF-8 (byte {e.start + 1} of the line)"))
    return out


def check_keypoints_file(path: str | Path) -> Path:
    """``path`` as a Path when it is a regular file, else EvalInputError saying what it is instead."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "not found"
        raise EvalInputError(f"keypoints file {what}: '{path}' (JSON Lines, one person per line)")
    return path


def read_keypoints_jsonl(path: str | Path, keep: tuple[str, ...] = ()) -> PeopleSet:
    """Read a keypoint set; malformed lines land in ``skipped`` as ``("line N", why)``; blank lines are
    ignored. ``keep``: other fields whose raw values go to ``PeopleSet.fields`` (None where absent).

    Refused as a whole (:class:`EvalInputError`): a missing file, a file with no people (no lines, or none
    usable), a JSON array instead of JSON Lines, ids that repeat (named with their lines)."""
    path = check_keypoints_file(path)
    lines = jsonl_lines(path)
    if not lines:
        raise EvalInputError(f"keypoints file '{path}' has no people (no JSON lines)")
    if lines[0][1] is not None and lines[0][1].lstrip().startswith("["):
        raise EvalInputError(
            f"keypoints file '{path}' starts with '[': a JSON array, not JSON Lines "
            "(one JSON object per line)"
        )
    ids, kps, Ks, gts, ups, whs, skipped, where = [], [], [], [], [], [], [], []
    kept: dict[str, list] = {name: [] for name in keep}
    for lineno, line, why in lines:
        if line is None:
            skipped.append((f"line {lineno}", why))
            continue
        if len(line) > MAX_LINE_CHARS:
            skipped.append((f"line {lineno}", f"longer than {MAX_LINE_CHARS:,} characters"))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            skipped.append((f"line {lineno}", f"not JSON ({e.msg})"))
            continue
        except RecursionError:
            skipped.append((f"line {lineno}", "JSON nested too deeply"))
            continue
        except ValueError as e:  # an integer literal beyond Python's digit limit
            skipped.append((f"line {lineno}", f"not JSON ({e})"))
            continue
        if isinstance(obj, dict) and "id" in obj and not isinstance(obj["id"], str | int):
            skipped.append((f"line {lineno}", f"'id' must be a string or an integer, got {obj['id']!r}"))
            continue
        try:
            pid, kp, K, gt = parse_person(obj, f"line{lineno}")
            up = up_from_mapping(obj)
            wh = parse_image_wh(obj)
        except (ValueError, OverflowError, TypeError) as e:
            skipped.append((f"line {lineno}", str(e)))
            continue
        ids.append(pid)
        kps.append(kp)
        Ks.append(K)
        gts.append(gt)
        ups.append(np.full(3, np.nan) if up is None else up)
        whs.append(np.full(2, np.nan) if wh is None else wh)
        where.append(lineno)
        for name in keep:
            kept.setdefault(name, []).append(obj.get(name))
    if not ids:  # every line left out: nothing to score is an unusable file, not a partly done run
        whys = "; ".join(f"{w}: {why}" for w, why in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        raise EvalInputError(
            f"keypoints file '{path}' has no people: none of its {len(skipped)} lines is usable ({whys})"
        )
    first: dict[str, int] = {}
    dups = []
    for pid, lineno in zip(ids, where):
        if pid in first:
            dups.append(f"'{pid}' on lines {first[pid]} and {lineno}")
        first.setdefault(pid, lineno)
    if dups:
        more = f" (+{len(dups) - 3} more)" if len(dups) > 3 else ""
        raise EvalInputError(f"keypoints file '{path}' repeats ids: {', '.join(dups[:3])}{more}")
    people = PeopleSet.from_lists(ids, kps, Ks, gts, skipped, None, len(lines), ups, whs)
    people.fields = kept
    return people


def pose_labels(
    strategy: np.ndarray, preset: np.ndarray, walk: np.ndarray, both_walk: np.ndarray
) -> np.ndarray:
    """One pose name per synthetic sample: its preset (``squat``, ``kneel``, ...), else ``walk`` /
    ``both_walk`` for a gait pose, else the sampler's name (``uniform``, ``normal``: random joint angles)."""
    preset = np.asarray(preset, dtype=object)
    strategy = np.asarray(strategy, dtype=object)
    gait = np.where(
        np.asarray(both_walk, bool), "both_walk", np.where(np.asarray(walk, bool), "walk", strategy)
    )
    return np.where(preset != "", preset, gait).astype(str)


def read_synthetic_set(path: str | Path, max_rows: int | None = None, verify: bool = True) -> PeopleSet:
    """A synthetic set written by ``dp-generate`` (Parquet shards + manifest) as people to score: ids are the
    row numbers, ``groups`` holds each sample's pose name (:func:`pose_labels`) and arms (``hands up`` or
    not), so evaluations report errors per pose. ``max_rows``: the first rows only (whole shards are read).
    ``verify``: check the shards read against the manifest's sha256 (a corrupt set is refused, naming the
    shard)."""
    from depth_pose.data.device_data import load_host_set
    from depth_pose.features import K_from_columns
    from depth_pose.shards import read_table

    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise EvalInputError(
            f"dataset '{path}' is not a depth_pose dataset (no manifest.json; make one with dp-generate)"
        )
    if max_rows is not None and int(max_rows) < 1:
        raise EvalInputError(f"dataset_max_rows must be a positive number of rows or null, got {max_rows}")
    try:
        host = load_host_set(path, max_rows=max_rows, verify=verify)
        tags = read_table(  # the same shards, just verified by load_host_set: not hashed twice
            path,
            columns=["strategy", "preset", "walk", "both_walk", "hands_up"],
            max_rows=max_rows,
            verify=False,
        )
    except (OSError, ValueError, RuntimeError, KeyError, InputError) as e:
        raise EvalInputError(f"cannot read dataset '{path}': {e}") from e
    col = {c: tags.column(c).to_numpy(zero_copy_only=False) for c in tags.column_names}
    names = pose_labels(col["strategy"], col["preset"], col["walk"], col["both_walk"])
    K = K_from_columns(*host.intr.unbind(-1)).numpy()
    n = len(host)
    arms = np.where(col["hands_up"].astype(bool), "hands up", "no hands up")
    return PeopleSet(
        ids=[str(i) for i in range(n)],
        keypoints=host.kp.numpy().astype(np.float64),
        K=K.astype(np.float64),
        gt_z=host.z.numpy().astype(np.float64),
        n_input=n,
        groups={"pose": names, "arms": arms},
        image_wh=None if host.image_wh is None else host.image_wh.numpy().astype(np.float64),
    )


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in rows))
