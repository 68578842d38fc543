# neurogshn — one-command setup, tests and the main job.
#   make pretrain   set up .venv, then run the default STL pre-training on the embedded scenes
#   make pretrain-10k  the same recipe on 10,000 generated training images (about 5x longer)
#   make pretrain-10k-sizes  then 16 more epochs from that run's checkpoint, size flips added
#   make pretrain-10k-counts  then 4 more epochs, count flips and background swaps added
#   make pretrain-10k-recipe  the four stages of the best measured checkpoint, then retrieval
#   make test       set up .venv, then ruff, then the whole pytest suite
# Everything the Makefile runs is offline with respect to model hubs.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export MPLBACKEND := Agg

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_VERSION := 2.13.0
NORSE_VERSION := 1.1.0
LAVA_NC_VERSION := 0.10.0
LAVA_DL_VERSION := 0.6.0
# The setup is keyed on the hash of everything that decides what gets installed: a second
# `make setup` with unchanged files installs nothing.
SETUP_INPUTS := requirements/base.txt requirements/interop.txt requirements/constraints.txt pyproject.toml scripts/patch_lava.py Makefile
SETUP_HASH := $(shell cat $(SETUP_INPUTS) | sha256sum | cut -c1-16)
STAMP := $(VENV)/.setup-$(SETUP_HASH)
PYTEST_ARGS ?=

.PHONY: setup test lint pretrain pretrain-10k pretrain-10k-sizes pretrain-10k-counts pretrain-10k-recipe clean-venv help

help:
	@echo "make pretrain   set up, then pretrain GSHN with STL on the embedded relational scenes"
	@echo "make pretrain-10k  the same on 10,000 training images (about 5x longer, better retrieval)"
	@echo "make pretrain-10k-sizes  continue the newest pretrain-10k run with size flips (FROM=DIR to choose)"
	@echo "make pretrain-10k-counts  continue the newest pretrain-10k-sizes run with count flips (FROM=DIR)"
	@echo "make pretrain-10k-recipe  all stages of the best checkpoint + its retrieval figures (ARGS='--set seed=1')"
	@echo "make test       set up, then ruff + the whole test suite"
	@echo "make setup      only create/refresh .venv"

setup: $(STAMP)

$(STAMP):
	@rm -f $(VENV)/.setup-*
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24"
	# torch first, from the local CPU wheel; every later install is constrained to it.
	$(PIP) install torch==$(TORCH_VERSION)
	$(PIP) install -c requirements/constraints.txt -r requirements/base.txt
	# NIR peers (snnTorch, Rockpool) that the export is checked against, spike for spike.
	$(PIP) install -c requirements/constraints.txt -r requirements/interop.txt
	# norse declares torchvision, which breaks transformers on torch 2.13 CPU: no deps.
	$(PIP) install --no-deps norse==$(NORSE_VERSION)
	# lava-nc/lava-dl declare Python<3.11, numpy<2, torch<2.4; their real runtime needs are in
	# requirements/base.txt. Then the Python 3.11 dataclass fix (see scripts/patch_lava.py).
	$(PIP) install --no-deps --ignore-requires-python lava-nc==$(LAVA_NC_VERSION) lava-dl==$(LAVA_DL_VERSION)
	$(PY) scripts/patch_lava.py
	$(PIP) install --no-deps --no-build-isolation -e .
	@if $(PY) -c "import torchvision" 2>/dev/null; then echo "torchvision got installed: refusing" >&2; exit 1; fi
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check neurogshn tests benchmarks examples scripts hardware

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

pretrain: setup
	$(PY) examples/pretrain_stl.py

pretrain-10k: setup
	$(PY) examples/pretrain_stl.py --config configs/pretrain_10k.json

# The second stage starts from a pretrain-10k checkpoint: FROM, or the newest run's final/.
pretrain-10k-sizes: setup
	@from="$${FROM:-$$(ls -d runs/pretrain_10k/*/final 2>/dev/null | sort | tail -n 1)}"; \
	if [ -z "$$from" ]; then \
		echo "no runs/pretrain_10k/*/final: run make pretrain-10k first, or pass FROM=DIR" >&2; exit 2; \
	fi; \
	echo "continuing from $$from"; \
	$(PY) examples/pretrain_stl.py --config configs/pretrain_10k_sizes.json --set "model.init_from=\"$$from\""

# The third stage starts from a pretrain-10k-sizes checkpoint: FROM, or the newest run's final/.
pretrain-10k-counts: setup
	@from="$${FROM:-$$(ls -d runs/pretrain_10k_sizes/*/final 2>/dev/null | sort | tail -n 1)}"; \
	if [ -z "$$from" ]; then \
		echo "no runs/pretrain_10k_sizes/*/final: run make pretrain-10k-sizes first, or pass FROM=DIR" >&2; exit 2; \
	fi; \
	echo "continuing from $$from"; \
	$(PY) examples/pretrain_stl.py --config configs/pretrain_10k_counts.json --set "model.init_from=\"$$from\""

# The whole chain of the best measured checkpoint (configs/recipes/gshn_10k.json, about 3 h
# on 2 CPU cores), then its retrieval evaluation; run it again after an interruption to
# continue where it stopped. ARGS go to `neurogshn recipe` (--set seed=1, --out DIR, --dry-run).
pretrain-10k-recipe: setup
	$(PY) -m neurogshn.cli recipe configs/recipes/gshn_10k.json $(ARGS)

clean-venv:
	rm -rf $(VENV)
