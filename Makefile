# quant_assets: `make demo` and `make test` are the quick start; both create .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# One planned event per run, not per partition (135 s saved per 9,000-partition run on SQLite); see README.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1

.PHONY: setup demo test lint dev bench simulator clean screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: this exact version is the CPU wheel; a looser pin pulls a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

$(DAGSTER_HOME):
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml

demo: $(STAMP) $(DAGSTER_HOME)
	$(BIN)/quant-assets demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

# The web UI and the daemon against a local simulator: http://127.0.0.1:3000
# Partitions start where the lookback starts (QT_HISTORY_START), so "missing" in the UI means "to fetch".
dev: $(STAMP) $(DAGSTER_HOME)
	@$(BIN)/quant-assets simulator --port 8900 & SIM=$$!; trap "kill $$SIM" EXIT INT TERM; \
	LOOKBACK=$${QT_DATA_LOOKBACK_DAYS:-7}; \
	START=$${QT_HISTORY_START:-$$($(BIN)/python -c "import sys; from quant_assets.settings import lookback_start; print(lookback_start(sys.argv[1]))" "$$LOOKBACK")} || exit 1; \
	QT_BINANCE_FAPI_URL=http://127.0.0.1:8900 QT_COINGECKO_API_URL=http://127.0.0.1:8900/api/v3 \
	QT_MAX_SYMBOLS=$${QT_MAX_SYMBOLS:-10} QT_DATA_LOOKBACK_DAYS=$$LOOKBACK QT_HISTORY_START=$$START \
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

simulator: $(STAMP)
	$(BIN)/quant-assets simulator --port 8900

# The README's pictures of the web UI (docs/screenshots/*.png): a small demo into a temporary
# instance, `dagster dev` on the simulator, Debian's headless chromium through Playwright.
screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

bench: $(STAMP)
	$(BIN)/python benchmarks/backfill.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/models.py

clean:
	rm -rf data .dagster_home .pytest_cache .ruff_cache
