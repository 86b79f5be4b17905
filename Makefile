# livenb developer tasks. Run `make` or `make help` for the list.
#
# Everything runs from a project-local virtual environment in $(VENV); nothing is
# installed or registered outside it. Installs are tracked by stamp files inside the
# venv that depend on pyproject.toml, so re-runs are fast and a change to the
# dependencies triggers a reinstall.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --warn-undefined-variables

# Interpreter used to create the venv (must be >= 3.11), e.g. `make test PYTHON=python3.12`.
PYTHON ?= python3
VENV ?= .venv
# Extra arguments, e.g. `make test PYTEST_ARGS="-x -k frames"`,
# `make lab LAB_ARGS="--no-browser --port 0"`, `make bench BENCH_ARGS=--quick`.
PYTEST_ARGS ?=
LAB_ARGS ?=
BENCH_ARGS ?=
SUITE_ARGS ?=
NOTEBOOK ?= notebooks/01-quickstart.ipynb
PIP_INSTALL_FLAGS ?= --quiet

BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip
LINT_PATHS := livenb tests benchmarks
# Jupyter refuses to start as root without this; containers and CI often run as root.
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

STAMP_VENV := $(VENV)/.stamp-venv
STAMP_BASE := $(VENV)/.stamp-base
STAMP_TEST := $(VENV)/.stamp-test
STAMP_LAB := $(VENV)/.stamp-lab

.PHONY: help venv test lint bench suite demo lab clean

help: ## List the targets
	@echo "livenb make targets (variables: PYTHON=$(PYTHON) VENV=$(VENV)):"
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(firstword $(MAKEFILE_LIST)) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  %-7s %s\n", $$1, $$2}'
	@echo "Pass-through: PYTEST_ARGS, LAB_ARGS, BENCH_ARGS, SUITE_ARGS (e.g. make test PYTEST_ARGS=-x)"

venv: $(STAMP_BASE) ## Create .venv (Python >= 3.11) if missing and install livenb editable

test: $(STAMP_TEST) ## Install '.[test]', run ruff, mypy, then pytest (PYTEST_ARGS)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy livenb
	@rc=0; \
	echo "$(PY) -m pytest $(PYTEST_ARGS)"; \
	$(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then \
		echo "error: pytest collected no tests (exit code 5); that is a failure, not a pass." >&2; \
	fi; \
	exit "$$rc"

lint: $(STAMP_TEST) ## Run ruff and mypy only
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy livenb

bench: $(STAMP_TEST) ## Run every benchmarks/bench_*.py with the venv python (BENCH_ARGS)
	@shopt -s nullglob; \
	files=(benchmarks/bench_*.py); \
	if [ "$${#files[@]}" -eq 0 ]; then \
		echo "no benchmarks/bench_*.py found; nothing to run"; exit 0; \
	fi; \
	for f in "$${files[@]}"; do \
		echo "== $$f"; \
		$(PY) "$$f" $(BENCH_ARGS); \
	done

suite: $(STAMP_TEST) ## The side-by-side suite: python -m benchmarks (SUITE_ARGS="--scenarios relay --runs 1")
	$(PY) -m benchmarks $(SUITE_ARGS)

demo: $(STAMP_BASE) ## Run `livenb demo --seconds 5`
	$(BIN)/livenb demo --seconds 5

lab: $(STAMP_LAB) ## Install '.[lab,demos]' and open the quickstart notebook in JupyterLab (LAB_ARGS)
	@test -f "$(NOTEBOOK)" || { echo "error: $(NOTEBOOK) does not exist (set NOTEBOOK=...)" >&2; exit 1; }
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" "$(NOTEBOOK)" $(LAB_ROOT_FLAG) $(LAB_ARGS)

clean: ## Remove .venv, caches and build artefacts
	rm -rf "$(VENV)" build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path "./.git" -prune -o \( -name __pycache__ -o -name '*.egg-info' -o -name .ipynb_checkpoints \) -prune -exec rm -rf {} +

# --- venv bookkeeping (files, not phony) -------------------------------------------

# Creates the venv if missing and upgrades pip once. An existing venv is reused as long
# as its interpreter is new enough.
$(STAMP_VENV):
	@if [ -x "$(PY)" ]; then \
		"$(PY)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
			echo "error: $(VENV) uses $$("$(PY)" -V 2>&1), but livenb needs Python >= 3.11." >&2; \
			echo "       Remove it with 'make clean' and re-run with PYTHON=<python3.11 or newer>." >&2; \
			exit 1; }; \
	else \
		command -v "$(PYTHON)" >/dev/null 2>&1 || { \
			echo "error: PYTHON=$(PYTHON) was not found on PATH; livenb needs Python >= 3.11." >&2; \
			echo "       Re-run with e.g. 'make $(MAKECMDGOALS) PYTHON=python3.11'." >&2; \
			exit 1; }; \
		"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
			echo "error: livenb needs Python >= 3.11, but PYTHON=$(PYTHON) is $$("$(PYTHON)" -V 2>&1)." >&2; \
			echo "       Re-run with e.g. 'make $(MAKECMDGOALS) PYTHON=python3.11'." >&2; \
			exit 1; }; \
		echo "creating $(VENV) with $$("$(PYTHON)" -V 2>&1)"; \
		"$(PYTHON)" -m venv "$(VENV)"; \
	fi
	$(PIP) install $(PIP_INSTALL_FLAGS) --upgrade pip
	@touch "$@"

$(STAMP_BASE): pyproject.toml $(STAMP_VENV)
	$(PIP) install $(PIP_INSTALL_FLAGS) -e .
	@touch "$@"

$(STAMP_TEST): pyproject.toml $(STAMP_VENV)
	$(PIP) install $(PIP_INSTALL_FLAGS) -e '.[test]'
	@touch "$@"

$(STAMP_LAB): pyproject.toml $(STAMP_VENV)
	$(PIP) install $(PIP_INSTALL_FLAGS) -e '.[lab,demos]'
	@touch "$@"
