#!/usr/bin/env bash
# Set up (idempotent) and run the main job: a guided training run, offline, on the embedded
# defaults (the `simulated` LLM, the SQLite cache, a local run directory).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-runs/main-ultra-cartpole}
exec .venv/bin/guidedrl run --env CartPole-v1 --algo ppo --steps 30000 --seed 0 \
  --methods ultra --set ultra.variant=ra --llm simulated --out "$out"
