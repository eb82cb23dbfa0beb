# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv on first use and installs what it needs; torch is pinned to the CPU wheel on disk.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,demo,plot,openvino]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dnx demo --workdir dnx-demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) dnx-demo .pytest_cache
