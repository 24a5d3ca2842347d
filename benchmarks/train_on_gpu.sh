#!/usr/bin/env bash
# Round 3 (issue 16, item 9) on a lent GPU machine: the round-3 recipe and three variants, trained at once on one
# GPU under KERAS_BACKEND=torch, each saved with its test-set scores (`predict --csv`, no metrics) for the
# CPU-vs-GPU check. Carried (git-ignored): .whl (keras 3.15.1, namex and optree wheels),
# .device/chest_xray_128.zip (benchmarks/device_data_copy.py, then `python3 -m zipfile -c`: one file travels lighter than 5,840) and build/backbones/efficientnet_lite0_imagenet.weights.h5.
# Each finished run comes back as $OUT/NAME.tar.gz (the gate, 15 MB, is refitted on the CPU); logs as $OUT/logs.tar.gz.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:. KERAS_BACKEND=torch PYTHONUNBUFFERED=1 OMP_NUM_THREADS=3
mkdir -p /tmp/data && python3 -m zipfile -e .device/chest_xray_128.zip /tmp/data || exit 1
DATA=/tmp/data/chest_xray_128
RECIPE="--set backbone=efficientnet_lite0 --set frozen_epochs=2 --set epochs=15"
LIMIT=${LIMIT:-420}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
mkdir -p /tmp/runs /tmp/logs
run() {  # NAME, then extra train flags
  local name=$1; shift
  ( timeout "$LIMIT" python3 -m pneumonia train --data "$DATA" --out /tmp/runs/"$name" $RECIPE "$@" \
    && python3 -m pneumonia predict "$DATA"/test --model-dir /tmp/runs/"$name" --csv /tmp/runs/"$name"/gpu_test_scores.csv \
       --workers 0 >/dev/null \
    && tar -czf "$OUT/$name.tar.gz" --exclude=pneumonia_gate.npz -C /tmp/runs "$name" ) >/tmp/logs/"$name".log 2>&1
  echo "$name exit $? at $SECONDS s"
}
run g1 --set learning_rate=3e-4 &
run g2_lr1e-4 --set learning_rate=1e-4 &
run g3_lr1e-3 --set learning_rate=1e-3 &
run g4_seed7 --set learning_rate=3e-4 --seed 7 &
wait
tar -czf "$OUT/logs.tar.gz" -C /tmp logs
tail -n 4 /tmp/logs/*.log
