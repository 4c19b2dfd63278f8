#!/usr/bin/env bash
# Set up (first run only), lint and type-check (ruff, mypy), then run the test suite.
# Extra arguments go to pytest, e.g. the fast layer (no model, no data): -m "not model and not data".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh demo,convert,train,test
echo "ruff ..."
.venv/bin/ruff check .
echo "mypy ..."
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
