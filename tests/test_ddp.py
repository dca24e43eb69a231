"""DDP on CPU (2 processes, gloo): each rank holds only its slice; one epoch covers the train split once.

The test runs this file as a script (Lightning's ``strategy=ddp`` relaunches ``sys.argv`` for rank 1); each
rank records the rows it trained on per epoch and its resident slice, and the test checks the union.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EPOCHS = 2


def _worker(data_dir: str, out_dir: str) -> None:
    import lightning as L

    import depth_pose  # noqa: F401
    from depth_pose.data import DeviceDataModule
    from depth_pose.models import DepthModule

    class Record(L.Callback):
        def __init__(self) -> None:
            self.rows: dict[int, list[int]] = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.rows.setdefault(trainer.current_epoch, []).extend(batch["row"].tolist())

        def on_train_end(self, trainer, pl_module) -> None:
            dm = trainer.datamodule
            out = {
                "rank": trainer.global_rank,
                "world": trainer.world_size,
                "rows": self.rows,
                "resident": len(dm.splits["train"]["row"]),
                "train_size": dm.split_sizes["train"],
                "val_ale": float(trainer.callback_metrics["val/ale"]),
                "t_mean": float(pl_module.t_mean),
                "backend": str(trainer.strategy.process_group_backend),
            }
            Path(out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(out))

    L.seed_everything(0)
    dm = DeviceDataModule(dir=data_dir, batch_size=256, max_samples=3001, val_fraction=0.1, test_fraction=0.0)
    model = DepthModule(net={"width": 32, "depth": 2})
    trainer = L.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record()],
    )
    trainer.fit(model, datamodule=dm)


@pytest.mark.slow  # 2 gloo processes + Lightning start-up
def test_ddp_two_processes_cover_train_split_once(toy_set_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, __file__, str(toy_set_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["backend"] == "gloo" for r in ranks)
    n = ranks[0]["train_size"]
    assert 2400 < n < 3001
    assert sorted(r["resident"] for r in ranks) in (
        [n // 2, n // 2],
        [n // 2, n // 2 + 1],
    )  # only its own slice
    for epoch in range(EPOCHS):
        rows = [r["rows"][str(epoch)] for r in ranks]
        assert len(set(rows[0]) & set(rows[1])) == 0
        union = rows[0] + rows[1]
        assert len(union) == n and len(set(union)) == n  # every train row exactly once per epoch
    assert ranks[0]["rows"]["0"] != ranks[0]["rows"]["1"]  # new permutation each epoch
    assert ranks[0]["t_mean"] == ranks[1]["t_mean"]  # target statistics reduced over both ranks
    assert ranks[0]["val_ale"] == ranks[1]["val_ale"]  # metrics reduced over both ranks' val slices


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
