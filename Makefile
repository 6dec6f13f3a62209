# The front door: `make run` sets everything up and starts the service; `make test` runs every test.
SHELL := /bin/bash
# Two environments: .venv holds requirements.txt alone (what Heroku installs: `make run` and the flask CLI use it, and
# the tests run the Procfile from it), made anew whenever that file changes; .venv-dev adds the tests and tools.
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
DEV_BIN := $(CURDIR)/.venv-dev/bin
PORT ?= 5000
# Only this machine reaches `make run`'s API (it has no token unless API_TOKENS is set); HOST=0.0.0.0 opens it.
HOST ?= 127.0.0.1
# Worker processes `make run` starts; each runs one task at a time.
WORKERS ?= 1
run: export PATH := $(BIN):$(PATH)
test lint chaos bench: export PATH := $(DEV_BIN):$(PATH)

.PHONY: run test lint chaos bench r

$(VENV)/requirements.txt: requirements.txt
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	cp requirements.txt $@

.venv-dev/installed: requirements.txt requirements-dev.txt
	test -x $(DEV_BIN)/python || python3 -m venv .venv-dev
	$(DEV_BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# R runs the R models (models/*.R): Debian's r-base-core and r-cran-jsonlite, installed where they are missing.
r:
	@Rscript --vanilla -e 'library(jsonlite)' >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends r-base-core r-cran-jsonlite; }

# Dashboard credentials made up once for local use; local.py and the flask CLI read this file. Never committed.
.env:
	umask 077 && echo "RQ_DASHBOARD_PASSWORD=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')" > $@

run: $(VENV)/requirements.txt .env r
	python -m longjobs.operations.local database
	flask db upgrade
	@echo
	@echo "  The page:  http://$(HOST):$(PORT)/        (run a model, watch it, see its result)"
	@echo "  API docs:  http://$(HOST):$(PORT)/docs   (the models: http://$(HOST):$(PORT)/models)"
	@echo "  Dashboard: http://$(HOST):$(PORT)/rq     (user admin, password $$(sed -n 's/^RQ_DASHBOARD_PASSWORD=//p' .env))"
	@echo "  Ctrl-C stops web, worker and clock: a running task gets 25 s to finish first (Ctrl-C again: at once)."
	@echo
	PORT=$(PORT) GUNICORN_CMD_ARGS="--bind $(HOST):$(PORT)" exec python -m longjobs.operations.local start web worker=$(WORKERS) clock

lint: .venv-dev/installed
	ruff check .
	ruff format --check .
	mypy

# The tests that run a worker run again on RQ's own code paths (WORKER_FAST_PATH=off): both paths keep every promise.
WORKER_TESTS := $(addprefix tests/test_,worker equivalence lifecycle rq_tools dashboard faults processes r_processes \
	stalls isolation tls simulations)
WORKER_TESTS := $(addsuffix .py,$(WORKER_TESTS))

test: lint r $(VENV)/requirements.txt
	python -m pytest
	WORKER_FAST_PATH=off python -m pytest $(WORKER_TESTS)

# The fault-injection suite alone (make test runs it too), printing the recovery times it measures.
chaos: .venv-dev/installed
	python -m pytest -m chaos -s

# Speed and memory against baselines measured in the same run; writes bench/results.md. Needs wrk.
bench: .venv-dev/installed r
	command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	python -m bench.run
