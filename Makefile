# detector: every set-up step a newcomer needs is behind `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLES := data/samples
OUT    ?= out/samples

.DEFAULT_GOAL := help
.PHONY: help install run test test-deps test-fast lint format bench samples model golden html-check clean serve-bench

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m detector.ingest.kernel_seed
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install detector with its dev tools (idempotent)

run: $(STAMP) ## Run the nightly job on the bundled sample world and print its summary
	$(BIN)/detector run $(SAMPLES)/logs --out $(OUT) \
		--practitioners $(SAMPLES)/practitioners.csv --geoip-dir $(SAMPLES)/geoip

# --dist loadgroup: the Spark tests (one xdist group) share one JVM on one worker
test: $(STAMP) test-deps ## Run the whole test suite (what CI runs)
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

test-deps: ## Install the Debian packages the consumer and serve tests use (as root with apt; else they skip)
	@.ci/test-deps

test-fast: $(STAMP) test-deps ## Run the tests not marked slow
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m 'not slow' tests

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check detector tests bench
	$(BIN)/ruff format --check detector tests bench

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix detector tests bench
	$(BIN)/ruff format detector tests bench

bench: $(STAMP) ## Benchmark ingestion and the nightly job (lines/s, peak memory); not a test
	$(BIN)/python bench/run.py

samples: $(STAMP) ## Regenerate data/samples with `detector simulate` (documented seed)
	rm -rf $(SAMPLES)
	$(BIN)/detector simulate --out $(SAMPLES) --accounts 3000 --days 3 --seed 7 --mix fixed

model: $(STAMP) ## Retrain the shipped model on a simulated world (not data/samples)
	$(BIN)/python -m detector.score.reproduce

golden: $(STAMP) ## Regenerate the golden end-to-end expectations from data/samples
	$(BIN)/python -m tests.golden --update

html-check: $(STAMP) ## Render out/samples/report.html in headless Chromium (installs Debian's chromium if missing)
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)
	$(MAKE) run
	$(BIN)/python -m pytest -q -p no:randomly tests/test_report_browser.py
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,2600 \
		--screenshot=$(OUT)/report.png file://$(abspath $(OUT))/report.html
	@echo "screenshot: $(OUT)/report.png"

serve-bench: $(STAMP) ## Benchmark `detector serve` (p99 latency at 2,000 requests/s, 100,000 measures); not a test
	$(BIN)/python bench/serve_bench.py

clean: ## Remove the virtual environment and outputs
	rm -rf $(VENV) out .pytest_cache .ruff_cache
