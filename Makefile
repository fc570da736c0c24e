# Two commands for a newcomer: `make run` (set up + run the whole pipeline, watched in `make ui`) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
UV_VERSION := 0.13.9

export PATH := $(abspath $(VENV))/bin:$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED = false
export DVC_NO_ANALYTICS = 1
export GX_ANALYTICS_ENABLED = false

.PHONY: setup init run test bench ui lock

setup: $(STAMP)

# Exact versions with hashes from $(LOCK) (`make lock` writes it), so an install on another day or machine gets the
# bytes the committed dvc.lock was made with. torch stays out of the lock: its CPU wheel is not PyPI's file.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

# Regenerate $(LOCK) from pyproject.toml (+ the dev extra) for Python 3.11+ on every platform. Versions already in
# the lock are kept where pyproject still allows them; `make lock UPGRADE=1` takes the newest allowed instead.
# torch is excluded; its own unconditional requirements (read from the installed torch) are locked instead.
# Needs only the venv's torch, not an install from the old lock, so it also runs after a new dependency.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 uv==$(UV_VERSION)
	$(PY) -c 'import importlib.metadata as m; print(*[r for r in m.requires("torch") if ";" not in r], sep="\n")' \
		> $(VENV)/torch-requires.in
	echo torch > $(VENV)/lock-excludes.txt
	$(VENV)/bin/uv pip compile pyproject.toml $(VENV)/torch-requires.in --extra dev --excludes $(VENV)/lock-excludes.txt \
		--universal --python-version 3.11 --generate-hashes --custom-compile-command 'make lock' \
		$(if $(UPGRADE),--upgrade) -o $(LOCK)

# git / dvc repositories and a default local DVC remote outside the repo, only where missing.
init: $(STAMP)
	git rev-parse --git-dir >/dev/null 2>&1 || git init -q
	test -d .dvc || dvc init -q
	dvc remote list | grep -q . || dvc remote add --local -d local "$$HOME/.cache/r2n2/dvc-remote"

# The pipeline as one Prefect flow run (stored in .prefect/, shown by `make ui`): a task per stage and case, each
# reproduced by DVC (`dvc repro --single-item`), so dvc.lock and the cache are DVC's; `dvc repro` alone gives the
# same bytes.
run: init
	@$(PY) -m flows.dvclock  # an unreadable .dvc/tmp/rwlock left by a killed run: removed (DVC's remedy)
	r2n2 pipeline all
	@r2n2 headline all

ui: $(STAMP)
	r2n2 ui

# two pytest workers (pytest-xdist), one test file each at a time: module fixtures (a Dask cluster, a Prefect
# server per worker) are built once per worker; the 2 cores of a CI machine stay busy while a test waits.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25

bench: $(STAMP)
	$(PY) benchmarks/relational.py
	$(PY) benchmarks/predict.py
