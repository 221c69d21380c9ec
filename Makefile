# fairwatch: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install test test-fast demo bench docs stack-up stack-down stack-status clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[embedded,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Tests start the local stack themselves (scripts/stack up is idempotent) unless FAIRWATCH_KAFKA,
# FAIRWATCH_CLICKHOUSE and FAIRWATCH_ALERTMANAGER point at running services; the local stack is
# stopped afterwards (KEEP_STACK=1 keeps it).
# Every test on every core (xdist); tests that run worker processes share a group (one at a time);
# tests marked exclusive stop a shared service, so they run alone afterwards. helm (built once into
# the cache) builds in the background meanwhile; the deploy tests wait for it.
test: $(STAMP)
	scripts/tools helm >/dev/null 2>&1 & scripts/stack install && scripts/stack install --cluster
	status=0; \
	$(PY) -m pytest -n auto --dist loadgroup -m "not exclusive" $(PYTEST_ARGS) || status=$$?; \
	$(PY) -m pytest -n 0 -m exclusive $(PYTEST_ARGS) || status=$$?; \
	if [ -z "$(KEEP_STACK)" ]; then scripts/stack down; scripts/stack down --cluster; fi; exit $$status

# Everything that needs no service (no Kafka, no ClickHouse server, no Alertmanager): <= 3 minutes.
# FAIRWATCH_NO_SERVICES makes scripts/stack refuse to start anything: a test that would start a
# service without carrying the services marker fails instead of passing slowly.
test-fast: $(STAMP)
	FAIRWATCH_NO_SERVICES=1 $(PY) -m pytest -m "not services" -n auto $(PYTEST_ARGS)

demo: $(STAMP)
	scripts/demo

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_counts.py
	$(PY) benchmarks/bench_drift.py
	$(PY) benchmarks/bench_differentials.py
	$(PY) benchmarks/bench_estimates.py
	$(PY) benchmarks/bench_score_curves.py
	$(PY) benchmarks/bench_identification.py --check-store
	$(PY) benchmarks/bench_status.py
	$(PY) benchmarks/bench_scenario.py
	$(PY) benchmarks/bench_misclassification.py
	$(PY) benchmarks/bench_detection.py
	$(PY) benchmarks/bench_disparity.py
	$(PY) benchmarks/bench_clusters.py
	$(PY) benchmarks/bench_auditlog.py
	$(PY) benchmarks/bench_signing.py
	$(PY) benchmarks/bench_profile.py
	$(PY) benchmarks/bench_latency.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_replay.py
	$(PY) benchmarks/bench_two_person.py
	$(PY) benchmarks/bench_acquisition.py
	$(PY) benchmarks/bench_capacity.py

# The documentation site (mkdocs.yml, docs/) into site/; warnings fail the build.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

stack-up:
	scripts/stack up
stack-down:
	scripts/stack down
stack-status:
	scripts/stack status

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info streams/*.egg-info
