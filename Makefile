# salescycle: `make run` starts the service on embedded servers, `make test` runs every check.
#
# Needs only Python 3.11+ (with its venv module) and make: the first target creates .venv,
# installs uv into it, and installs the pinned dependencies from requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UV_VERSION := 0.13.9
# Extra arguments for `salescycle dev` and pytest, e.g. `make run ARGS="--port 8001"`.
ARGS ?=
PYTEST_ARGS ?=
# apt-get runs directly as root, through sudo otherwise.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: install run test lint typecheck pytest chromium bench openapi lock clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: salescycle needs Python 3.11 or newer, and '$(PYTHON)' is" \
	    "$$($(PYTHON) -V 2>&1 || echo missing). Run make with PYTHON=python3.11." >&2; \
	  exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed; on Debian or Ubuntu install the" \
	    "python3-venv package, then run make again." >&2; \
	  rm -rf $(VENV); exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/salescycle dev $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# The /docs test renders the API reference in headless Chromium. Install Debian's
# package when no Chromium is found; a failed install only warns, and the test then
# fails with a message that says how to install it.
chromium:
	@if [ -n "$$SALESCYCLE_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 \
	    || command -v chromium-browser >/dev/null 2>&1; then \
	  :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's chromium for the /docs browser test"; \
	  $(SUDO) apt-get update -qq \
	    && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	      --no-install-recommends chromium >/dev/null \
	    || echo "warning: installing chromium failed; tests/test_docs.py will fail" >&2; \
	else \
	  echo "warning: no Chromium and no apt-get; install Chromium or set" \
	    "SALESCYCLE_CHROMIUM, or tests/test_docs.py will fail" >&2; \
	fi

pytest: install chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	$(BIN)/python -m benchmarks

openapi: install
	$(BIN)/salescycle openapi > openapi/openapi.json

# Re-pin every dependency after a change to pyproject.toml.
lock: install
	$(BIN)/uv pip compile --quiet --python $(BIN)/python pyproject.toml --extra dev \
	  -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
