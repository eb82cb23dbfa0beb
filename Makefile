# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv on first use and installs what it needs; torch is pinned to the CPU wheel on disk.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint install cpp-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,demo,plot,openvino,triton]'
	$(PY) -m pip install --quiet --no-deps nvidia-pytriton==0.7.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dnx demo --workdir dnx-demo

# Style and layout: ruff (lint + format) here; import-linter's layer contracts run inside the test suite.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) cpp-deps
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q

# What the C++ test needs: cmake, g++, stb and nlohmann-json from Debian, ONNX Runtime headers (the
# library itself comes from the onnxruntime wheel). Without root this only warns and the test skips.
cpp-deps:
	@if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null || \
	    [ ! -f /usr/include/stb/stb_image.h ] || [ ! -f /usr/include/nlohmann/json.hpp ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ libstb-dev nlohmann-json3-dev >/dev/null) \
	    || echo "warning: could not install cmake/g++/libstb-dev/nlohmann-json3-dev; the C++ test will skip"; \
	fi
	@bash cpp/scripts/fetch-onnxruntime-headers.sh >/dev/null || echo "warning: ONNX Runtime headers not fetched; the C++ test will skip"

clean:
	rm -rf $(VENV) dnx-demo .pytest_cache
