# Entry points named in the README. `make demo` runs the main job; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_SDK := .venv-sdk
STAMP := .make

.PHONY: setup demo image test test-unit test-sdk test-container lint bench-train bench-serve bench-debugger bench-rules clean

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

# The local-mode tests run the built image; the runtime venv runs a real ./train for the regex test.
test-sdk: image $(STAMP)/venv-sdk $(STAMP)/venv
	CLASSIFIER_TEST_IMAGE=$(IMAGE_NAME):$(IMAGE_TAG) $(VENV_SDK)/bin/python -m pytest tests/sdk

# Fast feedback first: unit and process tests, then the image and what runs it.
test: lint test-unit test-container test-sdk

# --- Docker (see docs/container.md) ---------------------------------------------------------
IMAGE_NAME ?= sagemaker-image-classifier
IMAGE_TAG ?= latest

# Host prerequisites (engine, Compose, base image), the offline wheelhouse, then the build.
# Only the image reference reaches stdout, so it is alone on the last line.
image:
	@base=$$(scripts/docker_host_prerequisites.sh) && \
	scripts/build_wheelhouse.sh && \
	./build_and_push.sh --no-push --name $(IMAGE_NAME) --tag $(IMAGE_TAG) --base-image "$$base"

# The main job in Docker: train on the digits, serve, classify test images, stop the server.
demo: image $(STAMP)/venv
	local_test/run_demo.sh $(IMAGE_NAME):$(IMAGE_TAG)

# docker-registry (push test) comes with --with-registry; moto comes from .venv-sdk.
test-container: image $(STAMP)/venv $(STAMP)/venv-sdk
	@scripts/docker_host_prerequisites.sh --with-registry >/dev/null
	CONTAINER_TEST_IMAGE=$(IMAGE_NAME):$(IMAGE_TAG) $(VENV)/bin/python -m pytest tests/container

lint: $(STAMP)/venv
	$(VENV)/bin/ruff check container classifier_client tools tests local_test benchmarks

bench-train: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/training_bench.py

# Needs wrk (or ab): apt-get install wrk apache2-utils.
bench-serve: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/serving_bench.py

# Training throughput with debugger hook + rules + profiler on vs all off, at two step sizes
# (ratios; targets: <= 5% overhead at 64 px / batch 64, <= 10% at 32 px / batch 16).
bench-debugger: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/debugger_overhead.py

# Every debugger rule's verdict on healthy and sabotaged real jobs (false alarms, detections).
bench-rules: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/rules_matrix.py

clean:
	rm -rf $(STAMP) $(VENV) $(VENV_SDK)
