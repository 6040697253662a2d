# Entry points named in the README. `make demo` runs the main job; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_SDK := .venv-sdk
STAMP := .make

.PHONY: setup demo test test-unit test-sdk lint bench-train bench-serve clean

setup: $(STAMP)/venv $(STAMP)/venv-sdk

# Idempotent: each venv is rebuilt only when its requirement files change.
$(STAMP)/venv: container/requirements.txt requirements-dev.txt pyproject.toml
	@mkdir -p $(STAMP)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r container/requirements.txt -r requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	@touch $@

$(STAMP)/venv-sdk: classifier_client/requirements.txt pyproject.toml
	@mkdir -p $(STAMP)
	test -x $(VENV_SDK)/bin/python || $(PYTHON) -m venv $(VENV_SDK)
	$(VENV_SDK)/bin/pip install -q -r classifier_client/requirements.txt
	$(VENV_SDK)/bin/pip install -q --no-deps -e .
	@touch $@

test-unit: $(STAMP)/venv
	$(VENV)/bin/python -m pytest tests/unit

test-sdk: $(STAMP)/venv-sdk
	$(VENV_SDK)/bin/python -m pytest tests/sdk

test: test-unit test-sdk

lint: $(STAMP)/venv
	$(VENV)/bin/ruff check container classifier_client tests local_test benchmarks

bench-train: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/training_bench.py

# Needs wrk (or ab): apt-get install wrk apache2-utils.
bench-serve: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/serving_bench.py

clean:
	rm -rf $(STAMP) $(VENV) $(VENV_SDK)
