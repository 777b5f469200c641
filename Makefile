# The single entry point for people and CI. Everything installs itself from nothing into .venv.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov pins boto3==1.35.x (conflicts with aws-sam-cli's), so it gets its own venv inside .venv, with the parse
# tables its JSONPath parser would otherwise build again at every expression (scripts/checkov-parse-tables). Its
# stamp is a file target, not a phony one: a target waiting on a phony prerequisite waits for its recipe at every
# make, and meanwhile make -j starts the targets listed after it (see test).
CHECKOV_VERSION := 3.3.30
CHECKOV := $(VENV)/checkov/.ready-$(CHECKOV_VERSION)
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONPATH := $(abspath shared):$(abspath .)
export AWS_DEFAULT_REGION ?= eu-west-1
export SAM_CLI_TELEMETRY := 0
# Python may keep each module's compiled form (__pycache__, git-ignored) even where the shell says not to: the venv is
# installed without .pyc, so otherwise every process (each test worker, CLI subprocess, sam, checkov) compiles
# boto3, moto and the rest from source again, and pytest rewrites every test module in every worker
# (docs/performance.md: Test time).
unexport PYTHONDONTWRITEBYTECODE
PYTEST := $(BIN)/python -m pytest
# Test processes (pytest-xdist): two per core, since part of the suite's time is spent waiting (simulators'
# latency, subprocesses, Chromium) and another worker's CPU fills it (docs/performance.md, "Workers");
# PYTEST_WORKERS=0 runs in this process, serially.
# worksteal: each worker starts on its own contiguous half of the tests (a file's module fixtures, such as
# `sam build` and checkov, run once) and an idle worker takes tests from the end of the other's queue, so no
# worker is left alone with a long file at the end (docs/performance.md: Test time).
PYTEST_WORKERS ?= $(shell n=$$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1); echo $$((2 * n)))
XDIST := -n $(PYTEST_WORKERS) --dist worksteal
# More pytest options, e.g. PYTEST_ARGS=--durations=40 or PYTEST_ARGS='-m "not realtime"'. The default names the ten
# slowest tests at the end of every run, so a slow newcomer shows in CI's log (docs/performance.md: Test suite).
PYTEST_ARGS ?= --durations=10 --durations-min=1

.PHONY: help venv test scan warm-tests warm-tools lint typecheck unit integration faults checkov infra demo demo-shell bench sam-local sam-local-build sam-env-vars clean report-preview browser console

help:
	@echo "make demo   run the whole pipeline locally (embedded AWS + vendor simulators)"
	@echo "make demo-shell  after make demo: a shell on the demo's data (the usagewatch commands it printed)"
	@echo "make test   lint, types, security scans, unit, integration, fault matrix and template checks"
	@echo "make bench  performance scenarios (writes bench/results.json)"
	@echo "make sam-local  the collectors in Lambda containers: SAM CLI + Docker, offline (root; not in make test)"

# uv (from PyPI: its wheel carries the binary) fills the venvs several times faster than pip: a parallel resolver and
# downloads, and a machine-wide cache (~/.cache/uv) that makes a fresh clone's install mostly copying. pip installs
# it into the venv first; if that fails (no network for it, an odd platform) pip does the whole install as before.
UV_VERSION := 0.13.8
UV := $(BIN)/uv

$(STAMP): requirements-dev.txt shared/requirements.txt pyproject.toml
	@py=$$(scripts/find-python 3.12) || exit 1; \
	  [ -x $(BIN)/python ] || $$py -m venv $(VENV) || exit 1; \
	  if $(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) && $(UV) --version >/dev/null; then \
	    $(UV) pip install -q --python $(BIN)/python -r requirements-dev.txt -e . ; \
	  else \
	    echo "uv unavailable: installing with pip (slower)" >&2; \
	    $(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip && \
	    $(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt && \
	    $(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e . ; \
	  fi
	@touch $(STAMP)

venv: $(STAMP)

# One pytest for every suite, so the workers stay busy to the end; the suites' own targets are below. The template
# checks go first: their few files hold the longest single job (sam build), which would otherwise run last, on one
# worker, while the other waits.
# Before it, side by side (two at a time, each target's output kept together): the scanners on one core, and mypy,
# lint and the warming on the other, which take about as long. The scanners (checkov, cfn-lint and bandit: SCANS)
# read the template and the code without running either, as ruff and mypy do, so they run with them. checkov is
# installed before, so that the scanners, the longest job, start at once instead of last.
SUITES := tests/infrastructure tests/unit tests/integration tests/faults
SCANS := tests/infrastructure/test_security_scans.py
test: $(STAMP) $(CHECKOV)
	@$(MAKE) --no-print-directory -j 2 --output-sync=target scan typecheck lint browser warm-tests warm-tools
	$(PYTEST) $(XDIST) $(PYTEST_ARGS) --ignore=$(SCANS) $(SUITES)

# checkov, cfn-lint with the serverless rules, and bandit, in one process (make infra runs them too).
scan: $(STAMP) $(CHECKOV)
	$(PYTEST) -q $(SCANS)

# Compiled modules written once, before the test workers start: pytest's rewritten test modules and what they
# import (every worker would otherwise compile the same modules at the same moment), then the SAM CLI, which would
# compile itself inside the test that runs it (docs/performance.md: Compiled modules).
warm-tests: $(STAMP)
	@out=$$($(PYTEST) --collect-only -q $(SUITES) 2>&1) || { echo "$$out" | tail -40; exit 1; }

warm-tools: $(STAMP)
	@$(BIN)/sam build --help >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared/usagewatch functions

unit: $(STAMP)
	$(PYTEST) $(XDIST) $(PYTEST_ARGS) tests/unit

integration: $(STAMP)
	$(PYTEST) $(XDIST) $(PYTEST_ARGS) tests/integration

faults: $(STAMP)
	$(PYTEST) $(XDIST) $(PYTEST_ARGS) tests/faults

checkov: $(CHECKOV)

$(CHECKOV): | $(STAMP)
	@py=$$(scripts/find-python 3.12) || exit 1; \
	  rm -rf $(VENV)/checkov; \
	  if [ -x $(UV) ]; then \
	    $(UV) venv -q --python $$py $(VENV)/checkov && \
	    $(UV) pip install -q --python $(VENV)/checkov/bin/python checkov==$(CHECKOV_VERSION); \
	  else \
	    $$py -m venv $(VENV)/checkov && \
	    $(VENV)/checkov/bin/python -m pip install -q --disable-pip-version-check checkov==$(CHECKOV_VERSION); \
	  fi && $(VENV)/checkov/bin/python scripts/checkov-parse-tables && touch $@

infra: $(STAMP) $(CHECKOV)
	$(PYTEST) $(XDIST) $(PYTEST_ARGS) tests/infrastructure

demo: $(STAMP)
	$(BIN)/python -m tests.demo

# After `make demo`: its table and report bucket restored into an embedded AWS on 127.0.0.1:$(DEMO_AWS_PORT) and a
# shell where every `usagewatch` command the demo printed runs as printed; exit the shell to stop it.
DEMO_AWS_PORT ?= 4599
demo-shell: $(STAMP)
	DEMO_AWS_PORT=$(DEMO_AWS_PORT) scripts/demo-shell

# The web console on the demo's data, on this machine (docs/console.md): prints its URL and two users' passwords.
console: $(STAMP)
	$(BIN)/python scripts/console.py

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
