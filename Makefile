# The front door: `make run` sets everything up and starts the service; `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
LOCAL_DB := longjobs
PORT ?= 5000
# Only this machine reaches `make run`'s API (it has no token unless API_TOKENS is set); HOST=0.0.0.0 opens it.
HOST ?= 127.0.0.1
export PATH := $(BIN):$(PATH)
# .env is for honcho; without this the flask CLI prints a tip about python-dotenv on every run.
export FLASK_SKIP_DOTENV := 1

.PHONY: run test lint chaos bench r

# `make run` installs what running needs: the runtime packages and honcho (pinned in requirements-dev.txt);
# `make test`, `make lint` and `make bench` install the rest.
$(VENV)/runtime: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt $$(grep '^honcho==' requirements-dev.txt)
	touch $@

$(VENV)/installed: $(VENV)/runtime requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# R runs the R models (models/*.R): Debian's r-base-core and r-cran-jsonlite, installed where they are missing.
r:
	@Rscript --vanilla -e 'library(jsonlite)' >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends r-base-core r-cran-jsonlite; }

# Dashboard credentials made up once for local use; honcho reads this file. Never committed.
.env:
	umask 077 && echo "RQ_DASHBOARD_PASSWORD=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')" > $@

run: $(VENV)/runtime .env r
ifndef DATABASE_URL
	psql -h 127.0.0.1 -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$(LOCAL_DB)'" | grep -q 1 \
		|| createdb -h 127.0.0.1 $(LOCAL_DB)
endif
	flask db upgrade
	@echo
	@echo "  The page:  http://$(HOST):$(PORT)/        (run a model, watch it, see its result)"
	@echo "  API docs:  http://$(HOST):$(PORT)/docs   (the models: http://$(HOST):$(PORT)/models)"
	@echo "  Dashboard: http://$(HOST):$(PORT)/rq     (user admin, password $$(sed -n 's/^RQ_DASHBOARD_PASSWORD=//p' .env))"
	@echo "  Ctrl-C stops web, worker and clock."
	@echo
# Job control (set -m) gives honcho the terminal: Ctrl-C reaches it alone, not make, and its 130 is a stop.
	set -m; PORT=$(PORT) GUNICORN_CMD_ARGS="--bind $(HOST):$(PORT)" honcho start web worker clock || [ $$? -eq 130 ]

lint: $(VENV)/installed
	ruff check .
	ruff format --check .
	mypy

# The tests that run a worker run again on RQ's own code paths (WORKER_FAST_PATH=off): both paths keep every promise.
WORKER_TESTS := $(addprefix tests/test_,worker equivalence lifecycle rq_tools dashboard faults processes r_processes \
	stalls isolation tls simulations)
WORKER_TESTS := $(addsuffix .py,$(WORKER_TESTS))

test: lint r
	python -m pytest
	WORKER_FAST_PATH=off python -m pytest $(WORKER_TESTS)

# The fault-injection suite alone (make test runs it too), printing the recovery times it measures.
chaos: $(VENV)/installed
	python -m pytest -m chaos -s

# Speed and memory against baselines measured in the same run; writes bench/results.md. Needs wrk.
bench: $(VENV)/installed r
	command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	python -m bench.run
