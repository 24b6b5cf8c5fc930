# Two commands on a fresh machine:  make run  (main job)   make test  (test suite)
# Each creates .venv and installs the pinned requirements on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export TUMORSCOPE_DATA ?= $(abspath ../shared/data)

.PHONY: setup run test lint clean browser serve brats-eval

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tumorscope demo --out demo-output

# Debian's Chromium for the browser test (needs root/sudo; the test skips, saying why, without it)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver \
	    >/dev/null 2>&1 || { $$SUDO apt-get update -q >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver \
	    >/dev/null 2>&1; } || echo "note: could not install chromium; the browser test will skip"; }

# The official BraTS evaluation (brats-evaluation + panoptica) pins pandas < 3, numpy < 2.3
# and rich < 14; it runs on our newer stack, so it is installed without its pins (--no-deps),
# with the few dependencies we lack, at versions verified here. Only the cross-check test
# uses it (it skips, saying why, when absent).
BRATS_EVAL := brats-evaluation==0.0.10 panoptica==2.1.7 connected-components-3d==4.1.1 \
  ruamel.yaml==0.19.1 ruamel.yaml.clib==0.2.15 plotly==5.24.1 narwhals==2.29.0
brats-eval: $(STAMP)
	@$(PY) -c "import brats_evaluation, panoptica" 2>/dev/null || \
	  $(PY) -m pip install -q --no-deps $(BRATS_EVAL) || \
	  echo "note: could not install the official BraTS evaluation; its cross-check will skip"

serve: $(STAMP)
	$(VENV)/bin/tumorscope serve --host 127.0.0.1 --port 8000

# the test command runs the linters first: ruff and the type checker must be clean
test: $(STAMP) browser brats-eval lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf demo-output .pytest_cache
