#!/usr/bin/env bash
# The project's one test command: make the virtual environment, install the project with its test
# extras (pinned by constraints.txt), lint, then run unit and integration tests with coverage.
# The integration suite starts its own Redis server and Celery workers; nothing needs to run beforehand.
set -euo pipefail
cd "$(dirname "$0")"

VENV="${PREDICTQ_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24"
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[test]"

export PATH="$PWD/$VENV/bin:$PATH"
echo "== ruff"
ruff check .
echo "== pytest"
rm -f .coverage .coverage.*
python -m pytest --cov --cov-report=term "$@"
