# django-carrot: `make demo` runs the example project, `make test` runs the tests.
# Both create their own virtualenv in .venv and install everything they need.

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
SYSTEM_PYTHON ?= python3
LINT_PATHS := carrot tests example_project $(wildcard bench)

.PHONY: install system-deps demo test test-unit test-sqlite test-postgres test-slow test-matrix lint format bench clean

$(VENV)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The tests need RabbitMQ (they start private nodes for fault tests) and Debian's
# Chromium for the browser tests; install them when missing and we are allowed to.
system-deps:
	@missing=""; \
	command -v rabbitmq-server >/dev/null 2>&1 || missing="$$missing rabbitmq-server"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "Missing system packages:$$missing. Install them: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

demo: install
	cd example_project && $(PY) manage.py migrate --noinput
	cd example_project && DJANGO_SUPERUSER_PASSWORD=admin $(PY) manage.py createsuperuser \
	  --noinput --username admin --email admin@example.com >/dev/null 2>&1 || true
	@echo "Demo: http://127.0.0.1:8000/ (monitor at /carrot/, log in as admin / admin). Ctrl-C stops."
	cd example_project && { $(PY) manage.py carrot & worker=$$!; \
	  trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	  $(PY) manage.py runserver 127.0.0.1:8000; }

# Every tier (tests/unit, integration, faults, browser) on SQLite, then on PostgreSQL.
test: install system-deps
	CARROT_TEST_DB=sqlite $(PYTEST) -m "not slow"
	CARROT_TEST_DB=postgres $(PYTEST) -m "not slow"

# The unit tier alone: no broker, no database server.
test-unit: install
	CARROT_TEST_DB=sqlite $(PYTEST) tests/unit

test-sqlite: install system-deps
	CARROT_TEST_DB=sqlite $(PYTEST) -m "not slow"

test-postgres: install system-deps
	CARROT_TEST_DB=postgres $(PYTEST) -m "not slow"

test-slow: install system-deps
	CARROT_TEST_DB=sqlite $(PYTEST) -m slow
	CARROT_TEST_DB=postgres $(PYTEST) -m slow

# Python 3.12 + Django 6.0 and Python 3.13 + Django 6.1 (pyenv's interpreters), each in
# its own virtualenv (.venv-dj6.0, .venv-dj6.1); see scripts/test-matrix.sh.
test-matrix: system-deps
	scripts/test-matrix.sh

lint: install
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m mypy

format: install
	$(PY) -m ruff check --fix $(LINT_PATHS)
	$(PY) -m ruff format $(LINT_PATHS)

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .venv-dj* *.egg-info .pytest_cache .ruff_cache .mypy_cache
