# Newsflow — `make help` lists the targets and the variables you can override, e.g.
#   make run KAFKA_PORT=19092 ES_PORT=19200 FEEDS=my-feeds.yaml
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STACK := deploy/local/stack.sh

# Variables: override on the command line (make run KAFKA_PORT=19092) or in the environment.
KAFKA_HOST ?= 127.0.0.1 ## Kafka host the pipeline talks to
KAFKA_PORT ?= 9092 ## Kafka port (also the local stack's listener)
KAFKA_BROKERS ?= 1 ## local Kafka nodes; 3 = a KRaft cluster on KAFKA_PORT, +2, +4 (topics: replication 3, min ISR 2)
ES_HOST ?= 127.0.0.1 ## Elasticsearch host
ES_PORT ?= 9200 ## Elasticsearch port (also the local stack's HTTP port)
METRICS_PORT ?= 9464 ## first /metrics port: poller +0, processor +1, indexer +2
FEEDS ?= newsflow/data/feeds.yaml ## feed list for `make run` (default: the one shipped in the package)
DEMO_PORT ?= 8765 ## port of the offline demo site (make demo)
PYTEST_ARGS ?= ## extra pytest arguments, e.g. PYTEST_ARGS='-x -k lag'
REPLAY_ARGS ?= ## arguments of `newsflow dlq replay` (make replay)
EVAL_ARGS ?= ## arguments of bench/eval_metadata.py (make eval), e.g. EVAL_ARGS='--limit 20'
KIBANA_URL ?= http://127.0.0.1:5601 ## Kibana that `make kibana` imports the saved objects into
KIBANA_AUTH ?= ## user:password for `make kibana` (empty = no authentication)
VARS := KAFKA_HOST KAFKA_PORT KAFKA_BROKERS ES_HOST ES_PORT METRICS_PORT FEEDS DEMO_PORT PYTEST_ARGS REPLAY_ARGS EVAL_ARGS KIBANA_URL KIBANA_AUTH
# The "## doc" above leaves trailing blanks in the values: strip them.
$(foreach v,$(VARS),$(eval override $(v) := $(strip $($(v)))))

export KAFKA_PORT KAFKA_BROKERS ES_PORT
# Every node of the local cluster is a bootstrap server; from 3 nodes on, topics are replicated 3
# times and a write needs 2 in-sync replicas (one broker may be down).
export NEWSFLOW_KAFKA_BOOTSTRAP ?= $(shell seq -s, -f '$(KAFKA_HOST):%g' $(KAFKA_PORT) 2 $$(( $(KAFKA_PORT) + 2 * ($(KAFKA_BROKERS) - 1) )))
export NEWSFLOW_TOPIC_REPLICATION ?= $(shell echo $$(( $(KAFKA_BROKERS) < 3 ? $(KAFKA_BROKERS) : 3 )))
export NEWSFLOW_TOPIC_MIN_INSYNC ?= $(shell echo $$(( $(KAFKA_BROKERS) < 3 ? 1 : 2 )))
export NEWSFLOW_ES_URL ?= http://$(ES_HOST):$(ES_PORT)
export NEWSFLOW_METRICS_PORT ?= $(METRICS_PORT)
export NEWSFLOW_FEEDS_FILE ?= $(abspath $(FEEDS))
export NEWSFLOW_CORPUS ?= $(abspath ../shared/corpus)

.PHONY: help install lock promtool up down status logs topics templates run demo stop test test-unit test-chaos bench eval replay kibana clean

help: ## list the targets and variables
	@echo "Newsflow: feeds -> Kafka -> enrichment -> Elasticsearch. Quick start: make run, make test."
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'
	@echo
	@echo "Variables (current value):"
	@$(foreach v,$(VARS),printf "  \033[33m%-13s\033[0m %-20s %s\n" "$(v)" "$(value $(v))" "$$(grep -E '^$(v) \?=' $(firstword $(MAKEFILE_LIST)) | sed 's/.*## //')";)
	@echo "  (every setting is also a NEWSFLOW_* variable: .venv/bin/newsflow config --markdown)"

# Dependencies come only from the hashed lock (pip refuses anything unpinned or with another hash);
# Newsflow itself is then installed editable, without resolving dependencies again.
$(BIN)/newsflow: pyproject.toml requirements.lock requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

install: $(BIN)/newsflow ## create .venv and install Newsflow from the hashed lock (requirements-dev.lock)

lock: install ## regenerate requirements.lock (runtime) and requirements-dev.lock (+ dev) with hashes from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes \
	  --custom-compile-command "make lock" -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev -c requirements.lock --python-version 3.11 --generate-hashes \
	  --custom-compile-command "make lock" -o requirements-dev.lock

# promtool runs the unit tests of deploy/prometheus/alerts.yml (tests/ops/test_alert_rules.py). Prometheus'
# release binaries live on GitHub, which is out of reach: promtool comes from Debian's prometheus package
# (downloaded, not installed: only the promtool binary is unpacked, in seconds). Building it from the Go
# module proxy also works (`GOBIN=$$PWD/.local/bin go install $(PROMTOOL_MODULE)`) but takes 10-40 min on
# 2 cores, too long for `make test`.
PROMTOOL := .local/bin/promtool
PROMTOOL_MODULE := github.com/prometheus/prometheus/cmd/promtool@v0.316.0

promtool: ## promtool into .local/bin from Debian's prometheus package (a note instead where apt-get cannot fetch it)
	@if [ -x $(PROMTOOL) ]; then echo "$(PROMTOOL) is there"; \
	elif command -v apt-get >/dev/null && command -v dpkg >/dev/null; then \
	  tmp=$$(mktemp -d) && (cd $$tmp && apt-get download -q prometheus >/dev/null 2>&1) \
	    && dpkg -x $$tmp/prometheus_*.deb $$tmp/x && mkdir -p .local/bin && cp $$tmp/x/usr/bin/promtool $(PROMTOOL) \
	    && echo "promtool from Debian: $$($(PROMTOOL) --version 2>&1 | head -1)" \
	    || echo "apt-get could not fetch Debian's prometheus package: no promtool, the alert unit tests will be skipped"; \
	  rm -rf $$tmp; \
	else echo "no apt-get: no promtool, the alert unit tests will be skipped (or: GOBIN=$$PWD/.local/bin go install $(PROMTOOL_MODULE))"; fi

up: install ## start the local Kafka + Elasticsearch (downloads them the first time) and apply the topology
	bash $(STACK) up
	$(BIN)/newsflow topology

down: ## stop the local stack (only what it started)
	bash $(STACK) down

status: install ## stack status, then `newsflow status` (stages, lag, feeds, ES, DLQ)
	-bash $(STACK) status
	-$(BIN)/newsflow status

logs: ## the local stack's logs (the stages log to the terminal of `make run`)
	bash $(STACK) logs

topics: install ## create the Kafka topics, set declared configs (raw retention) on existing ones (idempotent; part of `make up`)
	$(BIN)/newsflow topology

templates: install ## apply the Elasticsearch index template (idempotent; part of `make up`)
	$(BIN)/newsflow topology

run: up ## run the whole pipeline on the local stack until Ctrl-C (see `make status`)
	$(BIN)/newsflow run

demo: up ## offline demo: serve a local news site, run the pipeline on it, print search hits
	$(BIN)/python -m newsflow.demo --port $(DEMO_PORT)

stop: install ## stop a `newsflow run` started elsewhere (SIGTERM, waits until it is gone)
	$(BIN)/newsflow stop

test: up promtool ## the whole test suite on the real local stack (fetches promtool first)
	@# uv's cache gets PyPI's metadata of the locked versions here (`make lock` into copies of the locks), so
	@# the lock test can re-lock offline: tests reach loopback only
	@mkdir -p .local/lock-check && cp requirements.lock requirements-dev.lock .local/lock-check/ && \
	  $(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --quiet \
	    -o .local/lock-check/requirements.lock && \
	  $(BIN)/uv pip compile pyproject.toml --extra dev -c requirements.lock --python-version 3.11 --generate-hashes \
	    --quiet -o .local/lock-check/requirements-dev.lock || echo "note: uv could not reach PyPI; the lock test will be skipped"
	$(BIN)/pytest -m 'not chaos' $(PYTEST_ARGS)

test-unit: install ## tests that need neither Kafka nor Elasticsearch
	$(BIN)/pytest -m 'not integration and not chaos' $(PYTEST_ARGS)

test-chaos: up ## fault-injection + hostile-input suites; chaos runs its own Kafka/ES (9192/9202) and a 3-broker cluster (9292-9297), ~20 min
	$(BIN)/pytest -v -m 'chaos or hostile' tests/chaos tests/hostile $(PYTEST_ARGS)

bench: up ## benchmark report: bench/report.md and plots (never part of `make test`; BENCH_ARGS=--quick)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

eval: install ## metadata accuracy on real publisher pages, Newsflow vs trafilatura: bench/eval.md (needs no stack)
	$(BIN)/python bench/eval_metadata.py $(EVAL_ARGS)

replay: install ## re-inject dead letters after a fix: newsflow dlq replay $(REPLAY_ARGS)
	$(BIN)/newsflow dlq replay $(REPLAY_ARGS)

kibana: ## import the data view, saved searches and dashboard (deploy/kibana/*.ndjson) into KIBANA_URL
	@for f in deploy/kibana/*.ndjson; do \
	  echo "importing $$f into $(KIBANA_URL)"; \
	  out=$$(curl -sS --fail-with-body -X POST "$(KIBANA_URL)/api/saved_objects/_import?overwrite=true" \
	    -H 'kbn-xsrf: true' $(if $(KIBANA_AUTH),-u '$(KIBANA_AUTH)') --form file=@$$f) || { echo "$$out"; exit 1; }; \
	  echo "$$out" | grep -Eq '"success" *: *true' || { echo "import failed: $$out"; exit 1; }; \
	  echo "  $$(echo "$$out" | grep -Eo '"successCount" *: *[0-9]+')"; \
	done

clean: down ## remove the venv and all local state (downloads, data, logs)
	rm -rf $(VENV) .local .pytest_cache
