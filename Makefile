# One entry point for development tasks. `make run` and `make test` are the README's two commands.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit schema proto bench clean

$(STAMP): pyproject.toml constraints.txt clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "AgentFlow needs Python 3.11 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[dev]'
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ./clients/python
	@touch $@

install: $(STAMP) ## Create .venv and install AgentFlow with its development tools

run: install ## Install, migrate the embedded database, validate the examples, run one live
	$(BIN)/agentflow migrate
	@echo
	$(BIN)/agentflow validate examples/*.json
	@echo
	$(BIN)/python examples/run_demo.py
	@echo
	@echo "AgentFlow CLI ready: $(BIN)/agentflow --help  (run, validate, migrate, tenant, apikey, ...)"

test: install lint typecheck unit ## Install, lint, type-check and run every test

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python scripts/generate_protos.py --check
	$(BIN)/buf lint

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

proto: install ## Regenerate agentflow_grpc/_gen (and the client) from protos/
	$(BIN)/python scripts/generate_protos.py

schema: install ## Regenerate schemas/workflow.schema.json from the models
	$(BIN)/agentflow schema --output schemas/workflow.schema.json

bench: install ## Run the benchmarks
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/grpc.py

lock: ## Re-pin constraints.txt to the newest versions pyproject.toml allows
	rm -rf /tmp/agentflow-lock && $(PYTHON) -m venv /tmp/agentflow-lock
	/tmp/agentflow-lock/bin/pip install --quiet '.[dev]' ./clients/python
	/tmp/agentflow-lock/bin/pip freeze --exclude-editable | grep -v -e '^agentflow-grpc' -e '^agentflow-client' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
