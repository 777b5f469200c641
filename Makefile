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
# Test processes (pytest-xdist): `auto` is one per core; PYTEST_WORKERS=0 runs in this process, serially.
# Whole files go to one worker (loadfile): module fixtures such as `sam build` and checkov run once.
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: help venv test lint typecheck unit integration faults checkov infra demo bench sam-local sam-local-build sam-env-vars clean report-preview browser

help:
	@echo "make demo   run the whole pipeline locally (embedded AWS + vendor simulators)"
	@echo "make test   lint, types, unit, integration, fault matrix and template checks"
	@echo "make bench  performance scenarios (writes bench/results.json)"
	@echo "make sam-local  the collectors in Lambda containers: SAM CLI + Docker, offline (root; not in make test)"

$(STAMP): requirements-dev.txt shared/requirements.txt pyproject.toml
	@py=$$(scripts/find-python 3.12) || exit 1; \
	  [ -x $(BIN)/python ] || $$py -m venv $(VENV); \
	  $(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip; \
	  $(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt && \
	  $(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# One pytest for every suite, so the workers stay busy to the end; the suites' own targets are below.
test: $(STAMP) lint typecheck checkov browser
	$(PYTEST) $(XDIST) tests/unit tests/integration tests/faults tests/infrastructure

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared/usagewatch functions

unit: $(STAMP)
	$(PYTEST) $(XDIST) tests/unit

integration: $(STAMP)
	$(PYTEST) $(XDIST) tests/integration

faults: $(STAMP)
	$(PYTEST) $(XDIST) tests/faults

# checkov pins boto3==1.35.x (conflicts with aws-sam-cli's), so it gets its own venv inside .venv.
CHECKOV_VERSION := 3.3.30

checkov: $(STAMP)
	@[ -f $(VENV)/checkov/.installed-$(CHECKOV_VERSION) ] || { \
	  py=$$(scripts/find-python 3.12) || exit 1; \
	  rm -rf $(VENV)/checkov && $$py -m venv $(VENV)/checkov && \
	  $(VENV)/checkov/bin/python -m pip install -q --disable-pip-version-check checkov==$(CHECKOV_VERSION) && \
	  touch $(VENV)/checkov/.installed-$(CHECKOV_VERSION); }

infra: $(STAMP) checkov
	$(PYTEST) $(XDIST) tests/infrastructure

demo: $(STAMP)
	$(BIN)/python -m tests.demo

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Debian's chromium for the tests that look at a page (tests/browser.py) and report-preview: installed when
# missing (needs root, as CI runs); Playwright drives it, no browser download.
CHROMIUM := /usr/bin/chromium

browser:
	@[ -x $(CHROMIUM) ] || { [ "$$(id -u)" = 0 ] || { echo "chromium missing: apt-get install -y chromium (as root)"; exit 1; }; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }

# The demo's monthly billing report in headless Chromium, screenshots at 700 and 1,400 px in .demo/; run make demo first.
report-preview: $(STAMP) browser
	scripts/report-preview

# The functions' architecture for `sam build` here (the template's Architecture parameter) and the layer's wheel
# platform (shared/Makefile's WHEEL_PLATFORM), kept in step: SAM gives the layer's make build neither.
LOCAL_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)
LOCAL_WHEELS := $(if $(filter arm64,$(LOCAL_ARCH)),manylinux2014_aarch64,manylinux2014_x86_64)

# `sam build` for this machine's architecture, for `sam local invoke` (README: Local invoke).
sam-local-build: $(STAMP)
	WHEEL_PLATFORM=$(LOCAL_WHEELS) $(BIN)/sam build --parameter-overrides Architecture=$(LOCAL_ARCH)

# The env-vars file `sam local invoke` needs to reach a deployed stack: make sam-env-vars STACK=usagewatch
sam-env-vars: $(STAMP)
	@[ -n "$(STACK)" ] || { echo "usage: make sam-env-vars STACK=<your stack name>"; exit 2; }
	$(BIN)/python scripts/sam-local/env_vars_from_stack.py "$(STACK)" .aws-sam/env-vars.json

# The three collectors run by the real SAM CLI in Lambda containers, against moto and the vendor simulators on
# loopback (scripts/sam-local/run.py). Needs root and Docker (installed and started here if missing).
sam-local: $(STAMP)
	scripts/sam-local/with-docker bash -c 'scripts/sam-local/lambda-image && $(BIN)/python scripts/sam-local/run.py'

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
