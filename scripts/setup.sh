#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install JMedLLM Desk with the extras named in $1 (e.g. "demo").
# Re-running is cheap: the install is skipped while pyproject.toml and the extras are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-demo}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "JMedLLM Desk needs Python 3.11 or newer (found: $("$python" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv ..."
    "$python" -m venv .venv
fi

stamp=".venv/.jmedllm-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) [$extras]"
if [ -f "$stamp" ] && grep -qxF -- "$want" "$stamp"; then
    exit 0
fi
echo "Installing JMedLLM Desk [$extras] into .venv (the first install builds llama.cpp: about 5 minutes) ..."
log=".venv/install.log"
if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e ".[$extras]"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "Installation failed; the full log is in $log" >&2
    exit 1
fi
echo "$want" >> "$stamp"
echo "Installed. (log: $log)"
