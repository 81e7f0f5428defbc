# llm-resilience: `make demo` and `make test` are the two commands; both install what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
INSTALL_INPUTS := requirements.lock requirements-nodeps.lock pyproject.toml deployments/install.sh tasks/_twin_md5.c tasks/_md5_lanes.c
# Named by the inputs' content, not their mtime: any change to them means a new install.
STAMP := $(VENV)/.installed-$(shell cat $(INSTALL_INPUTS) 2>/dev/null | sha256sum | cut -c1-16)
# PostgreSQL (the server's database with LLMR_DATABASE=postgresql) keeps its programs off PATH.
PLATFORM_PACKAGES := haproxy redis-server postgresql:/usr/lib/postgresql/15/bin/initdb
TEST_PACKAGES := $(PLATFORM_PACKAGES) chromium b3sum rclone
PYTEST_ARGS ?=

.PHONY: help install system-deps test-system-deps stack-up stack-down stack-status deploy demo test test-unit

help:
	@echo "make demo          install, start the local platform, deploy every flow, seed demo data, run every"
	@echo "                   deployment once (drills, failover and failback too; ~6 min here), print a summary"
	@echo "make test          install and run the whole suite (unit, integration, browser end-to-end)"
	@echo "make stack-up      start the local two-region platform (idempotent)"
	@echo "make stack-status  component, URL, PID, healthy"
	@echo "make stack-down    stop every process the launcher started, by PID"
	@echo "make deploy        deploy prefect.yaml's local-pool deployments and the automations to the platform's server"
	@echo "make test-unit     only the unit tests (no platform needed)"

$(STAMP): $(INSTALL_INPUTS)
	bash deployments/install.sh
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

system-deps:
	@bash deployments/system_packages.sh $(PLATFORM_PACKAGES)

test-system-deps:
	@bash deployments/system_packages.sh $(TEST_PACKAGES)

stack-up: system-deps $(STAMP)
	$(PY) -m deployments.stack up

stack-down:
	@if [ -x $(PY) ]; then $(PY) -m deployments.stack down; else echo "no .venv: the launcher never ran here"; fi

stack-status: $(STAMP)
	@$(PY) -m deployments.stack status

deploy: stack-up
	$(PY) -m deployments.deploy

demo: deploy
	$(PY) -m deployments.demo

# The whole suite on SQLite, then the integration tier again with the Prefect server on PostgreSQL;
# each pass lists its 15 slowest tests, to watch the 45-minute budget.
test: test-system-deps $(STAMP)
	$(PY) -m pytest -ra --durations=15 $(PYTEST_ARGS)
	# The integration tier again with the server on PostgreSQL. Drills exercise the gateway and the
	# regions, and the replication copy tests the two stores, not the server's database, so they run
	# once (above); test_replication_sync_and_events keeps replication's runs and events on PostgreSQL.
	LLMR_TEST_DATABASE=postgresql $(PY) -m pytest -ra --durations=15 tests/integration \
		--deselect tests/integration/test_failover_drills.py --deselect tests/integration/test_regional_failover.py \
		--deselect tests/integration/test_replication.py --deselect tests/integration/test_replication_single_read.py \
		--deselect tests/integration/test_replication_source_parts.py $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -ra tests/unit $(PYTEST_ARGS)
