# textdesk: the two commands are `make demo` and `make test`. Everything else is a step of them.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export TEXTDESK_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: install demo serve test check format lint typecheck bench lock clean browser

$(STAMP): pyproject.toml constraints.txt package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	npm ci --no-audit --no-fund --loglevel=error
	./scripts/copy-assets.sh
	touch $(STAMP)

install: $(STAMP)

## Run the product: SQLite under ./var, the simulator, demo data, http://127.0.0.1:8000
demo: install
	$(BIN)/textdesk demo

serve: install
	$(BIN)/textdesk serve

## Lint, types and the whole suite on SQLite and PostgreSQL, browser tests included.
test: install check browser
	$(BIN)/pytest -n 2 --dist loadgroup

check: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# Debian's Chromium for the Playwright tests (Playwright cannot download its own browser here).
browser:
	@./scripts/ensure-chromium.sh

bench: install
	./scripts/ensure-wrk.sh
	$(BIN)/python -m bench

lock:
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v "^-e"; } > constraints.tmp && mv constraints.tmp constraints.txt

clean:
	rm -rf $(VENV) node_modules src/textdesk/web/static/vendor .pytest_cache .mypy_cache .ruff_cache
