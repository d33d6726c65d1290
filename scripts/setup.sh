#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with guidedrl, every distribution in this
# repository (plugins/, contrib_envs/, contrib_llms/) and the test tools. Safe to re-run; it does
# the work again only when a pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${GUIDEDRL_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }

dists=(.)
for d in contrib_envs/*/ contrib_llms/*/ plugins/*/; do
  [ -f "$d/pyproject.toml" ] && dists+=("${d%/}")
done

stamp="$VENV/.guidedrl-setup"
want=$(cat constraints.txt scripts/setup.sh "${dists[@]/%//pyproject.toml}" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "[setup] installing guidedrl and ${#dists[@]} distributions (first time: several minutes)"
pip install -q --upgrade pip wheel setuptools
# torch first, from the pinned CPU wheel, so no dependency can pull a CUDA build.
pip install -q -c constraints.txt "torch==2.13.0"

# llama-cpp-python has no binary wheel; its default build crashes on CPUs with AMX, so build a
# portable one (3-6 minutes, cached in $VENV afterwards).
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "[setup] building llama-cpp-python (portable build, 3-6 minutes)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" pip install -q -c constraints.txt "llama-cpp-python>=0.3,<0.4"
fi

args=(-e ".[test]")
for d in "${dists[@]:1}"; do args+=(-e "$d"); done
pip install -q -c constraints.txt "${args[@]}"
echo "$want" > "$stamp"
echo "[setup] done: $("$VENV/bin/guidedrl" --version 2>/dev/null || echo guidedrl)"
