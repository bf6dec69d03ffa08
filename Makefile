# `make demo` and `make test` create the virtual environment when needed, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.endogs-installed
DEMO_DIR ?= outputs/demo

.PHONY: demo test env clean-env browser

env: $(STAMP)

$(STAMP): setup.py requirements-cpu.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then \
	  echo "No NVIDIA GPU: installing the CPU build of torch first"; \
	  $(PY) -m pip install -q -r requirements-cpu.txt; \
	fi
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m endogs synthetic $(DEMO_DIR)/sample_scene --overwrite
	$(PY) -m endogs info $(DEMO_DIR)/sample_scene
	rm -rf $(DEMO_DIR)/run
	$(PY) -m endogs train $(DEMO_DIR)/sample_scene --preset demo --output $(DEMO_DIR)/run
	$(PY) -m endogs eval $(DEMO_DIR)/run
	@echo
	@echo "Watch the reconstruction in a browser:  $(VENV)/bin/endogs view $(DEMO_DIR)/run   (then open the printed http://127.0.0.1 URL)"

test: $(STAMP) browser
	$(PY) -m pytest -q

# The viewer's browser tests drive Debian's chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "Installing chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "WARNING: could not install chromium (needs root and Debian); browser tests will be skipped"; }

clean-env:
	rm -rf $(VENV)
