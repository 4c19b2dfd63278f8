#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite. Extra arguments go to pytest, e.g. -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh demo,convert,test
exec .venv/bin/python -m pytest "$@"
