# warroom — two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Generate a fault scenario, ingest it into the embedded ClickHouse and show what was stored.
demo: install
	$(BIN)/warroom demo

## Everything CI checks: lint, types, the import contract, the test suite (unit + integration).
test: install lint typecheck
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/warroom bench ingest
	$(BIN)/warroom bench nab
	$(BIN)/warroom bench logs
	$(BIN)/warroom bench correlate
	$(BIN)/warroom bench summarize

clean:
	rm -rf $(VENV) .warroom .pytest_cache .mypy_cache .ruff_cache
