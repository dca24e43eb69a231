# depth_pose — every job goes through the project-local venv (.venv) and project-local caches (.cache).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE := $(CURDIR)/.cache
SHARED ?= $(abspath ../shared)

export ANNY_CACHE_DIR ?= $(CACHE)/anny
export WARP_CACHE_PATH ?= $(CACHE)/warp
export WANDB_MODE ?= offline
export WANDB_DIR ?= $(CACHE)/wandb
export WANDB_CACHE_DIR ?= $(CACHE)/wandb-cache
export WANDB_CONFIG_DIR ?= $(CACHE)/wandb-config
export YOLO_CONFIG_DIR ?= $(CACHE)/ultralytics
export YOLO_OFFLINE ?= 1
export YOLO_AUTOINSTALL ?= false
export MPLCONFIGDIR ?= $(CACHE)/matplotlib
export SQLALCHEMY_SILENCE_UBER_WARNING ?= 1
export PYTHONUNBUFFERED ?= 1

.PHONY: venv demo test test-fast model lint bench clean-cache

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (bpy 5.0.1 needs Python 3.11)"; exit 2; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

# Main job end to end on the embedded defaults: generate -> train -> evaluate -> predict.
demo: $(STAMP)
	$(BIN)/python -m depth_pose.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests -m "not slow and not render"

# Retrain the default model shipped in depth_pose/assets (see depth_pose/assets/default_model.json).
model: $(STAMP)
	$(BIN)/python -m depth_pose.make_default_model

# The house rules: ruff (lint + format, line length enforced), the import-layer contracts (pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean-cache:
	rm -rf $(CACHE)
