# emdsim: two commands on a fresh machine.
#   make run   - create .venv, install emdsim, run the default scenario, print where results are
#   make test  - same set-up, then the test suite (without tests marked `slow`)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
PYTEST_WORKERS ?= 2

.PHONY: setup run test test-fast test-slow test-all bench results lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "emdsim needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/emdsim $(ARGS)

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports

test: setup lint
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# the inner loop (rules, invariants, config, tables): no command-line runs, no processes, ~1.5 min on 2 cores
test-fast: setup lint
	$(BIN)/python -m pytest -m "not slow and not e2e" -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# the numbers the README quotes, regenerated with the machine and versions beside them
results: setup
	$(BIN)/python results/make_results.py

bench: setup
	$(BIN)/python benchmarks/bench_engine.py $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
