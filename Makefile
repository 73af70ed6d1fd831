# One task runner for llmmesh. The README's two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PROMPT ?= In two sentences, why does a production LLM gateway need rate limits?

.PHONY: run test install install-dev system-deps check protos protos-generate lint typecheck unit drills bench clean

## run: install the mesh into .venv, start the four services and stream an answer (Ctrl-C stops)
run: install
	$(BIN)/llmmesh up --chat "$(PROMPT)"

## test: install everything the tests need (redis-server included), then run every check
test: system-deps install-dev check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install: $(BIN)/python
	$(PIP) install --quiet -r requirements.txt -c constraints.txt

install-dev: $(BIN)/python
	$(PIP) install --quiet -r requirements-dev.txt -c constraints.txt

## system-deps: redis-server for the tests (they start their own on free ports)
system-deps:
	@command -v redis-server >/dev/null || scripts/install-system-deps

## check: protos (lint, generated code fresh, no breaking change), ruff, mypy, pytest
check: protos lint typecheck unit

protos:
	PATH="$(abspath $(BIN)):$$PATH" scripts/check-protos

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy libs/src services/router/src services/ratelimiter/src services/cache/src services/provider/src

unit:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow_drill"

## drills: every fault drill, slow ones included, with a table of expected vs observed
drills: system-deps install-dev
	$(BIN)/python -m tests.drills

## bench: measure the mesh against its upstream (about 3 minutes); rewrites docs/benchmarks.md
bench: system-deps install-dev
	$(BIN)/python -m bench.mesh

## protos-generate: regenerate the Python stubs in libs/ after editing protos/
protos-generate:
	PATH="$(abspath $(BIN)):$$PATH" buf generate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
