# Newsflow — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STACK := deploy/local/stack.sh

export KAFKA_PORT ?= 9092
export ES_PORT ?= 9200
export NEWSFLOW_KAFKA_BOOTSTRAP ?= 127.0.0.1:$(KAFKA_PORT)
export NEWSFLOW_ES_URL ?= http://127.0.0.1:$(ES_PORT)
export NEWSFLOW_CORPUS ?= $(abspath ../shared/corpus)
FEEDS ?= deploy/feeds.yaml
export NEWSFLOW_FEEDS_FILE ?= $(abspath $(FEEDS))
PYTEST_ARGS ?=

.PHONY: help install up down status logs topics templates run demo stop test test-unit test-chaos bench kibana replay clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'
	@echo "Variables: KAFKA_PORT=$(KAFKA_PORT) ES_PORT=$(ES_PORT) FEEDS=$(FEEDS) NEWSFLOW_CORPUS=$(NEWSFLOW_CORPUS)"

$(BIN)/newsflow: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $@

install: $(BIN)/newsflow ## create .venv and install Newsflow with pinned dependencies

up: ## start the local Kafka and Elasticsearch (downloads them the first time)
	bash $(STACK) up

down: ## stop the local stack (only what it started)
	bash $(STACK) down

status: install ## stack status, then `newsflow status`
	-bash $(STACK) status
	-$(BIN)/newsflow status

logs: ## tail the local stack's logs
	bash $(STACK) logs

topics: install up ## create the Kafka topics (idempotent)
	$(BIN)/newsflow topology

templates: install up ## apply the Elasticsearch index template (idempotent)
	$(BIN)/newsflow topology

run: install up ## run the whole pipeline on the local stack until Ctrl-C
	$(BIN)/newsflow run

demo: install up ## serve an offline site of feeds locally, run the pipeline on it, print search hits
	$(BIN)/python -m newsflow.demo

stop: ## stop a `make run` started in the background
	-pkill -TERM -f 'newsflow(\.cli)? run' || true

test: install up ## the whole test suite on the real local stack
	$(BIN)/pytest -m 'not chaos' $(PYTEST_ARGS)

test-unit: install ## tests that need neither Kafka nor Elasticsearch
	$(BIN)/pytest -m 'not integration and not chaos' $(PYTEST_ARGS)

clean: down ## remove the venv and all local state
	rm -rf $(VENV) .local .pytest_cache
