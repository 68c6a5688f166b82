# ragflow developer commands. Every target sets up what it needs itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: serve test test-long lint format bench clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: the live Q&A server (REST on 127.0.0.1:8000) over apps/qa_server/sample_docs, offline.
serve: $(STAMP)
	$(BIN)/python -m apps.qa_server

## The whole test suite (provisions its own test servers).
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-long: $(STAMP)
	RAGFLOW_LONG=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m apps.bench.engine

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
