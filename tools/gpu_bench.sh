#!/bin/bash
# The GPU device check (issue 19): the CUDA tests, then `posesdf bench speed --device cuda` with and
# without warm starts, on a walking sequence saved here (the GPU machine has no body model):
#   posesdf bench speed --save-sequence .seq/seqV2.npz      # on this machine, 30 frames, ~8 MB
#   bash tools/gpu_bench.sh .seq/seqV2.npz OUT              # on the GPU machine (docs/posesdf.md, "On a GPU")
# Wheels in .whl/ (roma, transforms3d, trimesh for Python 3.12) are installed first where present.
# POSESDF_GIT_COMMIT names the commit the copied tree came from (its JSONs record it).
set -u
SEQ=${1:?usage: gpu_bench.sh SEQUENCE.npz OUT_DIR}; OUT=${2:?usage: gpu_bench.sh SEQUENCE.npz OUT_DIR}
PY=${PY:-python3}; DEV=${DEV:-cuda}; PROFILES=${PROFILES:-realtime,fast,accurate}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
echo "== pytest test/test_cuda.py"
timeout 200 $PY -m pytest -q -p no:cacheprovider test/test_cuda.py > "$OUT/pytest_cuda.log" 2>&1
echo "rc=$?"; tail -3 "$OUT/pytest_cuda.log"
bench() {
  name=$1; shift; echo "== $name"
  timeout 200 $PY -m posesdf_ros.cli bench speed --sequence "$SEQ" --device "$DEV" --profiles "$PROFILES" \
    --json "$OUT/$name.json" --quiet "$@" > "$OUT/$name.log" 2>&1
  echo "rc=$?"
}
bench "bench_$DEV" --backends posesdf,nvf
bench "bench_${DEV}_cold" --no-track
