#!/usr/bin/env bash
# Issue 16, item 9, on a lent GPU machine: score the test films with saved models under KERAS_BACKEND=torch on the
# GPU, for comparison with the same models scored by TensorFlow on this CPU (benchmarks/compare_devices.py).
# Carried (git-ignored): .whl (keras 3.15.1, namex, optree wheels), .device/chest_xray_128_test.zip (the test
# films' 128-px copies from benchmarks/device_data_copy.py) and each model folder named as an argument.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:. KERAS_BACKEND=torch PYTHONUNBUFFERED=1
mkdir -p /tmp/data && python3 -m zipfile -e .device/chest_xray_128_test.zip /tmp/data/chest_xray_128 || exit 1
nvidia-smi --query-gpu=name --format=csv,noheader
for model in "$@"; do
  python3 -m pneumonia predict /tmp/data/chest_xray_128/test --model-dir "$model" --workers 0 \
    --csv "$OUT/$(basename "$model")_gpu.csv" | tail -n 1
done
