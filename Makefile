# warroom — two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test browsers lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Generate a fault scenario, ingest, detect, correlate and summarise it, then serve the console
## on the result (with a viewer's and an approver's token) until Ctrl-C.
demo: install
	$(BIN)/warroom demo

## Everything CI checks: lint, types, the import contract, the test suite (unit + integration +
## browser).
test: install browsers lint typecheck
	$(BIN)/pytest -q

## The browser tests drive Debian's Chromium with Playwright (`executable_path=/usr/bin/chromium`):
## Playwright's own browser download cannot work on this network, so never `playwright install`.
## Installs the package when it is missing; where that cannot be done the browser tests skip and
## say why.
CHROMIUM := /usr/bin/chromium
browsers:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "browsers: no apt-get here; install Chromium at $(CHROMIUM) by hand or the browser tests skip"; \
		exit 0; \
	fi; \
	SUDO=; \
	if [ "$$(id -u)" != 0 ]; then \
		if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else \
			echo "browsers: not root and no sudo: cannot install chromium; the browser tests skip"; \
			exit 0; \
		fi; \
	fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	echo "browsers: installing Debian's chromium (for the Playwright tests)"; \
	$$SUDO apt-get install -y --no-install-recommends chromium \
		|| { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium; } \
		|| echo "browsers: installing chromium failed (see above); the browser tests skip"

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
