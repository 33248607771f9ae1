#!/usr/bin/env bash
# t2igan's GPU figures in one call (benchmarks/gpu.py: speed and memory of every paper model,
# bf16 and the speed-ups, the data loader, a CLI fit and generate on CUDA).
#
# Here, once (PyPI is reached here, not there):   bash benchmarks/gpu_wheels.sh
# Then with the device tool, in one run of at most 8 minutes:
#   run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=540)
# Options pass through to gpu.py, e.g. `bash benchmarks/gpu.sh --models gan_int_cls
# --no-compile` for a short rerun. $OUT/gpu.json holds every figure; the table is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/t2igan-site .whl/*.whl
    export PYTHONPATH=/tmp/t2igan-site
fi
# t2igan from this checkout, without installing it (python -m t2igan.cli runs its commands)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
exec python3 benchmarks/gpu.py "$@"
