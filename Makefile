# The README's commands. Each sets up .venv on its own, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: demo test bench screenshots install install-dev lint clean vendor

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q -e '.[ml,dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(PY) manage.py demo

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

# Rewrite the pages' screenshot baselines (tests/browser/baselines/) after a meant change of the
# pages; review the PNGs before committing them.
screenshots: install-dev
	UPDATE_BASELINES=1 $(PY) -m pytest tests/browser/test_visual.py $(PYTEST_ARGS)

bench: install-dev
	$(PY) bench/run_all.py

# The report's charting libraries, downloaded again pinned by version and sha256 (the files are committed).
vendor:
	frontend/vendor.sh

clean:
	rm -rf var/broker var/test.sqlite3 .pytest_cache
