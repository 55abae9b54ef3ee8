# The README's two commands: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installed before the project so that its `torch>=2.6` range is already met: here that
# takes the CPU build lying on disk; elsewhere pip's default build for the platform.
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test lint up browser clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

browser:
	bash scripts/install-browser.sh

demo: setup
	$(BIN)/aivj demo

up: setup
	$(BIN)/aivj up

test: setup browser lint
	$(BIN)/python -m pytest -q aivj_assets_tests

# ruff (with complexity at most 12) and the architecture contracts of pyproject.toml.
lint: setup
	$(BIN)/ruff check aivj_assets aivj_assets_tests benchmarks scripts
	$(BIN)/lint-imports

# What the demo wrote (model versions, store, checkpoints, instance, the data folder's ledger),
# then the virtual environment. Data files stay.
clean:
	if [ -x $(BIN)/aivj ]; then $(BIN)/aivj reset --yes; fi
	rm -rf $(VENV) .dagster_home store state checkpoints training_report.json
