#!/usr/bin/env bash
# Prepare a GPU run here (the development machine: it has the registry, the data and git). Writes
# only git-ignored paths, which the `run` call carries: .whl/ (wheels) and .gpudata/ (CIFAR-10 and
# the commit). See benchmarks/gpu/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/cifar10-jpeg.npz}

ls .whl/*.whl >/dev/null 2>&1 || benchmarks/gpu/fetch_wheels.sh
mkdir -p .gpudata
cp "$DATA" .gpudata/cifar10-jpeg.npz
# the code's commit, as benchmarks/forgetting/report.py names it (-dirty: uncommitted changes, which
# travel with the working tree); the GPU machine's copy has no git history
commit=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain -- . ':!benchmarks/results')" ]; then commit="$commit-dirty"; fi
echo "$commit" > .gpudata/commit
echo "commit: $commit"
du -sh .whl .gpudata
