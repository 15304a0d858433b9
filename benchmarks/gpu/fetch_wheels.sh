#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels the GPU machine's Python lacks for the engine and the
# benchmark: pydantic and what it imports. Run here, where pip reaches the package registry; run.sh
# installs them there with --no-index. The GPU machine's python3 (3.12) has torch, numpy,
# safetensors, scikit-learn, matplotlib, pillow, nvidia-ml-py, pytest, ... but no pydantic.
#
# Why these: `python -m benchmarks.gpu` and tests/unit/test_cuda_engine.py import workers.engine
# (pydantic models: the recipe, the recorder's config, the methods' parameters, the verification
# policy) and app.datasets.builtin (numpy and scikit-learn only); nothing else outside that list.
# tests/unit/test_gpu_benchmark.py checks the import chain against this list.
#
# Versions: those of this project's venv (what the tests ran with), else the pins below.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

declare -A PINS=(
  [pydantic]=2.14.4
  [pydantic-core]=2.50.5
  [annotated-types]=0.8.0
  [typing-inspection]=0.4.5
  [typing-extensions]=4.16.0
)

mkdir -p .whl
for name in pydantic pydantic-core annotated-types typing-inspection typing-extensions; do
  version=$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name" 2>/dev/null \
    || echo "${PINS[$name]}")
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$name==$version"
done
ls -l .whl
du -sh .whl
