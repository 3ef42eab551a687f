# Two commands for users: `make book` and `make test` (see README.md). Both create .venv from
# requirements.lock on first use and reuse it afterwards.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Book scale of `make book`: laptop (minutes on a CPU), gpu (the full protocol, meant for a GPU) or ci
# (what CI runs, seconds per chapter); see notebooks/parameters.yml.
SCALE ?= laptop

.PHONY: setup book test nbval-refs clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

setup: $(STAMP)

# Lint and format checks (ruff); the data the tests and chapters read (downloaded and verified by
# das.data.fetch, which stops here with one line when they cannot be had); unit tests; nbval: the
# reference notebooks in tests/nbval rerun, outputs of the cells tagged nbval-check-output compared;
# then every chapter at the ci scale and a -W build of the book from those runs (into _build/ci), so a
# broken chapter fails CI.
test: $(STAMP)
	$(BIN)/ruff check das tests notebooks measurements
	$(BIN)/ruff format --check das tests notebooks measurements
	$(BIN)/python -m das.data.fetch --book
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval/sanitize.cfg tests/nbval
	$(BIN)/python -m das.book build --scale ci --path-output _build/ci

# Fetch and verify the data the chapters read (das.data.fetch), run every chapter (SCALE=laptop by
# default; SCALE=gpu for the full protocol) with papermill, reusing runs whose source, parameters and
# package are unchanged, then build _build/html.
book: $(STAMP)
	$(BIN)/python -m das.book build --scale $(SCALE)

# Rewrite the nbval references (tests/nbval/*.ipynb) from the ci scale; review the diff.
nbval-refs: $(STAMP)
	$(BIN)/python -m das.book nbval-refs

clean:
	rm -rf _build executed
