# smartcard-ledger — the two commands (`make demo`, `make test`) do all set-up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export CARD_TEST_PG_URL ?= $(PG_TEST_URL)

.PHONY: demo test lint bench load chaos system-deps postgres clean

$(STAMP): pyproject.toml
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,card,load]'
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

postgres:
	bash scripts/ensure-postgres.sh

demo: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP) postgres
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check card_backend quota reader_agent tests loadtests migrations
	$(BIN)/mypy card_backend quota reader_agent

bench: $(STAMP) postgres
	bash loadtests/bench.sh

load: $(STAMP)
	bash loadtests/load.sh

chaos: $(STAMP) postgres
	$(BIN)/pytest -q -m chaos --chaos-profile=long

clean:
	rm -rf $(VENV) var build *.egg-info
