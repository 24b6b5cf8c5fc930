# Two commands on a fresh machine:  make run  (main job)   make test  (test suite)
# Each creates .venv and installs the pinned requirements on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export TUMORSCOPE_DATA ?= $(abspath ../shared/data)

.PHONY: setup run test lint clean browser serve

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

serve: $(STAMP)
	$(VENV)/bin/tumorscope serve --host 127.0.0.1 --port 8000

# the test command runs the linters first: ruff and the type checker must be clean
test: $(STAMP) browser lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf demo-output .pytest_cache
