#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): atrous' CUDA tests, then its speed against the GPU's own
# ceiling and against torchvision, written into OUT_DIR as gpu_check.json and gpu_check.log.
#
#   scripts/gpu_check.sh OUT_DIR                 # on a machine with a CUDA GPU (about 8 minutes on an H200)
#   scripts/gpu_check.sh OUT_DIR --cpu-dry-run   # the same steps at toy sizes on the CPU
#
# atrous runs from src/ (no install needed). Pure-Python packages the machine lacks can be put as
# wheels into .whl/ beside this repository: they are installed into a temporary folder first.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_check.sh OUT_DIR [--cpu-dry-run] [--budget-s S] [--skip STEP ...]}
shift
python=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    site=$(mktemp -d -t atrous-gpu-site.XXXXXX)
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export ATROUS_COMMIT="${ATROUS_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
exec "$python" scripts/gpu_check.py "$out" "$@"
