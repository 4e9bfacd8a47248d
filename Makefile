# healthscore: run `make` (or `make help`) to see every target.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HS := $(BIN)/healthscore
STAMP := $(VENV)/.installed

DEMO_DIR ?= data/demo
DATA ?= $(DEMO_DIR)
AS_OF ?=
ACCOUNTS ?= 400
# MINIMAL=1: the demo data holds only the contract's required sources and columns.
MINIMAL ?=
OUT ?= outputs/metric_history.parquet
SEED ?= 7
CONFIG ?=
HORIZON ?=
TUNED ?= outputs/tuned-config.yaml
TRIALS ?= 30
TIMEOUT ?=
VERSION ?=
MODEL ?=
SCORES ?= outputs/scores.csv
REPORT ?= outputs/report.html
MONITOR ?= outputs/monitor.json
# The metric store: one DuckDB file every command reads and keeps up to date (validated
# sources, daily rollups, metric history, score history and alerts).
STORE ?= $(dir $(SCORES))store.duckdb
export HEALTHSCORE_STORE = $(STORE)
BACKFILL ?=
MLFLOW_PORT ?= 5000
REASON ?=
# train/retrain use CONFIG if given, else the tuned config when `make tune` wrote one.
TRAIN_CONFIG = $(or $(CONFIG),$(wildcard $(TUNED)))
MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export MLFLOW_TRACKING_URI

PYTEST_ARGS ?=
# `make test` runs the fast suite on this many processes (pytest-xdist); 1: serially.
TEST_WORKERS ?= 2


.PHONY: help install demo demo-data validate features docs train tune retrain promote score report mlflow-ui spark browser test test-slow test-all lock clean

help: ## Show this help
	@echo "healthscore: churn-predictive customer health scores"
	@echo
	@echo "Usage: make <target> [DATA=dir] [AS_OF=YYYY-MM-DD] [ACCOUNTS=n] [SEED=n]"
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "healthscore needs Python >= 3.11 (set PYTHON=...)")'
	@echo ">> creating $(VENV) from requirements.lock (first run takes ~2 minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## Create ./.venv with the pinned dependencies and the healthscore command

demo: install ## Run the whole pipeline on built-in demo data (from a fresh clone)
	$(MAKE) --no-print-directory demo-data DATA=$(DEMO_DIR)
	$(MAKE) --no-print-directory validate DATA=$(DEMO_DIR)
	$(MAKE) --no-print-directory features DATA=$(DEMO_DIR) OUT=$(DEMO_DIR)-outputs/metric_history.parquet STORE=$(DEMO_DIR)-outputs/store.duckdb
	$(MAKE) --no-print-directory train DATA=$(DEMO_DIR) STORE=$(DEMO_DIR)-outputs/store.duckdb
	$(MAKE) --no-print-directory score DATA=$(DEMO_DIR) SCORES=$(DEMO_DIR)-outputs/scores.csv BACKFILL=4
	$(MAKE) --no-print-directory report DATA=$(DEMO_DIR) SCORES=$(DEMO_DIR)-outputs/scores.csv REPORT=$(DEMO_DIR)-outputs/report.html
	@echo
	@echo ">> demo data:      $(DEMO_DIR) (ground truth in $(DEMO_DIR)-truth)"
	@echo ">> metric store:   $(DEMO_DIR)-outputs/store.duckdb (sources, rollups, metric and score history, alerts)"
	@echo ">> metric history: $(DEMO_DIR)-outputs/metric_history.parquet (an export of the store's)"
	@echo ">> model:          MLflow store $(MLFLOW_TRACKING_URI), model 'healthscore' @champion"
	@echo ">> scores:         $(DEMO_DIR)-outputs/scores.csv (this run's alerts: scores.alerts.csv)"
	@echo ">> forecast:       $(DEMO_DIR)-outputs/scores.forecast.json (the next three months, the quarter and the next 12 months)"
	@echo ">> monitoring:     $(DEMO_DIR)-outputs/scores.monitor.json (and the MLflow experiment healthscore-monitoring)"
	@echo ">> report:         $(DEMO_DIR)-outputs/report.html (open it in a browser)"
	@echo ">> experiments:    make mlflow-ui (it prints the links to the training and monitoring runs)"

demo-data: install ## Write simulated demo data to DATA (ACCOUNTS, SEED, MINIMAL=1 for required columns only)
	$(HS) demo-data --out $(DATA) --accounts $(ACCOUNTS) --seed $(SEED) $(if $(MINIMAL),--minimal)

validate: install ## Check DATA against the input data contract
	$(HS) validate --data $(DATA)

features: install ## Build the point-in-time metric history of DATA into OUT (AS_OF)
	$(HS) features --data $(DATA) --out $(OUT) $(if $(AS_OF),--as-of $(AS_OF)) $(if $(CONFIG),--config $(CONFIG))

train: install ## Learn from outcomes in DATA (AS_OF, HORIZON, CONFIG): backtest, MLflow, register, gate
	$(HS) train --data $(DATA) $(if $(AS_OF),--as-of $(AS_OF)) $(if $(HORIZON),--horizon $(HORIZON)) $(if $(TRAIN_CONFIG),--config $(TRAIN_CONFIG))

tune: install ## Optuna search on DATA's pre-backtest folds (TRIALS, TIMEOUT) into TUNED
	$(HS) tune --data $(DATA) --out $(TUNED) --trials $(TRIALS) $(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(AS_OF),--as-of $(AS_OF)) $(if $(CONFIG),--config $(CONFIG))

retrain: install ## Validate DATA, retrain on the newest outcomes; the gate decides on promotion
	$(MAKE) --no-print-directory validate DATA=$(DATA)
	$(MAKE) --no-print-directory train DATA=$(DATA)

score: install ## Score DATA as of AS_OF with the champion (or MODEL=uri) into SCORES (BACKFILL=n weekly runs)
	$(HS) score --data $(DATA) --out $(SCORES) $(if $(AS_OF),--as-of $(AS_OF)) $(if $(MODEL),--model $(MODEL)) $(if $(BACKFILL),--backfill $(BACKFILL)) $(if $(CONFIG),--config $(CONFIG))

monitor: install ## Freshness, coverage, drift and realised performance of DATA's scores (AS_OF, MODEL, STORE) into MONITOR
	$(HS) monitor --data $(DATA) --out $(MONITOR) $(if $(AS_OF),--as-of $(AS_OF)) $(if $(MODEL),--model $(MODEL)) $(if $(CONFIG),--config $(CONFIG))

report: install ## The HTML portfolio report and health cards of SCORES (DATA) into REPORT
	$(HS) report --data $(DATA) --scores $(SCORES) --out $(REPORT) $(if $(CONFIG),--config $(CONFIG))

mlflow-ui: install ## The MLflow UI on http://127.0.0.1:MLFLOW_PORT over the project's store (prints the runs links first)
	@$(HS) runs-url --port $(MLFLOW_PORT) $(if $(CONFIG),--config $(CONFIG))
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port $(MLFLOW_PORT)

spark: install ## Add Spark to ./.venv (pinned pyspark, built from its sdist, ~1 min) and check Java 17
	@command -v java >/dev/null || { echo ">> installing Java 17 (Debian's openjdk-17-jre-headless)"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; }
	@$(BIN)/python -c 'import pyspark' 2>/dev/null || $(BIN)/pip install --quiet --disable-pip-version-check -r requirements-spark.lock
	@$(BIN)/python -c 'import pyspark; print(">> pyspark", pyspark.__version__, "ready")'

browser: ## Install Debian's chromium and chromedriver for the report's browser test (as root)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then echo ">> chromium and chromedriver are installed"; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; fi

promote: install ## Make model VERSION the champion by hand (REASON="...")
	@test -n "$(VERSION)" -a -n "$(REASON)" || { echo 'usage: make promote VERSION=n REASON="why"'; exit 2; }
	$(HS) promote $(VERSION) --reason "$(REASON)" $(if $(CONFIG),--config $(CONFIG))

docs: install ## Regenerate docs/metrics.md from the metric catalog
	$(HS) catalog --out docs/metrics.md

test: install ## Run the test suite (fast tests; CI also runs test-slow)
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-slow: install ## Run the slow end-to-end tests (the make demo path)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: install ## Run every test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lock: ## Re-resolve the dependencies and rewrite requirements.lock
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^healthscore' > requirements.lock
	rm -rf .lock-venv

clean: ## Remove generated data and outputs, metric stores included (keeps .venv)
	rm -rf data outputs test-artifacts .pytest_cache
	@echo ">> removed data/ and outputs/, with the metric stores in them (outputs/store.duckdb, data/demo-outputs/store.duckdb)"
	@case "$(abspath $(STORE))" in $(CURDIR)/outputs/*|$(CURDIR)/data/*) ;; \
	*) echo ">> kept the metric store $(STORE) (STORE points outside data/ and outputs/: delete it yourself)";; esac
