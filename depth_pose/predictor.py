"""Inference API: load a trained model and turn detector keypoints + intrinsics into metric depth.

    from depth_pose.predictor import DepthPredictor
    pred = DepthPredictor.load()                      # the shipped default model (depth_pose/assets)
    out = pred.predict(keypoints_xyc, K)              # (N,17,3) pixels + confidence, K (N,3,3) or (3,3)
    out.z_m, out.sigma_m                              # (N,) metres: depth of the mid-hip point, its std

Accepted model files: ``*.safetensors`` (weights) + a sibling ``*.json`` (metadata: hyper-parameters,
normalisation, data id, metrics, ``sha256`` of the weights file), as written by :func:`export_model`; or a
Lightning ``*.ckpt`` (read with ``torch.load(weights_only=True)``; never unpickled). Weights that do not match
the JSON's ``sha256`` are refused (:class:`CorruptModelError`; a JSON without one, an older export, loads
with a warning), and so is a model whose stored keypoint normalisation does not match
:mod:`depth_pose.features`.
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

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = ASSETS / "default_model.safetensors"
FALLBACK_SIGMA_FACTOR = 3.0
FALLBACK_MIN_REL_SIGMA = 0.3
Z_RANGE = (0.2, 300.0)


class CorruptModelError(InputError):
    """A model file that cannot be used as it is: its weights do not match the sha256 in its JSON, or it is
    not a readable model file at all."""


@dataclass
class DepthPrediction:
    """Per person: depth ``z_m`` (camera z of the mid-hip point, metres) and its std ``sigma_m`` (metres)."""

    z_m: np.ndarray  # (N,)
    sigma_m: np.ndarray  # (N,)


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


class DepthPredictor:
    """A loaded depth model (eval mode) with its normalisation; see the module docstring."""

    def __init__(self, module: DepthModule, metadata: dict[str, Any], device: str = "cpu") -> None:
        self.module = module.to(device).eval()
        self.metadata = metadata
        self.device = torch.device(device)
        self.normaliser: Normaliser = module.normaliser

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
        self, keypoints_xyc: Any, K: Any, *, flip_tta: bool = True, chunk: int = 65536
    ) -> DepthPrediction:
        """Depth and its std for N people: ``keypoints_xyc`` (N, 17, 3), ``K`` (N, 3, 3) or (3, 3).

        ``flip_tta``: average the prediction of the keypoints and of their mirror image (normalised variant
        only).

        Always finite: people with fewer than ``min_visible`` (5) confident joints use every finite joint (the
        detector's guesses, as in training) with sigma at least 30% of z; people with no finite coordinate at
        all get the training mean depth with sigma = z.
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
        Kt = torch.as_tensor(_writable(K) if not torch.is_tensor(K) else K, dtype=torch.float32)
        Kt = as_K(Kt, n)
        if n and (why := check_intrinsics(Kt)):
            raise ValueError(f"bad intrinsics K: {why}")
        zs, ss = [], []
        for i in range(0, n, chunk):
            z, s = self._predict_chunk(
                kp[i : i + chunk].to(self.device), Kt[i : i + chunk].to(self.device), flip_tta
            )
            zs.append(z)
            ss.append(s)
        if not zs:
            return DepthPrediction(np.zeros(0, np.float32), np.zeros(0, np.float32))
        return DepthPrediction(torch.cat(zs).cpu().numpy(), torch.cat(ss).cpu().numpy())

    def _predict_chunk(
        self, kp: torch.Tensor, K: torch.Tensor, flip_tta: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        norm = self.normaliser
        obs = norm.observe(kp, K)
        finite = obs.finite
        few = visibility(kp, norm.threshold).sum(1) < max(
            norm.min_visible, 3
        )  # guessed skeleton: widen sigma
        mu, log_b = self.module(*norm.encode(obs))
        if flip_tta and norm.name == "normalised":
            mu_f, log_b_f = self.module(*norm.encode(flip(obs)))
            mu = 0.5 * (mu + mu_f)
            log_b = torch.logaddexp(log_b, log_b_f) - math.log(2.0)  # mean of the two scales
        z = mu.exp()
        sigma = self.module.sigma_m(mu, log_b)  # calibrated on the synthetic validation split
        sigma = torch.where(
            few, torch.maximum(sigma * FALLBACK_SIGMA_FACTOR, FALLBACK_MIN_REL_SIGMA * z), sigma
        )
        prior = self.module.z_train_mean
        prior = prior if torch.isfinite(prior) else torch.tensor(10.0, device=z.device)
        nothing = (finite.sum(1) < 2) | ~torch.isfinite(z)
        z = torch.where(nothing, prior.expand_as(z), z).clamp(*Z_RANGE)
        sigma = torch.where(nothing | ~torch.isfinite(sigma), z, sigma).clamp(min=1e-3, max=Z_RANGE[1])
        return z, sigma
