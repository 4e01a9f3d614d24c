# Two commands do all set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL_STAMP := $(VENV)/.installed-local
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run demo test lint unit bench clean browser sdks

$(BIN)/pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The layer's requirements plus the operator tool and the embedded local stack: what `make run` needs.
$(LOCAL_STAMP): pyproject.toml shared/requirements.txt | $(BIN)/pip
	$(BIN)/pip install --quiet -e '.[local]'
	touch $(LOCAL_STAMP)

# Everything above plus test runners and linters.
$(DEV_STAMP): pyproject.toml shared/requirements.txt | $(BIN)/pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(LOCAL_STAMP) $(DEV_STAMP)

## Start the whole system on localhost (API on $$PORT, default 3000). Ctrl-C stops it.
## START_AT=2026-03-02T09:00:00-05:00 starts the stack's clock at that moment.
run: $(LOCAL_STAMP)
	$(if $(START_AT),KINDLING_START_AT="$(START_AT)" ,)$(BIN)/kindling local

## Weeks of realistic traffic on the stack `make run` started (in another terminal), then the reports.
demo: $(LOCAL_STAMP)
	$(BIN)/kindling demo

## Lint (ruff, mypy, cfn-lint) and run every test: unit, integration, infrastructure, end-to-end.
test: $(DEV_STAMP) browser sdks lint
	$(BIN)/pytest -q

## Headless Chromium for the browser tests: Debian's package, installed when missing (needs root).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  elif [ -n "$$CI" ]; then \
	    echo "make browser: /usr/bin/chromium is missing and cannot be installed (needs root and apt-get)" >&2; exit 1; \
	  else \
	    echo "make browser: /usr/bin/chromium is missing; the browser tests will be skipped (as root: apt-get install chromium)" >&2; \
	  fi; \
	fi

## Segment's and RudderStack's browser SDKs for tests/e2e/test_browser_sdks.py, at the versions
## tests/browser_sdks/package-lock.json pins: installed from npm and copied to tests/browser_sdks/dist
## when missing or when the pins change. Without node and npm those tests are skipped.
SDKS := tests/browser_sdks
sdks: $(SDKS)/dist/versions.json

$(SDKS)/dist/versions.json: $(SDKS)/package.json $(SDKS)/package-lock.json $(SDKS)/build.mjs
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  cd $(SDKS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null && node build.mjs; \
	else \
	  echo "make sdks: node and npm are missing; the browser SDK tests will be skipped (install nodejs and npm)" >&2; \
	fi

lint: $(DEV_STAMP)
	$(BIN)/ruff check functions shared infra tests bench
	$(BIN)/ruff format --check functions shared infra tests bench
	$(BIN)/mypy shared infra functions
	$(BIN)/cfn-lint template.yaml

## Print throughput, AWS calls per event, cold-start figures and the cost per tracked event.
bench: $(DEV_STAMP)
	$(BIN)/python bench/capture.py
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/sending.py
	$(BIN)/python bench/programs.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/demo.py
	$(BIN)/python bench/cost.py
	$(BIN)/python bench/imports.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(SDKS)/node_modules $(SDKS)/dist
