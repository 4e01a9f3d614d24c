# Two commands do all set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start the whole system on localhost (API on $$PORT, default 3000). Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/kindling local

## Lint (ruff, mypy, cfn-lint) and run every test: unit, integration, infrastructure, end-to-end.
test: $(STAMP) lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check functions shared infra tests bench
	$(BIN)/ruff format --check functions shared infra tests bench
	$(BIN)/mypy shared infra functions
	$(BIN)/cfn-lint template.yaml

## Print throughput, AWS calls per event and cold-start figures.
bench: $(STAMP)
	$(BIN)/python bench/capture.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
