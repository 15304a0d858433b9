#!/usr/bin/env bash
# One short run on a GPU machine: the CUDA tests, then the GPU benchmark (CUDA training throughput and
# update-log overhead, the same training step on the CPU, forgetting on the GPU), results written as
# they finish. Sized for one device call: it stops within RUN_BUDGET_S seconds (default 480).
#
# Prepare here, on the development machine (registry, data and git are here, not there):
#
#   benchmarks/gpu/prepare.sh
#
# which does, in the repository root (every path git-ignored, carried by the run call):
#
#   benchmarks/gpu/fetch_wheels.sh                       # .whl/: pydantic & co for Python 3.12 (~3 MB)
#   mkdir -p .gpudata && cp ../shared/data/cifar10-jpeg.npz .gpudata/     # 18 MB
#   git rev-parse --short HEAD (+ -dirty) > .gpudata/commit               # the copy there has no git history
#
# Then on the GPU machine, from the repository root (the `run` tool, carry [".whl", ".gpudata"]):
#
#   bash benchmarks/gpu/run.sh
#
# Writes to $OUT (default benchmarks/results): nvidia-smi.txt, gpu-cuda-tests.log, gpu-benchmark.log,
# gpu-cifar10.md/.json, forgetting-cifar10-gpu.md/.json/-tradeoff.png. The machine's python3 must have
# torch with CUDA, numpy, safetensors, scikit-learn, pillow, matplotlib, pytest (PYTHON overrides it).
# Settings (environment): RUN_BUDGET_S (480), CUDA_TESTS_S (150; 0 skips the tests), BENCH_ARGS (extra
# benchmark options), DEVICE (cuda; cpu only to try the script without a GPU), WHEELS (.whl), PYTHON.
set -uo pipefail
cd "$(dirname "$0")/../.."

BUDGET=${RUN_BUDGET_S:-480}
TESTS_S=${CUDA_TESTS_S:-150}
START=$(date +%s)
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
elapsed() { echo $(($(date +%s) - START)); }

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if python3 -c 'import torch' 2>/dev/null; then PY=python3; else PY=/opt/torch/.venv/bin/python3; fi
fi

echo "== wheels ($(elapsed) s)"
WHEELS=${WHEELS:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl; then
    echo "pip failed: unpacking the wheels instead (a wheel is a zip of importable files)"
    for w in "$WHEELS"/*.whl; do "$PY" -m zipfile -e "$w" /tmp/site; done
  fi
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
else
  echo "no .whl/ (run benchmarks/gpu/prepare.sh before the run): pydantic must be installed already"
fi
if [ -f .gpudata/commit ]; then export UNLEARND_COMMIT=$(cat .gpudata/commit); fi
"$PY" - <<'PYEOF'
import platform, pydantic, torch
print("python", platform.python_version(), "torch", torch.__version__, "CUDA", torch.version.cuda,
      "available", torch.cuda.is_available(), "pydantic", pydantic.VERSION)
PYEOF

echo "== nvidia-smi ($(elapsed) s)"
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
df -h /tmp . 2>&1 | tee -a "$OUT/nvidia-smi.txt"

echo "== CUDA tests ($(elapsed) s)"
if [ "$TESTS_S" -gt 0 ]; then
  # --noconftest: tests/conftest.py is the integration suite's (Postgres, Redis, Celery); these need none
  timeout -k 5 "$TESTS_S" "$PY" -m pytest -q --noconftest -p no:cacheprovider tests/unit/test_cuda_engine.py 2>&1 \
    | tee "$OUT/gpu-cuda-tests.log"
  echo "pytest exit ${PIPESTATUS[0]} (124: stopped at ${TESTS_S} s)" | tee -a "$OUT/gpu-cuda-tests.log"
else
  echo "skipped (CUDA_TESTS_S=0)"
fi

echo "== GPU benchmark ($(elapsed) s)"
if [ ! -f .gpudata/cifar10-jpeg.npz ]; then
  echo "no .gpudata/cifar10-jpeg.npz: run benchmarks/gpu/prepare.sh here, and carry .gpudata"
  exit 2
fi
LEFT=$((BUDGET - $(elapsed) - 10))
# the benchmark's own deadlines end 30 s before the hard stop, which leaves it time to write
# BENCH_ARGS: extra options, e.g. "--epochs 2" (python -m benchmarks.gpu --help)
# shellcheck disable=SC2086
timeout -s TERM -k 15 "$LEFT" "$PY" -m benchmarks.gpu --data .gpudata/cifar10-jpeg.npz --device "${DEVICE:-cuda}" \
  --out "$OUT" --budget-s $((LEFT - 30)) ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu-benchmark.log"
echo "benchmark exit ${PIPESTATUS[0]} (3: incomplete, 124: stopped by the time limit)"

echo "== done ($(elapsed) s); $OUT:"
ls -l "$OUT"
cat "$OUT/gpu-cifar10.md" 2>/dev/null
