# workshop-runner — developer entry points. `make demo` and `make test` are the front door.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv devcluster test test-unit test-integration lint fmt demo bench up down clean lock

help:
	@echo "make demo   - local control plane + simulated operators + 10 users through the Job path"
	@echo "make test   - lint, then every test tier (unit, integration, e2e, faults)"
	@echo "make lint | fmt | bench | image | lock | up | down | clean"

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

# requirements.lock: the image's dependencies with hashes, from pyproject.toml (mk/lock.py).
lock: $(STAMP)
	$(BIN)/python mk/lock.py

devcluster: $(STAMP)
	$(BIN)/python -m devcluster build

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(MAKE) --no-print-directory hadolint

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint devcluster
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: devcluster
	$(BIN)/pytest -m integration

up: devcluster
	$(BIN)/python -m devcluster up --openshift --simulate --kubelet

down: $(STAMP)
	$(BIN)/python -m devcluster down

demo: devcluster
	$(BIN)/python -m devcluster.demo

bench: devcluster
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build

include mk/image.mk
