#!/bin/bash
# PoseSDF training on a GPU machine from a pack carried there (the machine has no body model to build the
# data, and a call carries 64 MiB, not the 2 GB product build):
#   posesdf data build --split train --profile product --out PTRAIN      # on this machine: 12.5 min, 2 GB
#   posesdf data pack --data PTRAIN --out .pack/ptrain.npz                # about 36 MB
#   bash tools/gpu_train.sh .pack/ptrain.npz OUT MINUTES NAME [posesdf train posesdf options]   # there
# One run NAME, stopped cleanly after MINUTES and brought back as OUT/NAME.tar (checkpoint, loss curve and
# exported weights) with its log. A run folder carried in as .pack/NAME is resumed. The shipped product set
# came from `... 6.5 resume200 --config small` with epochs 1-100 of the CPU run carried in (commit 48507bb
# ran it and `long600`, `--config small --epochs 600 --lr-step-epochs 120`, side by side).
# Wheels in .whl/ as for gpu_bench.sh. POSESDF_GIT_COMMIT names the commit the copied tree came from
# (the run's posesdf.json records it).
set -u
usage="usage: gpu_train.sh PACK.npz OUT_DIR MINUTES NAME [posesdf train posesdf options]"
PACK=${1:?$usage}; OUT=${2:?$usage}; MINUTES=${3:?$usage}; NAME=${4:?$usage}; shift 4
PY=${PY:-python3}; DEV=${DEV:-cuda}; RUNS=${RUNS:-/tmp/posesdf_runs}
mkdir -p "$OUT" "$RUNS"
source "$(dirname "$0")/gpu_env.sh"
[ -d ".pack/$NAME" ] && cp -r ".pack/$NAME" "$RUNS/$NAME"
$PY -m posesdf_ros.cli train posesdf --data "$PACK" --out "$RUNS/$NAME" --device "$DEV" --quiet \
  --max-minutes "$MINUTES" "$@" > "$OUT/$NAME.log" 2>&1
echo "== $NAME rc=$?"; tail -c 600 "$OUT/$NAME.log"
tar -C "$RUNS" -cf "$OUT/$NAME.tar" "$NAME"
