#!/usr/bin/env bash
# LA and TA step throughput of an mBERT-sized model on this machine's GPU (fp32 vs bf16 autocast, eager vs
# SDPA attention, 4 TA jobs packed on one GPU): tokens/s, MFU, and the device's row in tlr_ray/step_times.yaml.
#
#   bash benchmarks/gpu_check.sh                          # on a GPU machine (about 2 minutes on one H100/H200)
#   bash benchmarks/gpu_check.sh --no-write               # print the row only
#   bash benchmarks/gpu_check.sh --toy --out /tmp/t.yaml  # CPU, tiny config, a few steps (tests/test_benchmarks.py)
#
# Options: python -m benchmarks.gpu_check --help. The Python is $PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PY" -m benchmarks.gpu_check "$@"
