# Two entry points on a fresh machine: `make demo` (main job) and `make test` (whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo serve-prod test test-postgres lint bench-baselines clean

venv: $(STAMP)

# torch is installed first, pinned, so that nothing pulls a CUDA build from the registry.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[dev,federated,distributed]"
	touch $(STAMP)

demo: venv
	$(BIN)/vitrina demo

# The demo shop as a server deployment: PostgreSQL (all tables, full-text search) and Redis (recent
# events) started on loopback from the Debian packages ([servers]; `vitrina servers down` stops them),
# served by four uvicorn workers.
serve-prod: venv
	$(BIN)/vitrina demo --servers --workers 4

# The browser test's driver (npm playwright-core, pinned by tests/e2e/package-lock.json); without
# npm the browser test is skipped with a message.
E2E_STAMP := tests/e2e/node_modules/.installed
$(E2E_STAMP): tests/e2e/package-lock.json
	if command -v npm >/dev/null 2>&1; then cd tests/e2e && npm ci --no-audit --no-fund && touch node_modules/.installed; else echo "npm not found: the browser test will be skipped"; fi

# The suite on SQLite, then every test that opens a shop's database again on PostgreSQL
# (VITRINA_TEST_DATABASE=postgresql; a throwaway server on loopback). Without the PostgreSQL
# binaries the second pass is skipped with a message.
test: venv $(E2E_STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest -q
	$(MAKE) test-postgres

test-postgres: venv
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then \
		VITRINA_TEST_DATABASE=postgresql $(BIN)/python -m pytest -q; \
	else echo "PostgreSQL not installed (apt-get install postgresql): the PostgreSQL pass is skipped"; fi

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

# The foundation issue's published-number reproductions (long: tens of minutes on 2 cores).
bench-baselines: venv
	$(BIN)/vitrina bench rec --dataset amazon-baby --models pop,itemknn,als,bpr,lightgcn --seeds 3 --out results/amazon-baby.json
	$(BIN)/vitrina bench rec --dataset amazon-sports --models pop,itemknn,als,bpr,lightgcn --seeds 3 --out results/amazon-sports.json
	$(BIN)/vitrina bench rec --dataset tiktok --models pop,itemknn,als,bpr,lightgcn --seeds 3 --out results/tiktok.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
