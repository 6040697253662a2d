# Entry points named in the README. `make demo` runs the main job; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_SDK := .venv-sdk
STAMP := .make
# Python writes the bytecode of what it imports, so only the first process that imports torch
# compiles it: with PYTHONDONTWRITEBYTECODE=1 in the caller's environment every process compiled
# it again (7.8 s of CPU for the training program's imports against 3.9 s).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup lock demo image image-serve test test-unit test-sdk test-container lint bench-train bench-precision bench-serve bench-debugger bench-rules clean

setup: $(STAMP)/venv $(STAMP)/venv-sdk

# --- Lock files and installs ------------------------------------------------------------------
# The hand-written requirement files are the inputs; each venv installs from a lock with every
# transitive package pinned and hashed. .venv (runtime + dev tools) is resolved within the image's
# lock, so the tests run the versions the image ships.
RUNTIME_LOCK := container/requirements.lock
# The serving image's lock: the part of RUNTIME_LOCK the server needs (scripts/subset_lock.py).
SERVE_REQUIREMENTS := container/requirements-serve.txt
SERVE_LOCK := container/requirements-serve.lock
DEV_LOCK := requirements-dev.lock
SDK_LOCK := classifier_client/requirements.lock
# uv installs the locks several times faster than pip (parallel downloads, no resolver run); it
# lives in a venv of its own. USE_UV=0 (or no uv) installs with pip, from the same locks.
# BUILD_LOCK pins it, here and in the image build (container/install_venv.sh).
BUILD_LOCK := container/requirements-build.lock
VENV_TOOLS := .venv-tools
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(BUILD_LOCK))
UV := $(VENV_TOOLS)/bin/uv
USE_UV ?= 1
# The image's platform: Debian 12 (glibc 2.36), CPython 3.11, x86_64. pip's index strategy: the
# best version from any index, as pip picks it; pip's configured indexes and find-links are
# passed along (uv does not read pip's configuration).
UV_RESOLVE := --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
	--index-strategy unsafe-best-match
uv_sources = $$(source scripts/common.sh && uv_source_args)

# A failed uv install is no error: the installs below fall back to pip.
$(STAMP)/uv-$(UV_VERSION):
	@mkdir -p $(STAMP)
	@{ test -x $(VENV_TOOLS)/bin/python || $(PYTHON) -m venv $(VENV_TOOLS); } && \
	$(VENV_TOOLS)/bin/pip install -q --require-hashes -r $(BUILD_LOCK) || \
	echo "uv $(UV_VERSION) could not be installed: the venvs are installed with pip" >&2
	@touch $@

# $(call install_lock,VENV,LOCK): both paths check every hash; sagemaker-training is built from
# its hashed sdist. `uv pip install` (not sync) keeps the venv's own pip for the editable install.
# uv leaves compiling to the first import (pip compiles all at install: 44 s of CPU per venv here,
# mostly for modules nothing imports). See PYTHONDONTWRITEBYTECODE above.
define install_lock
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	if [ "$(USE_UV)" != 0 ] && [ -x $(UV) ]; then \
	    $(UV) pip install -q --python $(1)/bin/python --require-hashes \
	        --index-strategy unsafe-best-match $(uv_sources) -r $(2); \
	else \
	    $(1)/bin/pip install -q --require-hashes -r $(2); \
	fi
	$(1)/bin/pip install -q --no-deps -e .
endef

# Idempotent: each venv is rebuilt only when its lock changes.
$(STAMP)/venv: $(DEV_LOCK) pyproject.toml | $(STAMP)/uv-$(UV_VERSION)
	@mkdir -p $(STAMP)
	$(call install_lock,$(VENV),$(DEV_LOCK))
	@touch $@

$(STAMP)/venv-sdk: $(SDK_LOCK) pyproject.toml | $(STAMP)/uv-$(UV_VERSION)
	@mkdir -p $(STAMP)
	$(call install_lock,$(VENV_SDK),$(SDK_LOCK))
	@touch $@

# $(call compile_lock,LOCK,INPUTS...): pins already in LOCK are kept unless an input moves them;
# `make lock UPGRADE=1` takes the newest releases the inputs allow.
define compile_lock
	$(UV) pip compile -q --generate-hashes $(UV_RESOLVE) $(if $(UPGRADE),--upgrade) \
	    --custom-compile-command "make lock" $(uv_sources) -o $(1) $(2)
endef

# Refreshes the locks after an edit of a requirement file (needs uv and the package index).
lock: $(STAMP)/uv-$(UV_VERSION)
	@test -x $(UV) || { echo "make lock needs uv: $(VENV_TOOLS)/bin/pip install -r $(BUILD_LOCK)" >&2; exit 1; }
	$(call compile_lock,$(BUILD_LOCK),container/requirements-build.txt)
	$(call compile_lock,$(RUNTIME_LOCK),container/requirements.txt)
	python3 scripts/subset_lock.py $(RUNTIME_LOCK) $(SERVE_REQUIREMENTS) > $(SERVE_LOCK).tmp && mv $(SERVE_LOCK).tmp $(SERVE_LOCK)
	$(call compile_lock,$(DEV_LOCK),container/requirements.txt requirements-dev.txt -c $(RUNTIME_LOCK))
	$(call compile_lock,$(SDK_LOCK),classifier_client/requirements.txt)

# The unit suite is mostly processes that import torch and wait on each other: pytest-xdist runs
# it on one worker per core (work stealing evens out the long trainings). PYTEST_WORKERS=0 runs it
# in this process.
PYTEST_WORKERS ?= auto
# The watching tests start the MLflow tracking server of .venv-sdk (the SDK pins full mlflow).
test-unit: $(STAMP)/venv $(STAMP)/venv-sdk
	$(VENV)/bin/python -m pytest tests/unit -n $(PYTEST_WORKERS) --dist worksteal

# The local-mode tests run the built image; the runtime venv runs a real ./train for the regex test.
# One worker per core, a file per worker at a time: a file's tests share its module's fixtures.
# SDK_TESTS: more pytest arguments, e.g. SDK_TESTS='-m "not docker"' (the tests needing no image).
SDK_TESTS ?=
test-sdk: image $(STAMP)/venv-sdk $(STAMP)/venv
	CLASSIFIER_TEST_IMAGE=$(IMAGE_NAME):$(IMAGE_TAG) $(VENV_SDK)/bin/python -m pytest tests/sdk \
	    -n $(PYTEST_WORKERS) --dist loadfile $(SDK_TESTS)

# `make test`: every suite. The images build in the background from the start, while the venvs
# install and the unit suite runs (log: $(TEST_LOGS)/image.log); then lint (one process, so one
# core; log: $(TEST_LOGS)/lint.log) runs in the background while the SDK suite and the container
# suite, which need the images, run one after the other. Each runs even when another failed.
TEST_LOGS := $(STAMP)/test-logs
# .venv-tools first: build_wheelhouse.sh takes its pip where python3 has none.
test: $(STAMP)/uv-$(UV_VERSION)
	@mkdir -p $(TEST_LOGS)
	@$(MAKE) --no-print-directory image image-serve >$(TEST_LOGS)/image.log 2>&1 & build=$$!; \
	$(MAKE) --no-print-directory test-unit; unit=$$?; \
	$(MAKE) --no-print-directory -o $(STAMP)/venv -o $(STAMP)/venv-sdk lint >$(TEST_LOGS)/lint.log 2>&1 & lint=$$!; \
	if wait $$build; then \
	    tail -n 1 $(TEST_LOGS)/image.log; \
	    $(MAKE) --no-print-directory --keep-going -o image -o image-serve test-sdk test-container; suites=$$?; \
	else echo "image build failed:" >&2; tail -n 40 $(TEST_LOGS)/image.log >&2; suites=1; fi; \
	wait $$lint; lint=$$?; cat $(TEST_LOGS)/lint.log; \
	exit $$(( unit || suites || lint ))

# --- Docker (see docs/image.md) -------------------------------------------------------------
IMAGE_NAME ?= sagemaker-image-classifier
IMAGE_TAG ?= latest

# Host prerequisites (engine, Compose, base image) and the offline wheelhouse, side by side (on a
# fresh host the debootstrap base and the wheelhouse take about 40 s of one core each), then the
# build. Only the image reference reaches stdout, so it is alone on the last line.
prepare_build = scripts/build_wheelhouse.sh & wheels=$$!; \
	base=$$(scripts/docker_host_prerequisites.sh); ready=$$?; wait $$wheels && [ $$ready = 0 ]

image:
	@$(prepare_build) && \
	./build_and_push.sh --no-push --name $(IMAGE_NAME) --tag $(IMAGE_TAG) --base-image "$$base"

# The serving image: the Dockerfile's serve stage (no torch; docs/image.md), named IMAGE_NAME-serve.
image-serve:
	@$(prepare_build) && \
	./build_and_push.sh --no-push --serve-only --name $(IMAGE_NAME)-serve --tag $(IMAGE_TAG) --base-image "$$base"

# The main job in Docker: train on the digits, serve, classify test images, stop the server.
demo: image $(STAMP)/venv
	local_test/run_demo.sh $(IMAGE_NAME):$(IMAGE_TAG)

# docker-registry (push test) comes with --with-registry; moto comes from .venv-sdk. One worker
# per core, a file per worker at a time in the conftest's order; the workers share one trained job.
test-container: image image-serve $(STAMP)/venv $(STAMP)/venv-sdk
	@scripts/docker_host_prerequisites.sh --with-registry >/dev/null
	CONTAINER_TEST_IMAGE=$(IMAGE_NAME):$(IMAGE_TAG) CONTAINER_TEST_SERVE_IMAGE=$(IMAGE_NAME)-serve:$(IMAGE_TAG) \
	    $(VENV)/bin/python -m pytest tests/container -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# ruff everywhere; mypy (configured in pyproject.toml) over the runtime in its venv and over
# the client in the SDK's venv, where each one's libraries are installed.
lint: $(STAMP)/venv $(STAMP)/venv-sdk
	$(VENV)/bin/ruff check container classifier_client tools tests local_test benchmarks
	$(VENV)/bin/mypy -p classifier
	$(VENV)/bin/mypy --python-executable $(VENV_SDK)/bin/python -p classifier_client

# The program and a bare loop in fp32 and auto precision, interleaved (ratios; goals: auto/fp32
# >= 2.5 at 224 px on AMX, program/bare >= 0.9), the loader alone, the channels_last matrix;
# then TensorBoard on against off (goal >= 0.98).
bench-train: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/training_bench.py
	$(VENV)/bin/python benchmarks/training_bench.py --watching

# The same jobs in fp32 and auto over 3 seeds on two data sets: test accuracy and its spread.
bench-precision: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/precision_parity.py

# Needs wrk (or ab): apt-get install wrk apache2-utils.
# With the image: its start-up, and batch transform (sm-classifier transform --local) over 4,000
# JPEGs against the in-process ceiling on the same files.
bench-serve: image $(STAMP)/venv $(STAMP)/venv-sdk
	$(VENV)/bin/python benchmarks/serving_bench.py --image $(IMAGE_NAME):$(IMAGE_TAG)

# Training throughput with debugger hook + rules + profiler on vs all off, at two step sizes
# (ratios; targets: <= 5% overhead at 64 px / batch 64, <= 10% at 32 px / batch 16).
bench-debugger: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/debugger_overhead.py

# Every debugger rule's verdict on healthy and sabotaged real jobs (false alarms, detections).
bench-rules: $(STAMP)/venv
	$(VENV)/bin/python benchmarks/rules_matrix.py

clean:
	rm -rf $(STAMP) $(VENV) $(VENV_SDK) $(VENV_TOOLS)
