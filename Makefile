# CareHub's build: the virtualenv, the services tests need, lint, types, tests, demo, bench.
# Tools run from .venv/bin; nothing needs an activated virtualenv.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install: the venv is rebuilt only when pyproject.toml is newer.
VENV_STAMP := $(VENV)/.carehub-installed
PY_DIRS := hub devices care_portal simulators tests bench
# Written by scripts/ensure-services.sh (TEST_PG_ADMIN_URL); a variable already set wins.
TEST_ENV := var/test-env.sh
WITH_TEST_ENV := if [ -f $(TEST_ENV) ]; then . ./$(TEST_ENV); fi;
# Extra pytest arguments, e.g. `make test-fast PYTEST_ARGS="tests/hub -x"`.
PYTEST_ARGS ?=

.PHONY: help venv services lint typecheck test test-fast demo bench scenarios clean distclean

help:
	@echo "make venv       create $(VENV) (Python >= 3.11) and install CareHub with its dev tools"
	@echo "make services   install/start Mosquitto, PostgreSQL and Chromium (scripts/ensure-services.sh)"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make typecheck  mypy (strict) on the packages"
	@echo "make test       venv, services, lint, typecheck, then the whole test suite"
	@echo "make test-fast  the tests not marked slow"
	@echo "make demo       everything on one machine: broker, hub, portal, simulated homes"
	@echo "make bench      the benchmarks"
	@echo "make scenarios  the whole scenario corpus (scenarios/*.yaml) through the real hub"
	@echo "make clean      caches and build leftovers (keeps $(VENV) and var/)"
	@echo "make distclean  clean, plus $(VENV) and var/ (the demo's data too)"

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	    python=""; \
	    for candidate in python3.13 python3.12 python3.11 python3; do \
	        if command -v $$candidate >/dev/null 2>&1 \
	            && $$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	            python=$$candidate; break; \
	        fi; \
	    done; \
	    if [ -z "$$python" ]; then \
	        echo "make venv: CareHub needs Python >= 3.11 (python3.11 or newer on PATH)" >&2; \
	        exit 1; \
	    fi; \
	    echo "creating $(VENV) with $$(command -v $$python)"; \
	    $$python -m venv $(VENV); \
	fi
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	    || { echo "make venv: $(VENV) has Python < 3.11; run make distclean venv" >&2; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

services:
	scripts/ensure-services.sh

lint: venv
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)

typecheck: venv
	$(VENV)/bin/mypy

# pytest's exit code 5 (no tests collected) fails the target like any other non-zero code.
test: venv services lint typecheck
	$(WITH_TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv services
	$(WITH_TEST_ENV) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/carehub demo

bench: venv services
	$(WITH_TEST_ENV) $(PY) -m bench

# Every scenario file, each on its own Mosquitto and a fresh SQLite database; exits non-zero
# when any scenario misses an expected alarm or raises one nobody expected.
scenarios: venv services
	$(VENV)/bin/carehub-sim scenarios run

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build test-artifacts *.egg-info
	rm -f $(TEST_ENV)
	find $(PY_DIRS) alembic -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) var
