#!/usr/bin/env bash
# Set up (idempotent; the main layer plus the test tools and the llama.cpp layer) and run the whole
# test suite, slow tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh llamacpp
exec .venv/bin/python -m pytest "$@"
