# `make run` and `make test` work on a fresh machine: they create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
PG_TEST_URL ?= postgresql://127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test test-embedded test-services install install-test bench clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.installed: setup.cfg pyproject.toml | $(PY)
	$(PIP) torch==2.13.0
	$(PIP) -e .
	# CLIP's BPE vocabulary ships in this wheel; its declared deps (torchvision, timm) are not needed
	$(PIP) --no-deps 'open-clip-torch==3.3.0'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	# Debian's prometheus (and promtool) for the metrics tests; needs root, else those tests are skipped
	command -v prometheus >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
		echo "could not install prometheus: its tests will be skipped"
	# Debian's rum extension for PostgreSQL (ranked-order full-text indexes for search); needs root, else
	# search keeps GIN indexes and the RUM test is skipped
	test -f /usr/share/postgresql/15/extension/rum.control || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15-rum >/dev/null; } || \
		echo "could not install postgresql-15-rum: search on PostgreSQL keeps GIN indexes"
	# Debian's chromium for the browser tests (driven by Playwright; never `playwright install`)
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
		echo "could not install chromium: the browser tests will be skipped"
	# a download-only Civitai client used by the tests; its declared deps (a web UI) are not needed
	$(PIP) --no-deps 'civitai-downloader==1.3.5'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(VENV)/bin/atelier db upgrade
	# first start: a tiny random-weight SD 1.5 checkpoint so the generation page has a model (it makes noise)
	$(VENV)/bin/atelier demo-checkpoint --family sd15 --if-empty --import var/demo/demo-sd15-tiny.safetensors
	$(VENV)/bin/atelier metrics-reset
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile -p $(PORT)

# The whole suite twice: on the embedded defaults, then on PostgreSQL + Redis at 127.0.0.1.
test: install-test
	$(VENV)/bin/pytest -p no:cacheprovider tests
	ATELIER_TEST_DATABASE_URL=$(PG_TEST_URL) ATELIER_TEST_REDIS_URL=$(REDIS_TEST_URL) \
		$(VENV)/bin/pytest -p no:cacheprovider tests

bench: install-test
	$(PY) bench/ingest.py
	$(PY) bench/api.py
	$(PY) bench/web.py
	$(PY) bench/search.py
	$(PY) bench/queue.py
	$(PY) bench/soak.py
	$(PY) bench/abuse.py

clean:
	rm -rf $(VENV) var .pytest_cache
