#!/usr/bin/env bash
# One command for a GPU machine: the gpu-marked oracle tests, then the headline benchmark.
# Usage: benchmarks/gpu_check.sh   (from anywhere; needs a CUDA device; prints the GPU's name first)
# Smoke test without a GPU: DEVICE=cpu N_IMAGES=8 benchmarks/gpu_check.sh   (the gpu tests then skip with
# their reason, and the headline audit runs on the CPU on N_IMAGES images)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${DEVICE:-cuda}" = "cpu" ]; then
    echo "DEVICE=cpu: smoke test of this script (gpu-marked tests skip, the audit runs on the CPU)"
else
    .venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('GPU:', torch.cuda.get_device_name(0))" || exit 2
fi
.venv/bin/python -m pytest -q -m gpu -rs -p no:cacheprovider tests/curvature tests/geometry tests/attacks tests/test_environment_cuda.py
tests=$?
benchmarks/headline_gpu.sh
bench=$?
echo "gpu tests exit $tests, headline benchmark exit $bench"
exit $(( tests != 0 || bench != 0 ))
