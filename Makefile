# The two commands a newcomer needs: `make demo` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV ?= .venv
CHECKOV_VENV ?= .venv-checkov
PY := $(VENV)/bin/python
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: setup demo test test-fast lint typecheck unit infra-checks bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed (found %s)" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(PY) -m pip install $(PIP_QUIET) -r requirements-dev.txt
	touch $@

# checkov pins pycep-parser 0.5.1, which cannot parse current Bicep; it lives in its own environment with 0.7.1
# installed over it, so that it cannot disturb the app's dependencies.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(CHECKOV_VENV)/bin/pip install $(PIP_QUIET) -r requirements-checkov.txt
	$(CHECKOV_VENV)/bin/pip install $(PIP_QUIET) --no-deps pycep-parser==0.7.1
	touch $@

demo: setup
	$(PY) -m shared demo

lint: setup
	$(PY) -m ruff check .

typecheck: setup
	$(PY) -m mypy

# Azurite (Azure Storage emulator) for the blob outbox tests and the Kusto language service for the KQL check,
# from the npm registry.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

# Chromium (Debian's package) for the report's screenshot test, installed only where it is missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

# The quick loop after each edit: the unit tier (no network, no subprocess, no node; tests/unit/conftest.py refuses
# both) and the layer rules. `make test` runs everything.
test-fast: setup
	$(PY) -m pytest -q tests/unit tests/test_architecture.py

unit: setup node_modules/.installed $(CHECKOV_VENV)/.installed $(CHROMIUM)
	$(PY) -m pytest

infra-checks: setup $(CHECKOV_VENV)/.installed
	$(VENV)/bin/cfn-lint infra/aws/*.yaml
	$(CHECKOV_VENV)/bin/checkov -d infra --framework bicep cloudformation --skip-download --quiet --compact

test: lint typecheck unit infra-checks

bench: setup
	$(PY) benchmarks/bench_collect.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache out
