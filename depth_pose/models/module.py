"""LightningModule: keypoints -> (log depth, Laplace spread), trained on device-resident batches.

The batch is a dict of tensors already on the device (see :mod:`depth_pose.data`): ``kp`` (B, 17, 3) pixels +
confidence, ``intr`` (B, 5) = fx, fy, cx, cy, skew, ``z`` (B,) metres, ``special`` (B,) bool (preset /
hands-up pose, for the pose-invariance metric), ``up`` (B, 3) the camera's up direction (gravity models;
validation and test give it on every other row, so their metrics and the sigma calibration cover both),
``image_wh`` (B, 2) the image size in pixels (border models; validation and test hide it on half the rows).
Features are computed here, per batch, with :mod:`depth_pose.features` (the one normalisation), and augmented
on the device during training.

Output: ``mu`` = predicted ``log z`` and ``log_b`` = log Laplace scale of ``log z``. Loss ``laplace``:
negative log-likelihood ``|t - mu| / b + log b`` (MonoLoco-style); ``l1``: ``|t - mu|`` (the spread head is
still fitted, on the detached residual, so sigma stays meaningful). Sigma in metres:
``z * sqrt(2) * b * sigma_scale``.

Calibration: the Laplace NLL makes ``sqrt(2) b`` a Laplace std, which covers 76% of a Laplace's mass, and the
training noise is a mixture, not one Laplace. So after every validation epoch ``sigma_scale`` is set to the
``sigma_coverage`` quantile (default 0.6827, the Gaussian 1 sigma) of ``|z - z_pred| / (z_pred sqrt(2) b)`` on
the validation split, and stored with the weights: checkpoints and exported models report a std whose 1 sigma
interval holds 68% of held-out synthetic errors. Test metrics use the stored scale (an honest check).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from depth_pose.features import Augment, K_from_columns, Normaliser
from depth_pose.models.mlp import MLP

BANDS: tuple[tuple[float, float], ...] = ((0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, math.inf))
BAND_NAMES = ("0_10", "10_20", "20_30", "30_inf")
LOG_B_RANGE = (-7.0, 3.0)
# Histogram of log(|error| / unscaled sigma) for the calibration quantile (sum-reducible across DDP ranks).
_CAL_LO, _CAL_HI, _CAL_BINS = -12.0, 6.0, 3600


def _plain(x: Any) -> Any:
    return OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else x


class DepthModule(L.LightningModule):
    """MLP depth regressor with a spread head; optimiser/scheduler built from ``_target_`` configs."""

    def __init__(
        self,
        net: dict | None = None,
        features: dict | None = None,
        augment: dict | None = None,
        loss: str = "laplace",
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        scheduler_interval: str = "epoch",
        name: str = "mlp",
        sigma_coverage: float | None = 0.6827,
    ) -> None:
        super().__init__()
        net, features, augment = _plain(net) or {}, _plain(features) or {}, _plain(augment) or {}
        optimizer, scheduler = _plain(optimizer), _plain(scheduler)
        if loss not in ("laplace", "l1"):
            raise ValueError(f"unknown loss {loss!r}; choose laplace or l1")
        if sigma_coverage is not None and not 0.0 < float(sigma_coverage) < 1.0:
            raise ValueError(f"model.sigma_coverage must be in (0, 1) or null, got {sigma_coverage}")
        self.save_hyperparameters(
            {
                "net": net,
                "features": features,
                "augment": augment,
                "loss": loss,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "scheduler_interval": scheduler_interval,
                "name": name,
                "sigma_coverage": sigma_coverage,
            }
        )
        self.normaliser = Normaliser.from_dict(features) if features else Normaliser()
        self.augment = Augment(**augment)
        self.net = MLP(in_dim=self.normaliser.in_dim, out_dim=2, **net)
        # Target standardisation (log z - log_ref), set from the training split by the datamodule.
        self.register_buffer("t_mean", torch.tensor(0.0))
        self.register_buffer("t_std", torch.tensor(1.0))
        self.register_buffer("z_train_mean", torch.tensor(float("nan")))
        # Factor on sqrt(2) b that makes sigma_m calibrated on the validation split (see module docstring).
        self.register_buffer("sigma_scale", torch.tensor(1.0))
        self._val_sums: Tensor | None = None
        self._cal_hist: Tensor | None = None
        self.extra_checkpoint: dict[
            str, Any
        ] = {}  # e.g. resolved config + data id, saved in every checkpoint
        # The run's seed: every random draw of a training step is a function of (seed, epoch, batch, rank)
        # (:meth:`step_seed`), so a run resumed from a checkpoint draws what the uninterrupted run drew.
        self.augment_seed = 0

    def on_fit_start(self) -> None:
        """Standardise the target with statistics of the training split (summed over DDP ranks)."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "target_stats"):
            self.set_target_stats(*dm.target_stats(self.normaliser, self.trainer.strategy))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.extra_checkpoint:
            checkpoint["depth_pose"] = self.extra_checkpoint

    # --- core --------------------------------------------------------------------------------------
    def set_target_stats(self, t_mean: float, t_std: float, z_mean: float) -> None:
        self.t_mean.fill_(float(t_mean))
        self.t_std.fill_(max(float(t_std), 1e-3))
        self.z_train_mean.fill_(float(z_mean))

    def features(
        self, batch: dict[str, Tensor], train: bool, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        K = K_from_columns(*batch["intr"].unbind(1))
        obs = self.normaliser.observe(batch["kp"], K, batch.get("up"), batch.get("image_wh"))
        if train:
            obs = self.augment(obs, flip_ok=self.normaliser.name == "normalised", generator=generator)
        feats, log_ref = self.normaliser.encode(obs)
        return feats, log_ref, obs.mask

    def forward(self, feats: Tensor, log_ref: Tensor) -> tuple[Tensor, Tensor]:
        """(predicted log z, log Laplace scale of log z); float32 even under bf16/fp16 autocast (the head's
        output is a small correction to ``log_ref``, so it must not be rounded to 8 bits of mantissa)."""
        out = self.net(feats).float()
        mu = self.t_mean + self.t_std * out[:, 0] + log_ref
        log_b = (out[:, 1] + self.t_std.log()).clamp(*LOG_B_RANGE)
        return mu, log_b

    def sigma_m(self, mu: Tensor, log_b: Tensor) -> Tensor:
        """Calibrated std of the depth in metres, from the outputs of :meth:`forward`."""
        return mu.exp() * (math.sqrt(2.0) * self.sigma_scale) * log_b.exp()

    def _loss(self, mu: Tensor, log_b: Tensor, log_z: Tensor) -> Tensor:
        # In standardised units so the learning rate does not depend on the target's spread.
        r = (log_z - mu) / self.t_std
        lb = log_b - self.t_std.log()
        if self.hparams.loss == "laplace":
            return (r.abs() * torch.exp(-lb) + lb).mean()
        return r.abs().mean() + (r.detach().abs() * torch.exp(-lb) + lb).mean()

    def step_seed(self, batch_idx: int) -> int:
        """The seed of training step ``batch_idx`` of the current epoch on this rank (63 bits)."""
        key = f"{int(self.augment_seed)}:{self.current_epoch}:{int(batch_idx)}:{self.global_rank}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        # Augmentation and dropout draw from generators seeded per step, never from where an earlier step
        # left the global RNG: a run resumed from a checkpoint (no RNG states in it) continues bit for bit.
        seed = self.step_seed(batch_idx)
        dev = batch["kp"].device
        gen = torch.Generator(device=dev).manual_seed(seed)
        if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in self.net.modules()):
            torch.manual_seed(seed ^ 0x5DEECE66D)
        feats, log_ref, _ = self.features(batch, train=True, generator=gen)
        mu, log_b = self(feats, log_ref)
        loss = self._loss(mu, log_b, batch["z"].log())
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=feats.shape[0])
        return loss

    # --- validation / test metrics ----------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sums = self._cal_hist = None

    def _accumulate(self, batch: dict[str, Tensor]) -> None:
        feats, log_ref, _ = self.features(batch, train=False)
        mu, log_b = self(feats, log_ref)
        z = batch["z"]
        zh = mu.exp()
        err = (zh - z).abs()
        rel = err / z
        ratio = torch.maximum(zh / z, z / zh)
        nll = ((z.log() - mu).abs() * torch.exp(-log_b) + log_b).sum()
        trivial = (self.z_train_mean - z).abs()
        q = err / self.sigma_m(mu, log_b)  # error in (current) sigmas
        rows = [
            torch.ones_like(z),
            err,
            rel,
            (ratio < 1.25).float(),
            trivial,
            (q <= 1).float(),
            (q <= 2).float(),
        ]
        for lo, hi in BANDS:
            m = ((z >= lo) & (z < hi)).float()
            rows += [m, err * m]
        sp = batch["special"].float()
        rows += [sp, rel * sp, err * sp, 1 - sp, rel * (1 - sp), err * (1 - sp)]
        sums = torch.stack([r.sum() for r in rows] + [nll])
        self._val_sums = sums if self._val_sums is None else self._val_sums + sums
        log_q0 = (q * self.sigma_scale).clamp_min(1e-30).log().clamp(_CAL_LO, _CAL_HI - 1e-4)
        hist = torch.histc(log_q0.float(), bins=_CAL_BINS, min=_CAL_LO, max=_CAL_HI)
        self._cal_hist = hist if self._cal_hist is None else self._cal_hist + hist

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def on_test_epoch_start(self) -> None:
        self._val_sums = self._cal_hist = None

    def _log_metrics(self, prefix: str) -> None:
        if self._val_sums is None:
            return
        s = self.trainer.strategy.reduce(self._val_sums.clone(), reduce_op="sum")
        n = s[0].clamp_min(1)
        out = {
            "ale": s[1] / n,
            "rel": s[2] / n,
            "delta125": s[3] / n,
            "ale_trivial": s[4] / n,
            "cov1": s[5] / n,
            "cov2": s[6] / n,
        }  # share within 1 / 2 sigma (scale in use for this pass)
        k = 7
        for name in BAND_NAMES:
            out[f"ale_{name}"] = s[k + 1] / s[k].clamp_min(1) if s[k] > 0 else torch.tensor(float("nan"))
            k += 2
        sp_n, sp_rel, sp_err, st_n, st_rel, st_err = s[k : k + 6]
        out["rel_special"] = sp_rel / sp_n.clamp_min(1)
        out["rel_standard"] = st_rel / st_n.clamp_min(1)
        out["ale_special"] = sp_err / sp_n.clamp_min(1)
        out["ale_standard"] = st_err / st_n.clamp_min(1)
        # Pose invariance: relative error on unusual poses / on standing-walking ones (1 = invariant).
        if sp_n > 0 and st_n > 0:
            out["pose_invariance"] = out["rel_special"] / out["rel_standard"].clamp_min(1e-9)
        out["nll"] = s[-1] / n
        coverage = self.hparams.get("sigma_coverage")
        if prefix == "val" and coverage and self._cal_hist is not None and not self.trainer.sanity_checking:
            hist = self.trainer.strategy.reduce(self._cal_hist.clone(), reduce_op="sum")
            self.sigma_scale.fill_(histogram_quantile(hist, float(coverage), _CAL_LO, _CAL_HI))
        out["sigma_scale"] = self.sigma_scale.clone()
        for key, v in out.items():
            self.log(f"{prefix}/{key}", v.float(), prog_bar=key == "ale", sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Models saved before sigma calibration existed load with ``sigma_scale`` = 1 (their raw sigma)."""
        if "sigma_scale" not in state_dict:
            state_dict = {**state_dict, "sigma_scale": torch.tensor(1.0)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # --- optimisation -------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        opt_cfg = self.hparams.optimizer or {"_target_": "torch.optim.AdamW", "lr": 1e-3}
        opt = hydra.utils.instantiate(opt_cfg, params=self.parameters())
        if not self.hparams.scheduler:
            return opt
        sched = hydra.utils.instantiate(self.hparams.scheduler, optimizer=opt)
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": sched, "interval": self.hparams.scheduler_interval},
        }


def histogram_quantile(counts: Tensor, q: float, lo: float, hi: float) -> float:
    """``q``-quantile of values binned into ``counts`` (equal bins over ``[lo, hi]`` of log values), linearly
    interpolated inside the bin, returned as ``exp`` of the log value. 1.0 when the histogram is empty."""
    total = float(counts.sum())
    if total <= 0:
        return 1.0
    cdf = counts.double().cumsum(0) / total
    i = int(torch.searchsorted(cdf, torch.tensor([q], dtype=cdf.dtype, device=cdf.device)).item())
    i = min(i, len(counts) - 1)
    prev = float(cdf[i - 1]) if i > 0 else 0.0
    frac = (q - prev) / max(float(cdf[i]) - prev, 1e-12)
    width = (hi - lo) / len(counts)
    return math.exp(lo + (i + min(max(frac, 0.0), 1.0)) * width)
