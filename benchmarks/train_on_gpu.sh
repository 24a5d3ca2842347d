#!/usr/bin/env bash
# Issue 16, item 9, on a lent GPU machine: train under KERAS_BACKEND=torch, then score the test films there
# (`predict --csv`, no metrics) for the CPU-vs-GPU check (benchmarks/compare_devices.py).
# Two runs, one process each:
#   g_e6r  the committed model's recipe (e6r: the small CNN, noise 12, blur 0.5): 6.7 min on an H200;
#   g_f1   f1's recipe (EfficientNet-Lite0, 2 head + 15 fine-tuning epochs) at batch 64: 6.8 min. Eager steps of
#          the Keras torch backend are bound by Python (130-180 ms and 300-350 ms a step here), not by the GPU.
# (The first attempt ran four Lite0 runs at batch 32 at once; at about 370 ms a step none finished in 470 s.)
# Carried (git-ignored): .whl (keras 3.15.1, namex and optree wheels), .device/chest_xray_128.zip
# (benchmarks/device_data_copy.py, then `python3 -m zipfile -c`) and build/backbones/efficientnet_lite0_imagenet.weights.h5.
# Each finished run comes back as $OUT/NAME.tar.gz (without its 15 MB gate: the comparison scores without it); logs as $OUT/logs.tar.gz.
# EXTRA adds train flags to both runs (a short rehearsal on the CPU: EXTRA="--set epochs=1 --set frozen_epochs=1").
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:. KERAS_BACKEND=torch PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
mkdir -p /tmp/data && python3 -m zipfile -e .device/chest_xray_128.zip /tmp/data || exit 1
DATA=/tmp/data/chest_xray_128
LIMIT=${LIMIT:-540}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
mkdir -p /tmp/runs /tmp/logs
run() {  # NAME, then train flags
  local name=$1; shift
  # predict exits 3 when it refused some films (the 128-px copies hold one that looks like a document): still a result.
  ( timeout "$LIMIT" python3 -m pneumonia train --data "$DATA" --out /tmp/runs/"$name" "$@" ${EXTRA:-} \
    && { python3 -m pneumonia predict "$DATA"/test --model-dir /tmp/runs/"$name" --csv /tmp/runs/"$name"/gpu_test_scores.csv \
         --workers 0 >/dev/null; code=$?; [ $code -eq 0 ] || [ $code -eq 3 ]; } \
    && tar -czf "$OUT/$name.tar.gz" --exclude=pneumonia_gate.npz -C /tmp/runs "$name" ) >/tmp/logs/"$name".log 2>&1
  echo "$name exit $? at $SECONDS s"
}
run g_e6r --set augment.noise_std=12 --set augment.blur_probability=0.5 &
run g_f1 --set backbone=efficientnet_lite0 --set frozen_epochs=2 --set epochs=15 --set learning_rate=3e-4 --set batch_size=64 &
wait
tar -czf "$OUT/logs.tar.gz" -C /tmp logs
tail -n 3 /tmp/logs/*.log
