# Everything a fresh machine needs: `make demo` and `make test` create the environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench ui prefect-ui clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --quiet -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(BIN)/mlops demo

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check mlops flows tests benchmarks
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///.mlops/mlflow.db --port 5000

prefect-ui: $(STAMP)
	PREFECT_HOME=$(CURDIR)/.mlops/prefect $(BIN)/prefect server start

# Regenerate the pinned set after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra monitoring --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mlops .pytest_cache
