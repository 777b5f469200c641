# The single entry point for people and CI. Everything installs itself from nothing into .venv.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONPATH := $(abspath shared):$(abspath .)
export AWS_DEFAULT_REGION ?= eu-west-1
export SAM_CLI_TELEMETRY := 0
PYTEST := $(BIN)/python -m pytest

.PHONY: help venv test lint typecheck unit integration faults infra demo bench sam-build clean report-preview

help:
	@echo "make demo   run the whole pipeline locally (embedded AWS + vendor simulators)"
	@echo "make test   lint, types, unit, integration, fault matrix and template checks"
	@echo "make bench  performance scenarios (writes bench/results.json)"

$(STAMP): requirements-dev.txt shared/requirements.txt pyproject.toml
	@py=$$(scripts/find-python 3.12) || exit 1; \
	  [ -x $(BIN)/python ] || $$py -m venv $(VENV); \
	  $(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip; \
	  $(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt && \
	  $(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP) lint typecheck unit integration faults infra

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared/usagewatch functions

unit: $(STAMP)
	$(PYTEST) tests/unit

integration: $(STAMP)
	$(PYTEST) tests/integration

faults: $(STAMP)
	$(PYTEST) tests/faults

# checkov pins boto3==1.35.x (conflicts with aws-sam-cli's), so it gets its own venv inside .venv.
CHECKOV_VERSION := 3.3.30

infra: $(STAMP)
	@[ -f $(VENV)/checkov/.installed-$(CHECKOV_VERSION) ] || { \
	  py=$$(scripts/find-python 3.12) || exit 1; \
	  rm -rf $(VENV)/checkov && $$py -m venv $(VENV)/checkov && \
	  $(VENV)/checkov/bin/python -m pip install -q --disable-pip-version-check checkov==$(CHECKOV_VERSION) && \
	  touch $(VENV)/checkov/.installed-$(CHECKOV_VERSION); }
	$(PYTEST) tests/infrastructure

demo: $(STAMP)
	$(BIN)/python -m tests.demo

bench: $(STAMP)
	$(BIN)/python -m bench.run

# The demo's monthly billing report rendered in headless Chromium (a screenshot in .demo/); run make demo first.
report-preview:
	scripts/report-preview

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
