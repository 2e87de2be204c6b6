#!/usr/bin/env bash
# One command for a GPU machine: the gpu-marked oracle tests, then the headline benchmark.
# Usage: benchmarks/gpu_check.sh   (from anywhere; needs a CUDA device; prints the GPU's name first)
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('GPU:', torch.cuda.get_device_name(0))" || exit 2
.venv/bin/python -m pytest -q -m gpu -rs tests/curvature tests/geometry tests/attacks tests/test_environment_cuda.py
tests=$?
benchmarks/headline_gpu.sh
bench=$?
echo "gpu tests exit $tests, headline benchmark exit $bench"
exit $(( tests != 0 || bench != 0 ))
