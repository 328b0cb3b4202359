# Two set-up commands on a fresh machine: `make demo` and `make test`. Both create .venv and install.
# `make docs` builds the documentation site with --strict (warnings are errors).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# metaworld is in the default install so that its tests always run; it pins mujoco==3.3.0 (README, install)
EXTRAS ?= mujoco,metaworld,sb3,dev
STAMP := $(VENV)/.installed-$(EXTRAS)
PYTEST_ARGS ?=

.PHONY: install demo test test-fast docs lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# CPU torch goes in first, so the project's `torch>=2.3` is already satisfied and pip never pulls a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" || $(BIN)/python -m pip install --quiet "torch>=2.3" --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/metarl demo

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The documentation site, into site/ (tests/test_docs.py builds it too, so `make test` covers it).
docs: install
	$(BIN)/mkdocs build --strict

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python scripts/bench_envs.py --quick

clean:
	rm -rf $(VENV) build site docs/results/generated *.egg-info .pytest_cache .ruff_cache
