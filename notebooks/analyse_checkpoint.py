# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Analyse a checkpoint
#
# Loads a trained depth model (the shipped default unless `CKPT` is set), generates a fresh synthetic test set
# from bodies and a seed not used in training, and slices the error by distance, pose tag and preset.
# Open as a notebook with `jupytext --to ipynb notebooks/analyse_checkpoint.py`, or run it top to bottom
# (the test suite executes it with nbclient on a small set).

# %%
import os
from pathlib import Path

import matplotlib

import depth_pose  # noqa: F401  (project-local caches, offline)
from depth_pose.env import config_dir

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from hydra import compose, initialize_config_dir

from depth_pose.eval.metrics import depth_metrics
from depth_pose.features import K_from_columns
from depth_pose.predictor import DepthPredictor
from depth_pose.schema import INTRINSIC_COLS, KP_COLS
from depth_pose.shards import read_frame
from generation.pipeline import generate

CKPT = os.environ.get("CKPT") or None  # path to .safetensors or .ckpt; None = shipped default
N_SAMPLES = int(os.environ.get("N_SAMPLES", "20000"))
OUT = Path(os.environ.get("NB_OUT", "outputs/notebook"))
OUT.mkdir(parents=True, exist_ok=True)
CONF = config_dir()

# %% [markdown]
# ## A fresh synthetic test set (own seed, own body bank)

# %%
with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
    cfg = compose(
        config_name="generate",
        overrides=[
            f"num_samples={N_SAMPLES}",
            "seed=12345",
            f"out_dir={OUT / 'testset'}",
            "progress=false",
            "paths.root_dir=.",
        ],
    )
data_dir = generate(cfg)
df = read_frame(data_dir)
print(len(df), "samples;", df["preset"].replace("", "(none)").value_counts().head(10).to_dict())

# %% [markdown]
# ## Predict and score

# %%
predictor = DepthPredictor.load(CKPT)
kp = df[KP_COLS].to_numpy(np.float32).reshape(-1, 17, 3)
K = K_from_columns(*(torch.as_tensor(df[c].to_numpy(np.float32)) for c in INTRINSIC_COLS)).numpy()
pred = predictor.predict(kp, K)
df["z_pred"], df["sigma"] = pred.z_m, pred.sigma_m
df["abs_err"] = (df.z_pred - df.z_m).abs()
df["rel_err"] = df.abs_err / df.z_m
overall = depth_metrics(df.z_pred.to_numpy(), df.z_m.to_numpy(), df.sigma.to_numpy())
print({k: overall[k] for k in ("n", "ale_m", "rel_err", "delta_1.25", "cov_1sigma", "cov_2sigma")})

# %% [markdown]
# ## Error by pose: presets and tags (the pose-invariance question)

# %%
by_preset = df.assign(preset=df.preset.replace("", "walk/other")).groupby("preset").rel_err.agg(["median", "mean", "count"])
by_tag = {t: df[df[t]].rel_err.median() for t in ("walk", "hands_up", "spine_turn", "head_turn") if df[t].any()}
print(by_preset.sort_values("median"))
print({k: round(v, 4) for k, v in by_tag.items()})

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
by_preset["median"].sort_values().plot.barh(ax=axes[0])
axes[0].set_xlabel("median |pred/true - 1|")
bins = np.arange(0, 65, 5)
mid = 0.5 * (bins[1:] + bins[:-1])
idx = np.digitize(df.z_m, bins) - 1
axes[1].plot(mid, [df.abs_err[idx == i].mean() for i in range(len(mid))], "o-", label="ALE")
axes[1].plot(mid, [df.sigma[idx == i].mean() for i in range(len(mid))], "s--", label="mean sigma")
axes[1].set_xlabel("true depth (m)")
axes[1].set_ylabel("m")
axes[1].legend()
fig.tight_layout()
fig.savefig(OUT / "analysis.png", dpi=100)
print("wrote", OUT / "analysis.png")
