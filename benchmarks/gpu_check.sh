#!/usr/bin/env bash
# The GPU path in one run of at most 8 minutes on a machine with an NVIDIA GPU (issue 17):
#   1. CUDA correctness: auto segmentation labels in float16 against float32 (Dice > 0.99), shipped CT model;
#   2. auto segmentation end to end through the real server, STS CT and the 4-sequence BraTS case (<= 0.3 s);
#   3. training throughput of both networks, and one Auto-Update round through the real server (<= 60 s).
# Writes benchmarks/results/gpu_check/ (each benchmark's table, JSON and plot) and gpu_check.md (targets, verdicts).
#
# Without a GPU it runs its CPU fallback: check 1 in bfloat16 on one case, and the table; checks 2 and 3 have their
# CPU figures in the README from their own benchmarks (benchmarks.infer_latency, benchmarks.train_speed).
#
# Usage: bash benchmarks/gpu_check.sh        (PYTHON=... and OUT=... override the interpreter and the folder)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT"
failed=0

step() {  # step SECONDS COMMAND...: run one check within its share of the 8 minutes
    local seconds=$1
    shift
    echo "== $* (at most ${seconds} s)"
    timeout --kill-after=10 "$seconds" "$@" || { echo "!! failed or timed out: $*"; failed=1; }
}

if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    step 90 "$PYTHON" -m benchmarks.precision_check --device cuda --out "$OUT"
    step 150 "$PYTHON" -m benchmarks.infer_latency --no-stock --devices cuda --cases STS_001 --repeats 3 --out "$OUT"
    step 230 "$PYTHON" -m benchmarks.train_speed --devices cuda --first-epochs 10 --out "$OUT"
    device=cuda
else
    echo "No CUDA device: CPU fallback (the precision check in bfloat16 on one case, and the table)"
    step 120 "$PYTHON" -m benchmarks.precision_check --device cpu --cases STS_001 --out "$OUT"
    device=cpu
fi
"$PYTHON" -m benchmarks.gpu_summary "$OUT" "$device" || failed=1
exit $failed
