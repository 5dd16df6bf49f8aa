# Sourced by the GPU scripts (gpu_bench.sh, gpu_train.sh) with OUT and PY set: installs the wheels carried
# in .whl/ (roma, transforms3d, trimesh for Python 3.12; the GPU machine has no internet), puts this tree
# on PYTHONPATH and writes OUT/machine.txt.
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; nproc; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
