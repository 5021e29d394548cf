# The two commands of the README, and what they stand on. Every target is idempotent: a set-up step runs
# again only when its inputs (setup.cfg, spark-submit/pom.xml) changed or its output folder is gone.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
JARS := .jars
OPERATOR_SOURCES := $(shell find features/jvm -name '*.java' -o -name pom.xml) spark-submit/pom.xml
PROMETHEUS := .tools/prometheus
AIRFLOW := .tools/airflow
PYTEST_ARGS ?= --durations=15

.PHONY: help setup setup-after-venv demo test check-tools jars operators venv prometheus airflow postgresql chromium desk kafka-up kafka-down kafka-status lint bench-simulate bench-simulate-handbook bench-model bench-model-selection bench-stream bench-state-layout bench-delta-append bench-checkpoint-files bench-budget-window bench-cluster-drain bench-suite soak results config-docs clean clean-state

help:
	@echo "make demo   set up if needed, then run the system end to end on local defaults"
	@echo "make test   set up if needed, then run the whole test suite"
	@echo "make setup  only set up: .venv (Python deps), .jars (JVM jars via Maven, the stream's operators built from features/jvm), .tools/prometheus (Debian's package), .tools/airflow (Airflow's own venv), PostgreSQL's server and Chromium with its driver (Debian's packages, if missing)"

# .venv first (the steps after it use its uv and pyspark), then the rest side by side: Maven's two steps one
# after the other (one local repository), apt's two steps one after the other (one package database)
setup: check-tools $(VENV)/.installed
	@$(MAKE) --no-print-directory -j3 --output-sync=target setup-after-venv

setup-after-venv: $(JARS)/.fetched $(JARS)/operators/.built $(PROMETHEUS)/.fetched $(AIRFLOW)/.installed postgresql chromium

check-tools:
	@command -v $(PYTHON) >/dev/null || { echo "setup: $(PYTHON) not found; Python 3.10-3.13 is required" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))' || { echo "setup: Python 3.10-3.13 is required, found $$($(PYTHON) --version)" >&2; exit 1; }
	@command -v java >/dev/null || { echo "setup: java not found; Java 17 is required (apt-get install -y openjdk-17-jdk-headless)" >&2; exit 1; }
	@java -version 2>&1 | grep -qE 'version "(17|21)' || { echo "setup: Java 17 (or 21) is required, found: $$(java -version 2>&1 | head -1)" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "setup: mvn not found; Maven fetches the JVM jars (apt-get install -y maven)" >&2; exit 1; }

# uv (from PyPI) installs the dependencies: the versions pip would resolve, several times faster on a fresh
# machine. It tries its cache alone first (--offline) and the index when the cache lacks anything: PyPI has
# pyspark only as source, and the index's answer for it revalidates as modified, so uv would build pyspark
# again at every set-up (30 s, and 800 MB more in its cache each time).
UV_INSTALL = $(BIN)/uv pip install -q --python
venv: $(VENV)/.installed
$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q 'uv>=0.9,<1'
	$(UV_INSTALL) $(BIN)/python --offline -e '.[dev]' 2>/dev/null || $(UV_INSTALL) $(BIN)/python -e '.[dev]'
	@touch $@

jars: $(JARS)/.fetched
$(JARS)/.fetched: spark-submit/pom.xml spark-submit/fetch-jars.sh | $(VENV)/.installed
	spark-submit/fetch-jars.sh $(JARS) "$$($(BIN)/python -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
	@touch $@

# the stream's stateful operators (Java, features/jvm), built by Maven against the parent pom's Spark; the
# digest of their sources is kept beside the jar, and jobs/core/session.py refuses a jar built from other sources
operators: $(JARS)/operators/.built
$(JARS)/operators/.built: $(OPERATOR_SOURCES) | $(VENV)/.installed $(JARS)/.fetched
	mvn -B -q -f spark-submit/pom.xml -P operators package
	@rm -rf $(JARS)/operators && mkdir -p $(JARS)/operators
	cp $(JARS)/operators-build/fraud-operators.jar $(JARS)/operators/
	$(BIN)/python -c 'from jobs.core.session import operator_sources_digest; print(operator_sources_digest())' > $(JARS)/operators/sources.sha256
	@touch $@

# prometheus and promtool for the monitoring tests: Debian's package, unpacked here (no service, no root
# needed once apt's lists exist; run as root, `apt-get update` fetches them on a fresh machine)
prometheus: $(PROMETHEUS)/.fetched
$(PROMETHEUS)/.fetched:
	@rm -rf $(PROMETHEUS) && mkdir -p $(PROMETHEUS)/deb
	cd $(PROMETHEUS)/deb && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; } \
		|| { echo "setup: could not fetch Debian's prometheus package (apt-get download prometheus)" >&2; exit 1; }
	dpkg -x $(PROMETHEUS)/deb/prometheus_*.deb $(PROMETHEUS) && rm -rf $(PROMETHEUS)/deb
	$(PROMETHEUS)/usr/bin/promtool --version | head -1
	@touch $@

# Airflow in a virtual environment of its own: its pins (SQLAlchemy, Flask, ...) stay out of the product's
# .venv. The DAGs (spark-submit/schedules/dags) only call spark-submit/submit.sh, so they import nothing of it.
airflow: $(AIRFLOW)/.installed
$(AIRFLOW)/.installed: spark-submit/schedules/airflow-requirements.txt | $(VENV)/.installed
	@test -x $(AIRFLOW)/bin/python || $(PYTHON) -m venv $(AIRFLOW)
	$(UV_INSTALL) $(AIRFLOW)/bin/python --offline -r spark-submit/schedules/airflow-requirements.txt 2>/dev/null \
		|| $(UV_INSTALL) $(AIRFLOW)/bin/python -r spark-submit/schedules/airflow-requirements.txt
	@touch $@

# PostgreSQL's server binaries (Debian's package) for the tests' throwaway clusters (tests/postgres.py): the
# registry's and Airflow's database in production. Installed with apt when missing and this is root; after
# Prometheus's package is fetched, so that two apt commands never run at once under `make setup`'s -j3.
postgresql: | $(PROMETHEUS)/.fetched
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		[ "$$(id -u)" = 0 ] || { echo "setup: PostgreSQL's server is missing: sudo apt-get install -y postgresql-15" >&2; exit 1; }; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q postgresql-15 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -q postgresql-15 >/dev/null; } \
			|| { echo "setup: could not install Debian's postgresql-15" >&2; exit 1; }; }

# Debian's chromium and chromium-driver for the fraud desk's browser test (tests/test_desk.py, Selenium); after
# PostgreSQL, so that two apt commands never run at once
chromium: | postgresql
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
		[ "$$(id -u)" = 0 ] || { echo "setup: Chromium is missing: sudo apt-get install -y chromium chromium-driver" >&2; exit 1; }; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -q chromium chromium-driver >/dev/null; } \
			|| { echo "setup: could not install Debian's chromium and chromium-driver" >&2; exit 1; }; }

demo: setup
	$(BIN)/fraud demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the fraud desk on the local stream's topics and tables (FRAUD_DESK_SECRET: the login's shared secret)
desk: setup
	$(BIN)/fraud desk

kafka-up: setup
	$(BIN)/fraud kafka up
kafka-down:
	$(BIN)/fraud kafka down
kafka-status:
	$(BIN)/fraud kafka status

bench-simulate: setup
	$(BIN)/python benchmarks/simulate.py

bench-simulate-handbook: setup
	$(BIN)/python benchmarks/simulate.py --handbook

bench-model: setup
	$(BIN)/python benchmarks/model_figures.py --extra-seeds 1,2,3

bench-model-selection: setup
	$(BIN)/python benchmarks/model_selection.py

bench-stream: setup
	$(BIN)/python benchmarks/stream.py --profile --compare-without-warming --compare-tables-on-thread

bench-state-layout: setup
	$(BIN)/python benchmarks/state_layout.py

bench-delta-append: setup
	$(BIN)/python benchmarks/delta_append.py

bench-checkpoint-files: setup
	$(BIN)/python benchmarks/checkpoint_files.py

bench-budget-window: setup
	$(BIN)/python benchmarks/budget_window.py

# fraud stream drained from a backlog on local[2], on YARN (MiniYARNCluster, cluster mode), on local[2] again
bench-cluster-drain: setup
	$(BIN)/python benchmarks/cluster_drain.py

# fraud stream for 30 minutes at 400 tx/s on a broker of its own, through idle gaps, re-sends, malformed
# messages, labels, a broker restart and a kill -9: benchmarks/results/soak.json
soak: setup
	$(BIN)/python benchmarks/soak.py

# docs/results.md from benchmarks/results/*.json (tests/test_results_page.py keeps it current)
results: $(VENV)/.installed
	$(BIN)/python benchmarks/results_page.py

# docs/configuration.md's table of keys from the schema (jobs/core/settings.py; tests/test_config.py keeps it current)
config-docs: $(VENV)/.installed
	$(BIN)/python -m jobs.core.settings

# CI's run timed by phase on a fresh clone of HEAD (needs nothing set up here)
bench-suite:
	$(PYTHON) benchmarks/suite.py --keep

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean-state:
	-$(BIN)/fraud kafka down
	rm -rf .state

clean: clean-state
	rm -rf $(VENV) $(JARS) .tools build *.egg-info
