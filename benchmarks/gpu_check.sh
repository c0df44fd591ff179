#!/usr/bin/env bash
# The real path's GPU checks in one go (about 7 minutes on one H200; nothing outside the machine is reachable):
#   1. install the pure-Python packages such a machine lacks (trl, datasets and their dill / multiprocess / fsspec,
#      pycocotools) from wheels carried in .whl/ — fetch them here first with `make gpu-wheels`;
#   2. benchmarks/gpu_check.py: versions; the committed model through the processor path the machine takes, decoded
#      on the GPU; the paper's SFT and GRPO recipes on Qwen2-VL-2B dimensions — do the weights move?
#   3. the GRPO throughput benchmark at 2B dimensions and the paper's batch, gradient checkpointing off and on;
#   4. the tests that touch devices, dtypes and processors.
# Everything lands in $OUT (default reports/bench/gpu-check/): one JSON per section, the two benchmark JSONs and the
# test log. Each step has its own time limit and a failure does not stop the next; the exit status says if any failed.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine, from the repo root, with .whl/ beside it
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-reports/bench/gpu-check}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/nvidia-smi.txt"
status=0
run() { local limit=$1; shift; echo "== $* (limit ${limit}s)"; timeout "$limit" "$@" || { echo "== FAILED ($?): $*"; status=1; }; }
run 150 "$PY" benchmarks/gpu_check.py --out "$OUT"
run 100 "$PY" benchmarks/grpo_throughput.py --steps 2 --out "$OUT/grpo_throughput.json"
run 100 "$PY" benchmarks/grpo_throughput.py --steps 2 --gradient-checkpointing --out "$OUT/grpo_throughput-gc.json"
run 90 "$PY" -m pytest -q -p no:cacheprovider -x tests/test_real_dims.py tests/test_models.py tests/test_sft.py \
  tests/test_grpo.py -k "not notebook and not ablation" -o addopts="-m 'not slow'" --junitxml="$OUT/tests.xml"
exit $status
