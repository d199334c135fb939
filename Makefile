# Eldercare — the everyday commands. Run `make help` for the list.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
BIN     := $(VENV)/bin
# Written after a successful `uv sync --frozen`; redone when the lock or pyproject changes.
SYNCED  := $(VENV)/.eldercare-synced
RESULTS := bench/results

.PHONY: help venv demo test lint bench services clean-state i18n

help:
	@echo "make demo   - set up .venv if needed, then run the whole platform (eldercare demo) until Ctrl-C"
	@echo "make test   - set up .venv if needed, make sure PostgreSQL + Mosquitto run, run the whole test suite"
	@echo "make lint   - ruff check, ruff format --check, mypy (strict, warn_unreachable, tests and tools too), import-linter contracts"
	@echo "make bench  - run the benchmarks that exist, JSON results in $(RESULTS)/"
	@echo "make venv   - only create .venv and install the locked dependencies"
	@echo "make i18n   - extract the web pages' strings and update web/locale/*/messages.po (then translate)"

$(SYNCED): pyproject.toml uv.lock
	@uv="$$(deploy/bootstrap-uv.sh)" && echo "uv sync --frozen ($$uv)" && "$$uv" sync --frozen
	@touch $@

venv: $(SYNCED)

demo: $(SYNCED)
	$(BIN)/eldercare demo

services:
	deploy/ensure-services.sh

test: $(SYNCED) services
	$(BIN)/pytest

lint: $(SYNCED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Every bench/<name>.py with a main(argv) taking --json PATH; the ones not written yet are skipped.
bench: $(SYNCED) services
	@mkdir -p $(RESULTS)
	@for name in dispatch ingest api notify billing allowances; do \
	  if [ -f bench/$$name.py ]; then \
	    echo "== eldercare bench $$name --json $(RESULTS)/$$name.json"; \
	    $(BIN)/eldercare bench $$name --json $(RESULTS)/$$name.json || exit $$?; \
	  else \
	    echo "== bench/$$name.py does not exist yet; skipped"; \
	  fi; \
	done

# The web pages' strings (web/babel.cfg) into web/locale/messages.pot, merged into each locale's .po.
# The .po files are what git keeps; each process compiles them when it starts (web/i18n.py).
i18n: $(SYNCED)
	$(BIN)/pybabel extract -F web/babel.cfg -k N_ --no-location --sort-output --project=eldercare \
	  -o web/locale/messages.pot .
	$(BIN)/pybabel update -i web/locale/messages.pot -d web/locale -D messages --no-fuzzy-matching \
	  --ignore-obsolete

# Stops nothing: remove the demo's embedded database and broker state (stop `make demo` first).
clean-state:
	rm -rf .eldercare/pgdata .eldercare/mosquitto .eldercare/amqtt
