# Two commands for users: `make book` and `make test` (see README.md). Both create .venv from
# requirements.lock on first use and reuse it afterwards.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# quick: what CI and a laptop run; paper: the full protocol (meant for a GPU).
PROFILE ?= quick
# MedMNIST npz folder; a sibling shared/data/medmnist checkout is used when present.
DAS_DATA_DIR ?= $(if $(wildcard ../shared/data/medmnist),$(abspath ../shared/data/medmnist),)
export DAS_DATA_DIR

.PHONY: setup book test nbval-refs clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

clean:
	rm -rf _build executed
