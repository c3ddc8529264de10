# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

$(BIN)/metadb: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

.PHONY: install demo test bench
install: $(BIN)/metadb

demo: install  ## ingest real shipped images into ./metadb.duckdb and print their meta-features
	$(BIN)/metadb demo

test: install  ## the test suite (no GPU, no network)
	$(BIN)/python -m pytest -q

bench: install  ## benchmarks; figures go into bench/RESULTS.md
	$(BIN)/python bench/bench_ingest.py
