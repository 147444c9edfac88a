# Everything a fresh machine needs: `make demo` and `make test` create the environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench ui monitor-ui prefect-ui deploy worker lock clean

# Prefect state of the demo stays in the project, so `make prefect-ui` shows its runs.
PREFECT_HOME ?= $(CURDIR)/.mlops/prefect
WITH_PREFECT_HOME = mkdir -p $(PREFECT_HOME) && PREFECT_HOME=$(PREFECT_HOME)

install: $(STAMP)

# Bytecode is compiled at install: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every
# process would otherwise compile Prefect, MLflow and Evidently from source at each import.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(WITH_PREFECT_HOME) $(BIN)/mlops demo

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
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/drift.py
	$(BIN)/python benchmarks/capture_frame.py
	$(BIN)/python benchmarks/monitor.py

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.mlops/mlflow.db --port 5000

# The Evidently workspace the monitoring runs write to: one project per model.
monitor-ui: $(STAMP)
	$(BIN)/evidently ui --workspace $(CURDIR)/.mlops/evidently --port 8000

# The Prefect server of `make prefect-ui` (`make prefect-ui PREFECT_PORT=4300` for another
# port). The UI in the browser calls the API at PREFECT_UI_API_URL, which Prefect would
# otherwise take from PREFECT_API_URL or port 4200 whatever --port says: it is set to this
# server's own API (override it when the browser reaches the server by another address).
PREFECT_HOST ?= 127.0.0.1
PREFECT_PORT ?= 4200
PREFECT_SERVER_URL = http://$(PREFECT_HOST):$(PREFECT_PORT)/api
PREFECT_UI_API_URL ?= $(PREFECT_SERVER_URL)

prefect-ui: $(STAMP)
	$(WITH_PREFECT_HOME) PREFECT_SERVER_API_HOST=$(PREFECT_HOST) \
	  PREFECT_SERVER_API_PORT=$(PREFECT_PORT) PREFECT_API_URL=$(PREFECT_SERVER_URL) \
	  PREFECT_UI_API_URL=$(PREFECT_UI_API_URL) \
	  $(BIN)/prefect server start --host $(PREFECT_HOST) --port $(PREFECT_PORT)

# Deployments from prefect.yaml, schedules and event triggers included, on a running server
# (`make prefect-ui`, or PREFECT_API_URL=... for another one), then a worker that runs them.
# Without an API URL the CLI would deploy to a throw-away temporary server. A port or host
# named on the command line (`make deploy PREFECT_PORT=4300`) wins over a PREFECT_API_URL
# exported in the shell.
PREFECT_API_URL ?= $(PREFECT_SERVER_URL)
ifneq ($(filter command line,$(origin PREFECT_PORT) $(origin PREFECT_HOST)),)
ifneq ($(origin PREFECT_API_URL),command line)
PREFECT_API_URL = $(PREFECT_SERVER_URL)
endif
endif
WITH_PREFECT_API = $(WITH_PREFECT_HOME) PREFECT_API_URL=$(PREFECT_API_URL)

# Environments: `make deploy ENV=prod` puts the deployments on prod's work pool (`work_pool`
# in the [env.prod] profile of mlops.toml; WORK_POOL=... names another) and `make worker
# ENV=prod` runs a worker on it with MLOPS_ENV=prod, so its flow runs use prod's settings.
# Without ENV: the project's own work_pool (default mlops-local).
ENV ?=
ENV_VARS = $(if $(ENV),MLOPS_ENV=$(ENV) )
# read once, when a recipe first needs it (a profile error is printed by mlops)
ifeq ($(origin WORK_POOL),undefined)
WORK_POOL = $(eval WORK_POOL := $(shell $(ENV_VARS)$(BIN)/mlops config show --json | \
  $(BIN)/python -c 'import json, sys; t = sys.stdin.read(); print(t and json.loads(t)["work_pool"])'))$(WORK_POOL)
endif
CHECK_POOL = @test -n "$(WORK_POOL)" || { echo "no work pool for ENV=$(ENV): see the error \
  above, or name one with WORK_POOL=..." >&2; exit 2; }

deploy: $(STAMP)
	$(CHECK_POOL)
	$(WITH_PREFECT_API) $(BIN)/prefect work-pool inspect $(WORK_POOL) >/dev/null 2>&1 || \
	  $(WITH_PREFECT_API) $(BIN)/prefect work-pool create $(WORK_POOL) --type process
	$(WITH_PREFECT_API) MLOPS_WORK_POOL=$(WORK_POOL) $(BIN)/prefect --no-prompt deploy --all

worker: $(STAMP)
	$(CHECK_POOL)
	$(WITH_PREFECT_API) $(ENV_VARS)$(BIN)/prefect worker start --pool $(WORK_POOL)

# Regenerate the pinned set after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra monitoring --extra kfp --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mlops .pytest_cache
