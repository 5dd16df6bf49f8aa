#!/bin/bash
# PoseSDF training on the product engine (issue 18) on a GPU machine, from a pack carried there
# (the machine has no body model to build the data, and a call carries 64 MiB, not the 2 GB build):
#   posesdf data build --split train --profile product --out PTRAIN      # on this machine: 12.5 min, 2 GB
#   posesdf data pack --data PTRAIN --out .pack/ptrain.npz                # about 40 MB
#   bash tools/gpu_train.sh .pack/ptrain.npz OUT MINUTES                  # on the GPU machine
# Two runs side by side, each stopped cleanly after MINUTES (default 6) and brought back as one tar:
#   resume200: checkpoints/posesdf_product (the small config, 100 of 200 epochs on the full build) finished;
#   long600:   the small config afresh over 600 epochs, the learning rate halved every 120.
# Wheels in .whl/ as for gpu_bench.sh. POSESDF_GIT_COMMIT names the commit the copied tree came from
# (the runs' posesdf.json record it).
set -u
PACK=${1:?usage: gpu_train.sh PACK.npz OUT_DIR [MINUTES]}; OUT=${2:?usage: gpu_train.sh PACK.npz OUT_DIR [MINUTES]}
MINUTES=${3:-6}; PY=${PY:-python3}; DEV=${DEV:-cuda}; RUNS=${RUNS:-/tmp/posesdf_runs}
mkdir -p "$OUT" "$RUNS"
source "$(dirname "$0")/gpu_env.sh"
train() {
  name=$1; shift
  $PY -m posesdf_ros.cli train posesdf --data "$PACK" --out "$RUNS/$name" --device "$DEV" --quiet \
    --max-minutes "$MINUTES" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name rc=$?"; tail -c 600 "$OUT/$name.log"
  tar -C "$RUNS" -cf "$OUT/$name.tar" "$name"
}
cp -r checkpoints/posesdf_product "$RUNS/resume200"
train resume200 --config small &
train long600 --config small --epochs 600 --lr-step-epochs 120 &
wait
