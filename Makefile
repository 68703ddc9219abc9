# Entry points of the CRM platform. Needs only Python 3.11+ and a package index:
# a pinned uv is bootstrapped into .tools/ so nothing installed by hand is needed.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(CURDIR)/.tools/bin/uv
RUN := $(UV) run --frozen

.DEFAULT_GOAL := help
.PHONY: help uv install run test lint fmt bench load clean-devstack

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

uv: $(UV)

install: uv ## Install every package of the workspace from uv.lock
	$(UV) sync --frozen

run: install ## Start the whole platform (embedded PostgreSQL/NATS/Redis under .devstack/)
	$(RUN) crm up

test: install ## Run the test suite against real embedded servers
	$(RUN) pytest -q

lint: install ## ruff + mypy + layer contracts (import-linter)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs/crm_lib services/*/crm_* gateway/crm_gateway dev/crm_dev
	$(RUN) lint-imports

fmt: install ## Format and autofix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

bench: install ## Benchmarks as same-run ratios, written to bench/results/*.md
	$(RUN) python -m bench.run

load: install ## Locust load test against a running platform (make run first)
	$(RUN) locust -f tests/load/locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:8000

clean-devstack: ## Delete local platform data (.devstack/)
	rm -rf .devstack
