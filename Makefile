# The two commands of the README: `make up` (the embedded stack) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test

.PHONY: up test test-faults test-compose lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-service: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[service]'
	touch $@

# The embedded stack: SQLite, a filesystem broker, MLflow on local files, all under ./.gradq.
up: $(VENV)/.installed-service
	$(VENV)/bin/gradq up

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The suite but tests/faults, which stops and kills servers for minutes (make test-faults),
# and the real Docker engine's compose test (make test-compose).
test: lint
	$(PY) -m pytest --durations=15 --ignore=tests/faults --ignore=tests/compose/real_engine

test-faults: $(STAMP)
	$(PY) -m pytest tests/faults

# docker-compose.yml on a real Docker engine (started, as root, if none runs); the base images'
# stand-ins and gradq's image are cached by the engine, so only the first run builds them.
test-compose: $(STAMP)
	$(PY) -m pytest tests/compose/real_engine

$(VENV)/.installed-bench: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(PY) bench/core.py --write docs/benchmarks.md
	$(PY) bench/service.py --write docs/benchmarks.md
	$(PY) bench/pool_threads.py --write docs/benchmarks.md
	$(PY) bench/load.py --write docs/benchmarks.md
	$(PY) bench/scale.py --write docs/benchmarks.md

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
