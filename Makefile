# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The CPU build that lies on this machine's disk; a GPU user picks theirs, e.g.
#   make run TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH ?= torch==2.13.0
PIP := $(BIN)/pip --quiet --disable-pip-version-check
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: install run test test-fast ui serve bench clean team-up team-down team-status

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH)
	@# Every later install is held to the torch just installed, so no package pulls another build.
	@# From pip's metadata, not `import torch`, which warns "Failed to initialize NumPy" before numpy is in.
	$(BIN)/python -c "from importlib.metadata import version; print('torch==' + version('torch').split('+')[0])" > $(VENV)/constraints.txt
	$(PIP) install -e ".[dev,team]" -c $(VENV)/constraints.txt
	@touch $@

run: install
	$(BIN)/rnnflow train

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

# The local MLflow UI; team mode's tracking server listens on 5050, so both can run at once.
UI_PORT ?= 5000
ui: install
	@$(BIN)/python -m rnnflow.ops.services free-port 127.0.0.1 $(UI_PORT) "pick another with make ui UI_PORT=N"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(UI_PORT)

serve: install
	$(BIN)/rnnflow serve

# Team mode on this machine (README "Team mode"): PostgreSQL, MLflow with sign-in, Prefect with
# its API protected and two workers; state, logs and secrets in $(RNNFLOW_TEAM_HOME) or ./.team
team-up: install
	$(BIN)/rnnflow team up

team-down: install
	$(BIN)/rnnflow team down

team-status: install
	$(BIN)/rnnflow team status

# The quick benchmarks: training speed (under 3 minutes), forecast accuracy on every file in
# ../shared/data (about 2 minutes), tuning (the plain Optuna loop against rnnflow tune), the
# monitor/retrain loop replayed on nottem (benchmarks/replay.py); without
# --quick they are the full ones (benchmarks/RESULTS.md).
# Darts and statsforecast come with the `bench` extra, held to the torch already installed;
# without them their columns say "not installed" or are left out.
bench: $(VENV)/.bench-installed
	$(BIN)/python benchmarks/train_speed.py --quick
	$(BIN)/python benchmarks/accuracy.py --quick
	$(BIN)/python benchmarks/tune_speed.py --quick
	$(BIN)/python benchmarks/replay.py --quick

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PIP) install -e ".[dev,team,bench]" -c $(VENV)/constraints.txt || echo "the bench extra did not install: benchmarking without Darts and statsforecast"
	@touch $@

clean:
	rm -rf $(VENV) mlflow.db mlartifacts mlruns .pytest_cache
