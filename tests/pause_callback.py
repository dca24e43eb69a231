"""A Lightning callback for tests/test_resume.py: holds a training run still after an epoch (checkpoint
written, next epoch not started) so the test can kill it there. Inert unless ``DP_TEST_PAUSE_AFTER_EPOCH`` is
set, so the runs that must not pause share its config entry (a resumed run must have the killed run's
config)."""

from __future__ import annotations

import os
import time

import lightning as L


class PauseAfterEpoch(L.Callback):
    """Sleep ``DP_TEST_PAUSE_S`` seconds (default 120) once epoch ``DP_TEST_PAUSE_AFTER_EPOCH`` is over: at
    the start of the next one, after ModelCheckpoint wrote that epoch's checkpoints (at train epoch end)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = os.environ.get("DP_TEST_PAUSE_AFTER_EPOCH")
        if epoch is not None and trainer.current_epoch == int(epoch) + 1:
            time.sleep(float(os.environ.get("DP_TEST_PAUSE_S", "120")))
