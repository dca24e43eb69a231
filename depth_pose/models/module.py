"""LightningModule: keypoints -> (log depth, Laplace spread), trained on device-resident batches.

The batch is a dict of tensors already on the device (see :mod:`depth_pose.data`): ``kp`` (B, 17, 3) pixels +
confidence, ``intr`` (B, 5) = fx, fy, cx, cy, skew, ``z`` (B,) metres, ``special`` (B,) bool (preset /
hands-up pose, for the pose-invariance metric). Features are computed here, per batch, with
:mod:`depth_pose.features` (the one normalisation), and augmented on the device during training.

Output: ``mu`` = predicted ``log z`` and ``log_b`` = log Laplace scale of ``log z``. Loss ``laplace``: negative
log-likelihood ``|t - mu| / b + log b`` (MonoLoco-style); ``l1``: ``|t - mu|`` (the spread head is still
fitted, on the detached residual, so sigma stays meaningful). Sigma in metres: ``z * sqrt(2) * b``.
"""

from __future__ import annotations

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
    ) -> None:
        super().__init__()
        net, features, augment = _plain(net) or {}, _plain(features) or {}, _plain(augment) or {}
        optimizer, scheduler = _plain(optimizer), _plain(scheduler)
        if loss not in ("laplace", "l1"):
            raise ValueError(f"unknown loss {loss!r}; choose laplace or l1")
        self.save_hyperparameters(
            {"net": net, "features": features, "augment": augment, "loss": loss, "optimizer": optimizer,
             "scheduler": scheduler, "scheduler_interval": scheduler_interval, "name": name}
        )
        self.normaliser = Normaliser.from_dict(features) if features else Normaliser()
        self.augment = Augment(**augment)
        self.net = MLP(in_dim=self.normaliser.in_dim, out_dim=2, **net)
        # Target standardisation (log z - log_ref), set from the training split by the datamodule.
        self.register_buffer("t_mean", torch.tensor(0.0))
        self.register_buffer("t_std", torch.tensor(1.0))
        self.register_buffer("z_train_mean", torch.tensor(float("nan")))
        self._val_sums: Tensor | None = None
        self.extra_checkpoint: dict[str, Any] = {}  # e.g. resolved config + data id, saved in every checkpoint

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

    def features(self, batch: dict[str, Tensor], train: bool) -> tuple[Tensor, Tensor, Tensor]:
        K = K_from_columns(*batch["intr"].unbind(1))
        obs = self.normaliser.observe(batch["kp"], K)
        if train:
            obs = self.augment(obs, flip_ok=self.normaliser.name == "normalised")
        feats, log_ref = self.normaliser.encode(obs)
        return feats, log_ref, obs.mask

    def forward(self, feats: Tensor, log_ref: Tensor) -> tuple[Tensor, Tensor]:
        """(predicted log z, log Laplace scale of log z)."""
        out = self.net(feats)
        mu = self.t_mean + self.t_std * out[:, 0] + log_ref
        log_b = (out[:, 1] + self.t_std.log()).clamp(*LOG_B_RANGE)
        return mu, log_b

    def _loss(self, mu: Tensor, log_b: Tensor, log_z: Tensor) -> Tensor:
        # In standardised units so the learning rate does not depend on the target's spread.
        r = (log_z - mu) / self.t_std
        lb = log_b - self.t_std.log()
        if self.hparams.loss == "laplace":
            return (r.abs() * torch.exp(-lb) + lb).mean()
        return r.abs().mean() + (r.detach().abs() * torch.exp(-lb) + lb).mean()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        feats, log_ref, _ = self.features(batch, train=True)
        mu, log_b = self(feats, log_ref)
        loss = self._loss(mu, log_b, batch["z"].log())
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=feats.shape[0])
        return loss

    # --- validation / test metrics ----------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sums = None

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
        rows = [torch.ones_like(z), err, rel, (ratio < 1.25).float(), trivial]
        for lo, hi in BANDS:
            m = ((z >= lo) & (z < hi)).float()
            rows += [m, err * m]
        sp = batch["special"].float()
        rows += [sp, rel * sp, err * sp, 1 - sp, rel * (1 - sp), err * (1 - sp)]
        sums = torch.stack([r.sum() for r in rows] + [nll])
        self._val_sums = sums if self._val_sums is None else self._val_sums + sums

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._accumulate(batch)

    def on_test_epoch_start(self) -> None:
        self._val_sums = None

    def _log_metrics(self, prefix: str) -> None:
        if self._val_sums is None:
            return
        s = self.trainer.strategy.reduce(self._val_sums.clone(), reduce_op="sum")
        n = s[0].clamp_min(1)
        out = {"ale": s[1] / n, "rel": s[2] / n, "delta125": s[3] / n, "ale_trivial": s[4] / n}
        k = 5
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
        for key, v in out.items():
            self.log(f"{prefix}/{key}", v.float(), prog_bar=key == "ale", sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    # --- optimisation -------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        opt_cfg = self.hparams.optimizer or {"_target_": "torch.optim.AdamW", "lr": 1e-3}
        opt = hydra.utils.instantiate(opt_cfg, params=self.parameters())
        if not self.hparams.scheduler:
            return opt
        sched = hydra.utils.instantiate(self.hparams.scheduler, optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.hparams.scheduler_interval}}
