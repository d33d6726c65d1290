#!/usr/bin/env bash
# Set up (idempotent; the main layer only, no llama.cpp build) and run the main job, offline:
# a sub-optimal multi-agent policy on a factory floor trained on with and without LCIL guidance (the
# `simulated` LLM) from the same checkpoint, 2 seeds, then `guidedrl compare`. See scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
