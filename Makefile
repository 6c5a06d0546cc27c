# Every target works on a fresh clone with only Python 3.11, Node and npm installed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_DISABLE_CLI_TELEMETRY := true
export SAGEMAKER_SUPPRESS_V2_WARNING := 1

.PHONY: help setup test lint format demo synth bench deploy destroy clean

help:
	@echo "make test    - set up .venv + npm tools if missing, lint, run the test suite"
	@echo "make demo    - run the whole pipeline locally on MovieLens 100k (no AWS account)"
	@echo "make synth   - synthesize the CDK app offline (no Docker needed)"
	@echo "make bench   - run the benchmarks under bench/ (each prints JSON)"
	@echo "make deploy  - deploy with the pinned CDK CLI (needs AWS credentials)"
	@echo "make lint    - ruff check + ruff format --check"

$(VENV_STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV_STAMP) $(NPM_STAMP)

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(PY) -m pytest

demo: setup
	$(PY) -m pipeline_steps.local demo

synth: setup
	$(CDK) synth --no-notices --quiet

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

deploy: setup
	$(CDK) deploy --no-notices --all

destroy: setup
	$(CDK) destroy --no-notices --all

clean:
	rm -rf cdk.out .pytest_cache demo-output
