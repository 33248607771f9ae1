#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with the wheels that the GPU machine's image lacks, at the
# versions this checkout's .venv runs: run here, where PyPI is reached, before calling
# benchmarks/gpu.sh on the GPU machine (which has no network). All are pure Python, so the
# wheels fit the image's Python 3.12. The image already has torch, lightning, torchmetrics,
# h5py, scipy, pillow, tensorboard and sentence-transformers (device tool's KINDS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(jsonargparse docstring-parser typeshed-client)
pins=()
for p in "${pkgs[@]}"; do
    v=$(.venv/bin/python -c "from importlib.metadata import version; print(version('$p'))")
    pins+=("$p==$v")
done
rm -rf .whl && mkdir .whl
python3 -m pip wheel --no-deps -q -w .whl "${pins[@]}"
ls .whl
