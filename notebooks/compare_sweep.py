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
# # Compare the models of a sweep
#
# Reads every finished job of a `dp-train -m ...` folder (e.g. `dp-train -m pose_sampling=uniform,normal,hybrid`,
# or the sweep of `experiments/ablation_pose_sampling.py`), scores each best checkpoint on one held-out
# synthetic set (own seed: other bodies, poses and cameras) and shows where they differ: per pose, per person
# size, and in the uncertainty's calibration.
# Set `SWEEP_DIR` (required), optionally `TEST_SAMPLING` (pose sampler of the held-out set, default `hybrid`),
# `N_SAMPLES` and `NB_OUT`. Open with `jupytext --to ipynb notebooks/compare_sweep.py`.

# %%
import os
from pathlib import Path

import matplotlib

import depth_pose  # noqa: F401  (project-local caches, offline)
from depth_pose.env import config_dir

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from hydra import compose, initialize_config_dir

from depth_pose.eval.io import read_synthetic_set
from depth_pose.eval.metrics import PERSON_PX_BANDS, depth_metrics, gaussian_coverage, per_band, per_group
from depth_pose.eval.sweep import read_sweep, varied
from depth_pose.keypoints import pixel_height
from depth_pose.predictor import DepthPredictor
from generation.pipeline import ensure_dataset

SWEEP_DIR = Path(os.environ["SWEEP_DIR"])
TEST_SAMPLING = os.environ.get("TEST_SAMPLING", "hybrid")
N_SAMPLES = int(os.environ.get("N_SAMPLES", "50000"))
OUT = Path(os.environ.get("NB_OUT", "outputs/notebook_sweep"))
OUT.mkdir(parents=True, exist_ok=True)
CONF = config_dir()

# %% [markdown]
# ## The jobs and what the sweep varied

# %%
jobs = read_sweep(SWEEP_DIR)
keys = varied(jobs) or list(jobs[0].overrides)[:1]
names = [" ".join(f"{k}={j.overrides.get(k)}" for k in keys) for j in jobs]
for j, n in zip(jobs, names):
    print(f"job {j.num}: {n}  ({j.epochs_done} epochs, best {j.best_ckpt.name})")

# %% [markdown]
# ## One held-out set for every model

# %%
with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
    cfg = compose(config_name="generate", overrides=[f"pose_sampling={TEST_SAMPLING}", f"num_samples={N_SAMPLES}",
                                                     "seed=99", "progress=false", "paths.root_dir=.",
                                                     f"out_dir={OUT / f'heldout_{TEST_SAMPLING}_{N_SAMPLES}'}"])
people = read_synthetic_set(ensure_dataset(cfg))
poses = people.groups["pose"]
px = pixel_height(people.keypoints)
print(len(people), f"held-out samples ({TEST_SAMPLING}, seed 99);", dict(zip(*np.unique(poses, return_counts=True))))

# %% [markdown]
# ## Scores: overall, per pose, per person size

# %%
order = ["standing", "walk", "both_walk", "uniform", "normal"]
rows, pose_err, size_err, cal = [], {}, {}, {}
for j, name in zip(jobs, names):
    pred = DepthPredictor.load(j.best_ckpt).predict(people.keypoints, people.K)
    z, s = np.asarray(pred.z_m, np.float64), np.asarray(pred.sigma_m, np.float64)
    m = depth_metrics(z, people.gt_z, s)
    rows.append((name, m))
    pose_err[name] = {k: v["median_rel"] for k, v in per_group(z, people.gt_z, s, poses, order=order).items()}
    size_err[name] = {k: v["median_rel"] for k, v in per_band(z, people.gt_z, s, PERSON_PX_BANDS, by=px).items()}
    cal[name] = np.abs(z - people.gt_z) / s
for name, m in rows:
    print(f"{name:40s} ALE {m['ale_m']:.3f} m  median {100 * m['median_rel']:.1f}%  bias {100 * m['bias_rel']:+.1f}%  "
          f"≤1σ {100 * m['cov_1sigma']:.0f}%  ≤2σ {100 * m['cov_2sigma']:.0f}%")

# %%
pose_names = list(next(iter(pose_err.values())))
grid = np.array([[pose_err[n].get(p, np.nan) for p in pose_names] for n in names]) * 100
fig, axes = plt.subplots(1, 3, figsize=(17, 0.5 * len(names) + 3.5), gridspec_kw={"width_ratios": [3, 1.4, 1.2]})
im = axes[0].imshow(grid, aspect="auto", cmap="viridis")
axes[0].set_xticks(range(len(pose_names)), pose_names, rotation=40, ha="right")
axes[0].set_yticks(range(len(names)), names)
for (r, c), v in np.ndenumerate(grid):
    axes[0].text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=7, color="w" if v < np.nanmean(grid) else "k")
fig.colorbar(im, ax=axes[0], label="median |pred/true − 1| (%)")
axes[0].set_title(f"per pose, held-out {TEST_SAMPLING} set")
bands = list(next(iter(size_err.values())))
for n in names:
    axes[1].plot(bands, [100 * (size_err[n][b] or np.nan) for b in bands], "o-", label=n)
axes[1].set_xlabel("person height (px)")
axes[1].set_ylabel("median |pred/true − 1| (%)")
axes[1].set_title("per person size")
axes[1].grid(alpha=0.3)
k = np.linspace(0, 3, 61)
for n in names:
    axes[2].plot(k, [(cal[n] <= x).mean() for x in k], label=n)
axes[2].plot(k, gaussian_coverage(k), "k--", label="Gaussian")
axes[2].set_xlabel("k (σ)")
axes[2].set_ylabel("share with |err| ≤ kσ")
axes[2].set_title("calibration")
axes[2].legend(fontsize=7)
fig.tight_layout()
fig.savefig(OUT / "sweep_comparison.png", dpi=100)
print("wrote", OUT / "sweep_comparison.png")
