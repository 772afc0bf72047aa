# PyROS — `make run` starts the whole system on its embedded defaults, `make test` runs the tests.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PYROS_WEB_PORT ?= 8000
export PYROS_WEB_HOST ?= 127.0.0.1

.PHONY: run test test-fast bench lint check install install-dev migrate seed clean-var

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "PyROS needs $(PYTHON) (voevent-parse does not install on 3.12+)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel

# Reinstall only when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev,bench,catalogs]'
	@touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

migrate: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0

seed: migrate
	$(PY) manage.py seed_demo

run: seed
	@echo
	@echo "PyROS is starting: open http://$(PYROS_WEB_HOST):$(PYROS_WEB_PORT)/  (Ctrl-C stops every process)"
	@echo
	$(PY) scripts/run.py

test: install-dev
	PYROS_VAR_DIR=$${PYROS_VAR_DIR:-$(CURDIR)/var/test} $(PY) -m pytest

# The quick loop while editing: no browser, nothing marked slow.
test-fast: install-dev
	PYROS_VAR_DIR=$${PYROS_VAR_DIR:-$(CURDIR)/var/test} $(PY) -m pytest -m "not browser and not slow"

bench: install-dev
	$(PY) scripts/bench/run_all.py

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run

clean-var:
	rm -rf var/broker var/celery-results
