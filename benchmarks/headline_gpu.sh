#!/usr/bin/env bash
# The README's headline audit on CUDA: a full-width torchvision:resnet18 (random init: timing only)
# on 1,000 CIFAR-10-format images (random pixels, written to a temp dir in the official pickle-batch
# format), the standard audit. Prints wall time per probe (results.json) and the peak GPU memory
# (torch.cuda.max_memory_allocated, recorded in results.json › environment on CUDA). Target: ≤ 5 min
# on one H100 (issue 17).
#
# Usage: benchmarks/headline_gpu.sh [extra robaudit run args]   (needs a CUDA device;
# DEVICE=cpu N_IMAGES=8 … --probes clean smoke-tests it without one)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" - "$WORK" <<'PYEOF'
import pickle, sys
from pathlib import Path
import numpy as np
root = Path(sys.argv[1]) / "cifar-10-batches-py"
root.mkdir(parents=True)
rng = np.random.default_rng(0)
def dump(obj, name):
    with open(root / name, "wb") as f:
        pickle.dump(obj, f, protocol=2)
n = 1000
dump({"batch_label": "testing batch 1 of 1", "labels": rng.integers(0, 10, n).tolist(),
      "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "filenames": [f"img_{i:05d}.png" for i in range(n)]},
     "test_batch")
dump({"num_cases_per_batch": 10000, "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
      "horse", "ship", "truck"], "num_vis": 3072}, "batches.meta")
PYEOF
START=$(date +%s.%N)
status=0
.venv/bin/robaudit run torchvision:resnet18 --arch-kwargs '{"num_classes": 10}' --dataset cifar10 --data-dir "$WORK" \
    --n-samples "${N_IMAGES:-1000}" --device "${DEVICE:-cuda}" --out "$WORK/audit" --no-report "$@" || status=$?
END=$(date +%s.%N)
"$PY" - "$WORK/audit/results.json" "$START" "$END" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
env = r["environment"]
print(f"device: {env['device']}")
print(f"{'probe':28s} {'status':10s} {'wall s':>8s}")
for name, p in r["probes"].items():
    print(f"{name:28s} {p.get('status', '?'):10s} {p.get('duration_s') or 0:8.1f}")
print(f"total wall (process): {float(sys.argv[3]) - float(sys.argv[2]):.1f} s")
peak = env.get("cuda_peak_memory_bytes")
print(f"peak GPU memory: {peak / 2**30:.2f} GiB" if peak else "peak GPU memory: not recorded (not on CUDA?)")
PYEOF
exit $status
