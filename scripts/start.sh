#!/usr/bin/env bash
# Set up (first run only) and start the JMedLLM Desk UI on the embedded demo model at http://127.0.0.1:7860
# Extra arguments go to `jmedllm serve`, e.g.: ./scripts/start.sh --model /models/jmedllm-v1-7b-q4_k_m.gguf
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh demo
exec .venv/bin/jmedllm serve --model demo "$@"
