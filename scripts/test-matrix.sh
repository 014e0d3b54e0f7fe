#!/usr/bin/env bash
# `make test-matrix`: the supported combinations other than `make test`'s (Python 3.11 +
# Django 5.2): Python 3.12 + Django 6.0 and Python 3.13 + Django 6.1. Each gets its own
# virtualenv (.venv-dj<version>) built from the pyenv interpreter of that Python version
# (the newest patch release installed, found by glob) or, failing that, python3.X on PATH.
# Every tier runs on SQLite; the django.tasks tests also run on PostgreSQL, once.
set -euo pipefail
cd "$(dirname "$0")/.."

COMBOS=${MATRIX:-"3.12:6.0 3.13:6.1"}
PG_ONCE=${MATRIX_PG:-6.1}  # the combination that also runs the django.tasks tests on PostgreSQL
DJANGO_TASKS_TESTS="tests/unit/test_backend.py tests/integration/test_django_tasks.py"

find_python() {
  local version=$1 root candidates
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  candidates=$(ls -d "$root"/versions/"$version".*/bin/python 2>/dev/null | sort -V || true)
  if [ -n "$candidates" ]; then
    echo "$candidates" | tail -n 1
  elif command -v "python$version" >/dev/null 2>&1; then
    command -v "python$version"
  else
    echo "No Python $version: install it (pyenv install $version) to run the test matrix." >&2
    return 1
  fi
}

for combo in $COMBOS; do
  python_version=${combo%%:*}
  django_version=${combo##*:}
  venv=".venv-dj$django_version"
  stamp="$venv/.installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    interpreter=$(find_python "$python_version")
    echo "== $venv: $("$interpreter" --version) + Django $django_version.x"
    "$interpreter" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e ".[test]" "Django~=$django_version.0"
    touch "$stamp"
  fi
  echo "== $("$venv/bin/python" --version), Django $("$venv/bin/python" -m django --version): every tier on SQLite"
  CARROT_TEST_DB=sqlite "$venv/bin/python" -m pytest -m "not slow" -q
  if [ "$django_version" = "$PG_ONCE" ]; then
    echo "== Django $django_version: the django.tasks tests on PostgreSQL"
    # shellcheck disable=SC2086  # a list of paths
    CARROT_TEST_DB=postgres "$venv/bin/python" -m pytest -q $DJANGO_TASKS_TESTS
  fi
done
