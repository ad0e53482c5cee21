# supportdesk: `make run` starts it with demo data, `make test` runs every check.
# Works as the very first command on a fresh clone: the virtualenv is made on demand.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# Service, page and isolation tests also run on PostgreSQL; only the paths that exist are passed.
PG_TESTS := $(wildcard tests/tickets tests/accounts tests/events tests/web tests/api tests/test_isolation.py tests/test_database.py tests/test_rows.py tests/test_sqlite_writers.py tests/integration/test_workers.py tests/notify tests/intake)
PYTEST_WORKERS ?= 2

.PHONY: help install dev run test lint typecheck bench bench-api bench-outbox bench-intake clean FORCE

help:
	@echo "make run        install, then start supportdesk with demo data on http://$(HOST):$(PORT)/"
	@echo "make test       install the test tools, then lint, type-check and run every test"
	@echo "make install    create $(VENV) and install supportdesk into it"
	@echo "make lint       ruff and import-linter"
	@echo "make typecheck  mypy"
	@echo "make bench      the page benchmark (bench/run)"
	@echo "make bench-api  the API benchmark (bench/run-api; needs the database bench/run seeds)"
	@echo "make bench-outbox  the outbox benchmark: commit -> mail accepted, no-op runs/s (bench/run-outbox)"
	@echo "make bench-intake  the mail-in benchmark: SMTP gateway mails/s, mail -> ticket -> ack (bench/run-intake)"
	@echo "make clean      remove $(VENV), caches and build output (never ./var, which holds data)"

# Checked on every run: a virtualenv made by a Python older than 3.12, or one whose Python
# is gone, is made again (the file's time changes only then, so nothing else reinstalls).
$(BIN)/python: FORCE
	@if [ -x "$(BIN)/python" ] && "$(BIN)/python" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then \
		exit 0; \
	fi; \
	python=$$(scripts/find-python); \
	echo "Creating $(VENV) with $$python"; \
	rm -rf "$(VENV)"; \
	if ! "$$python" -m venv "$(VENV)"; then \
		rm -rf "$(VENV)"; \
		echo "Could not create a virtualenv with $$python. On Debian: apt-get install python3-venv" >&2; \
		exit 1; \
	fi; \
	"$(BIN)/python" -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

# SQLite and every file under ./var unless SUPPORTDESK_HOME says otherwise.
run: install
	SUPPORTDESK_HOME="$${SUPPORTDESK_HOME:-$(CURDIR)/var}" \
		$(BIN)/supportdesk serve --demo --host $(HOST) --port $(PORT)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: dev
	$(BIN)/mypy

test: dev
	scripts/test-prerequisites
	$(MAKE) --no-print-directory lint typecheck
	env -u DATABASE_URL $(BIN)/pytest -n $(PYTEST_WORKERS)
	$(BIN)/python -m tests.pg -- $(BIN)/pytest -n $(PYTEST_WORKERS) $(PG_TESTS)

bench: install
	bench/run

bench-api: install
	bench/run-api

# Its SMTP sink is aiosmtpd, one of the test tools.
bench-outbox: dev
	bench/run-outbox

bench-intake: dev
	bench/run-intake

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache \
		.hypothesis .import_linter_cache
	find . -name __pycache__ -type d -prune -not -path './var/*' -exec rm -rf {} +
