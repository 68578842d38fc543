# neurogshn — one-command setup, tests and the main job.
#   make pretrain   set up .venv, then run the default STL pre-training on the embedded scenes
#   make recipe     a multi-stage recipe end to end, resumable (RECIPE=..., ARGS=...)
#   make test       set up .venv, then ruff, then the whole pytest suite
#   make lint       ruff only
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
RECIPE ?= configs/recipes/gshn_10k.json

.PHONY: setup test lint pretrain recipe clean-venv help

help:
	@echo "make pretrain   set up, then pretrain GSHN with STL on the embedded relational scenes"
	@echo "make recipe     a multi-stage recipe end to end, resumable (RECIPE=$(RECIPE); ARGS='--set seed=1')"
	@echo "make lint       ruff only"
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

# A recipe (configs/recipes/*.json: stages that each continue from the previous one's
# checkpoint, then an evaluation); run it again after an interruption to continue where it
# stopped. ARGS go to `neurogshn recipe` (--set seed=1, --out DIR, --dry-run).
recipe: setup
	$(PY) -m neurogshn.cli recipe $(RECIPE) $(ARGS)

clean-venv:
	rm -rf $(VENV)
