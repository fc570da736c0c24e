# Two commands for a newcomer: `make run` (set up + run the whole pipeline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export PATH := $(abspath $(VENV))/bin:$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED = false
export DVC_NO_ANALYTICS = 1
export GX_ANALYTICS_ENABLED = false

.PHONY: setup init run test bench ui

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# git / dvc repositories and a default local DVC remote outside the repo, only where missing.
init: $(STAMP)
	git rev-parse --git-dir >/dev/null 2>&1 || git init -q
	test -d .dvc || dvc init -q
	dvc remote list | grep -q . || dvc remote add --local -d local "$$HOME/.cache/r2n2/dvc-remote"

run: init
	dvc repro
	@r2n2 headline all

ui: $(STAMP)
	r2n2 ui

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/relational.py
	$(PY) benchmarks/predict.py
