"""Inference API: load a trained model and turn detector keypoints + intrinsics into metric depth.

    from depth_pose.predictor import DepthPredictor
    pred = DepthPredictor.load()                      # the shipped default model (depth_pose/assets)
    out = pred.predict(keypoints_xyc, K)              # (N,17,3) pixels + confidence, K (N,3,3) or (3,3)
    out.z_m, out.sigma_m                              # (N,) metres: depth of the mid-hip point, its std
    out.status                                        # (N,) "ok", "out_of_range", ... (depth_pose.ranges)
    pred.predict(keypoints_xyc, K, up=up_from_pitch_roll(-30.0, 0.0))   # the camera's up direction, if known
    pred.predict(keypoints_xyc, K, image_wh=(1920, 1080))                  # the image size, if known

Accepted model files: ``*.safetensors`` (weights) + a sibling ``*.json`` (metadata: hyper-parameters,
normalisation, data id, metrics, ``sha256`` of the weights file), as written by :func:`export_model`; or a
Lightning ``*.ckpt`` (read with ``torch.load(weights_only=True)``; never unpickled). Weights that do not match
the JSON's ``sha256`` are refused (:class:`CorruptModelError`; a JSON without one, an older export, loads
with a warning), and so is a model whose stored keypoint normalisation does not match
:mod:`depth_pose.features`. The JSON's optional ``training_ranges`` (:mod:`depth_pose.ranges`) say what the
model knows; without them, :data:`depth_pose.ranges.DEFAULT_RANGES`.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from depth_pose.errors import InputError
from depth_pose.features import Normaliser, as_K, flip, visibility
from depth_pose.fileio import atomic_write
from depth_pose.geometry import check_intrinsics
from depth_pose.keypoints import NUM_KEYPOINTS
from depth_pose.models.module import DepthModule
from depth_pose.ranges import (
    NO_JOINTS,
    TrainingRanges,
    person_box_px,
    status_codes,
    status_names,
    widen_sigma,
)

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = ASSETS / "default_model.safetensors"
Z_RANGE = (0.2, 300.0)


class CorruptModelError(InputError):
    """A model file that cannot be used as it is: its weights do not match the sha256 in its JSON, or it is
    not a readable model file at all."""


@dataclass
class DepthPrediction:
    """Per person: depth ``z_m`` (camera z of the mid-hip point, metres), its std ``sigma_m`` (metres) and
    ``status`` (:data:`depth_pose.ranges.STATUSES`: ``ok``, ``out_of_range``, ``degenerate``,
    ``too_few_joints``, ``no_joints``; sigma is widened for every status but ``ok``; ``no_joints``: z and
    sigma NaN)."""

    z_m: np.ndarray  # (N,)
    sigma_m: np.ndarray  # (N,)
    status: np.ndarray  # (N,) str


def _writable(a: Any) -> np.ndarray:
    """float32 array torch can wrap without a warning (pandas / Arrow hand out read-only views)."""
    return np.require(np.asarray(a, dtype=np.float32), requirements="W")


def export_model(module: DepthModule, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors, weights + buffers) and its ``.json`` metadata (with the ``sha256`` of the
    weights file, checked by :meth:`DepthPredictor.load`), each atomically."""
    path = Path(path)
    meta = dict(metadata or {})
    meta["hparams"] = json.loads(json.dumps(dict(module.hparams), default=str))
    meta["normalisation"] = module.normaliser.to_dict()
    meta["format"] = "depth_pose.model/1"
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": meta["format"]}))
    meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()

    def _json(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1, default=str)
            f.write("\n")

    atomic_write(path.with_suffix(".json"), _json)
    return path


def _as_up(up: Any, n: int) -> torch.Tensor:
    """Up directions as (n, 3) float32 from (3,) or (n, 3); NaN rows stay NaN (unknown)."""
    u = torch.as_tensor(_writable(up) if not torch.is_tensor(up) else up, dtype=torch.float32)
    if u.shape == (3,):
        u = u.expand(n, 3)
    if u.shape != (n, 3):
        raise ValueError(f"up must have shape (3,) or ({n}, 3), got {tuple(u.shape)}")
    norm = u.norm(dim=1)
    bad = torch.isfinite(norm) & ((norm < 0.5) | (norm > 1.5))
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"up must be a unit vector (camera coordinates), row {i} has length {float(norm[i]):.3g}"
        )
    return u


def _as_image_wh(image_wh: Any, n: int) -> torch.Tensor:
    """Image sizes as (n, 2) float32 [width, height] pixels from (2,) or (n, 2); NaN rows = unknown."""
    wh = torch.as_tensor(
        _writable(image_wh) if not torch.is_tensor(image_wh) else image_wh, dtype=torch.float32
    )
    if wh.shape == (2,):
        wh = wh.expand(n, 2)
    if wh.shape != (n, 2):
        raise ValueError(f"image_wh must have shape (2,) or ({n}, 2), got {tuple(wh.shape)}")
    bad = torch.isfinite(wh).all(1) & (wh <= 0).any(1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"image_wh must be positive [width, height] pixels, row {i} is {wh[i].tolist()}")
    return wh


class DepthPredictor:
    """A loaded depth model (eval mode) with its normalisation; see the module docstring."""

    def __init__(self, module: DepthModule, metadata: dict[str, Any], device: str = "cpu") -> None:
        self.module = module.to(device).eval()
        self.metadata = metadata
        self.device = torch.device(device)
        self.normaliser: Normaliser = module.normaliser
        self.ranges = TrainingRanges.from_metadata(metadata, str(metadata.get("source", "model")))

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> DepthPredictor:
        """Load ``path`` (.safetensors + .json, or a Lightning .ckpt); None -> the shipped default model."""
        path = Path(path) if path is not None else DEFAULT_MODEL
        if not path.exists():
            hint = " (run `make model` to build the default model)" if path == DEFAULT_MODEL else ""
            raise FileNotFoundError(f"model file {path} does not exist{hint}")
        if path.suffix == ".ckpt":
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # any unreadable file: not a checkpoint (never torch's unpickling advice)
                raise CorruptModelError(
                    f"model file {path} is not a readable PyTorch checkpoint of plain tensors and values "
                    f"({type(e).__name__}); expected a depth_pose Lightning .ckpt or an exported .safetensors"
                ) from e
            if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
                raise CorruptModelError(
                    f"{path} is not a depth_pose Lightning checkpoint (no state_dict/hyper_parameters)"
                )
            hp = dict(ckpt["hyper_parameters"])
            state = ckpt["state_dict"]
            metadata = {
                "source": str(path),
                "hparams": hp,
                "normalisation": hp.get("features") or {},
                "epoch": ckpt.get("epoch"),
                "global_step": ckpt.get("global_step"),
            }
            if "depth_pose" in ckpt:
                metadata.update(ckpt["depth_pose"])
        elif path.suffix == ".safetensors":
            meta_path = path.with_suffix(".json")
            if not meta_path.exists():
                raise FileNotFoundError(f"{path}: metadata file {meta_path} is missing")
            with open(meta_path) as f:
                metadata = json.load(f)
            hp = metadata.get("hparams")
            if not isinstance(hp, dict):
                raise ValueError(f"{meta_path} has no 'hparams' entry: not a depth_pose model")
            data = path.read_bytes()
            expected = metadata.get("sha256")
            if expected is None:
                warnings.warn(
                    f"{meta_path} carries no sha256 of {path.name} (an older export): loaded unverified; "
                    "export it again (depth_pose.predictor.export_model) to add one",
                    stacklevel=2,
                )
            elif hashlib.sha256(data).hexdigest() != expected:
                raise CorruptModelError(
                    f"model file {path} does not match the sha256 in {meta_path.name} (corrupt or modified); "
                    "restore or re-export the model"
                )
            try:
                state = load(data)
            except SafetensorError as e:
                raise CorruptModelError(f"model file {path} is not readable safetensors: {e}") from e
            metadata["source"] = str(path)
        else:
            raise ValueError(
                f"unknown model file type {path.suffix!r} ({path}); expected .safetensors or .ckpt"
            )
        stored = metadata.get("normalisation") or hp.get("features") or {}
        if not stored:
            raise ValueError(
                f"{path}: no keypoint normalisation stored; cannot check it matches depth_pose.features"
            )
        Normaliser().check_compatible(stored, source=str(path))
        module = DepthModule(
            **{k: hp[k] for k in ("net", "features", "augment", "loss", "name", "sigma_coverage") if k in hp}
        )
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: weights do not match the model (missing {missing}, unexpected {unexpected})"
            )
        return cls(module, metadata, device=device)

    @torch.no_grad()
    def predict(
        self,
        keypoints_xyc: Any,
        K: Any,
        *,
        up: Any = None,
        image_wh: Any = None,
        flip_tta: bool = True,
        chunk: int = 65536,
    ) -> DepthPrediction:
        """Depth and its std for N people: ``keypoints_xyc`` (N, 17, 3), ``K`` (N, 3, 3) or (3, 3).

        ``up``: the camera's up direction in camera coordinates (x right, y down, z forward; a level camera's
        is ``(0, -1, 0)``; :func:`depth_pose.geometry.up_from_pitch_roll` makes it from pitch/roll), (3,) for
        all or (N, 3); NaN rows or None = unknown. Used by models trained with gravity (``uses_gravity``),
        ignored by others.

        ``image_wh``: the image size in pixels, ``[width, height]``, (2,) for all or (N, 2); NaN rows or
        None = unknown. Used by models trained with the border input (``uses_border``: how close each joint
        lies to the image frame), ignored by others.

        ``flip_tta``: average the prediction of the keypoints and of their mirror image (normalised variant
        only).

        ``status`` per person (:mod:`depth_pose.ranges`, checked against the model's training ranges):
        people with fewer than ``min_visible`` (5) confident joints use every finite joint (the detector's
        guesses, as in training; ``too_few_joints``, sigma at least 30% of z), with a single finite joint
        the training mean depth with sigma = z; ``degenerate`` and ``out_of_range`` people get a widened
        sigma too. Finite for everyone with a finite joint; people with none get NaN (``no_joints``).

        ``K`` must pass :func:`depth_pose.geometry.check_intrinsics` (ValueError naming the problem).
        """
        kp = torch.as_tensor(
            _writable(keypoints_xyc) if not torch.is_tensor(keypoints_xyc) else keypoints_xyc,
            dtype=torch.float32,
        )
        if kp.ndim == 2 and kp.shape == (NUM_KEYPOINTS, 3):
            kp = kp[None]
        if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
            raise ValueError(f"keypoints_xyc must have shape (N, {NUM_KEYPOINTS}, 3), got {tuple(kp.shape)}")
        n = kp.shape[0]
        K_in = torch.as_tensor(_writable(K) if not torch.is_tensor(K) else K, dtype=torch.float32)
        Kt = as_K(K_in, n)
        if n and (why := check_intrinsics(K_in)):
            raise ValueError(f"bad intrinsics K: {why}")
        upt = None if up is None else _as_up(up, n)
        wht = None if image_wh is None else _as_image_wh(image_wh, n)
        wht = wht if self.uses_border else None  # checked for every model, used by border models
        zs, ss, cs = [], [], []
        for i in range(0, n, chunk):
            z, s, c = self._predict_chunk(
                kp[i : i + chunk].to(self.device),
                Kt[i : i + chunk].to(self.device),
                flip_tta,
                None if upt is None else upt[i : i + chunk].to(self.device),
                None if wht is None else wht[i : i + chunk].to(self.device),
            )
            zs.append(z)
            ss.append(s)
            cs.append(c)
        if not zs:
            return DepthPrediction(np.zeros(0, np.float32), np.zeros(0, np.float32), status_names([]))
        return DepthPrediction(
            torch.cat(zs).cpu().numpy(), torch.cat(ss).cpu().numpy(), status_names(torch.cat(cs))
        )

    @property
    def uses_gravity(self) -> bool:
        """Whether this model takes the camera's up direction (``predict(..., up=...)``)."""
        return bool(self.normaliser.gravity)

    @property
    def uses_border(self) -> bool:
        """Whether this model takes the image size (``predict(..., image_wh=...)``: the border input)."""
        return bool(self.normaliser.border)

    def _predict_chunk(
        self,
        kp: torch.Tensor,
        K: torch.Tensor,
        flip_tta: bool,
        up: torch.Tensor | None = None,
        image_wh: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        norm = self.normaliser
        obs = norm.observe(kp, K, up, image_wh)
        finite = obs.finite
        min_visible = max(norm.min_visible, 3)  # fewer: a guessed skeleton (too_few_joints)
        mu, log_b = self.module(*norm.encode(obs))
        if flip_tta and norm.name == "normalised":
            mu_f, log_b_f = self.module(*norm.encode(flip(obs)))
            mu = 0.5 * (mu + mu_f)
            log_b = torch.logaddexp(log_b, log_b_f) - math.log(2.0)  # mean of the two scales
        z = mu.exp()
        sigma = self.module.sigma_m(mu, log_b)  # calibrated on the synthetic validation split
        bad_output = ~torch.isfinite(z)
        prior = self.module.z_train_mean
        prior = prior if torch.isfinite(prior) else torch.tensor(10.0, device=z.device)
        nothing = (finite.sum(1) < 2) | bad_output
        z = torch.where(nothing, prior.expand_as(z), z).clamp(*Z_RANGE)
        code = status_codes(
            self.ranges,
            n_finite=finite.sum(1),
            n_visible=visibility(kp, norm.threshold).sum(1),
            min_visible=min_visible,
            box_px=person_box_px(kp, norm.threshold, norm.min_visible),
            z=z,
            K=K,
            bad_output=bad_output,
        )
        sigma = widen_sigma(sigma, z, code)
        sigma = torch.where(nothing | ~torch.isfinite(sigma), z, sigma).clamp(min=1e-3, max=Z_RANGE[1])
        none = code == NO_JOINTS
        nan = torch.full_like(z, float("nan"))
        return torch.where(none, nan, z), torch.where(none, nan, sigma), code
