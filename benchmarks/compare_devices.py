"""Issue 16, item 9: the same saved model scored on the GPU (torch backend, `benchmarks/score_on_gpu.sh`) and here
on the CPU (TensorFlow), on the same 128-px copies of the test films. Prints the largest score difference and the
test metrics at the model's own threshold from each device; the goal is agreement within 0.005.

    .venv/bin/python benchmarks/compare_devices.py runs/NAME /work/.device/N/NAME_gpu.csv [...pairs]

The films are read from .device/chest_xray_128/test (benchmarks/device_data_copy.py). Reads the test set: run it
only after the round's choice, as docs/experiments.md says.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumonia.decision.metrics import full_report  # noqa: E402
from pneumonia.io.dataset import load_images  # noqa: E402
from pneumonia.screening.predictor import load_predictor  # noqa: E402

COPIES = Path(__file__).resolve().parents[1] / ".device" / "chest_xray_128"


def gpu_scores(path: Path) -> dict[str, float]:
    """test/CLASS/NAME -> probability, from a `predict --csv` file written on the GPU machine."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"/".join(Path(r["file"]).parts[-3:]): float(r["probability"]) for r in rows if r["status"] != "refused"}


MEASURES = {"AUC": "auc", "accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity", "ECE": "ece"}


def metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    report = full_report(labels, scores, threshold)
    return {shown: report[key] for shown, key in MEASURES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="MODEL_DIR GPU_CSV, repeated")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give MODEL_DIR GPU_CSV pairs")
    print("| model | films | max abs score difference | measure | GPU (torch) | CPU (tensorflow) | difference |")
    print("|---|---|---|---|---|---|---|")
    for model_dir, csv_path in zip(args.pairs[::2], args.pairs[1::2]):
        on_gpu = gpu_scores(Path(csv_path))
        names = sorted(on_gpu)
        predictor = load_predictor(model_dir, with_gate=False)
        cpu = predictor.predict_arrays(load_images([COPIES / name for name in names], predictor.image_size))
        gpu = np.array([on_gpu[name] for name in names])
        labels = np.array([int(Path(name).parts[1] == "PNEUMONIA") for name in names])
        threshold = predictor.default_threshold.value
        largest = float(np.max(np.abs(gpu - cpu)))
        on_each = metrics(labels, gpu, threshold), metrics(labels, cpu, threshold)
        for i, measure in enumerate(on_each[0]):
            head = f"| {Path(model_dir).name} | {len(names)} | {largest:.1e} " if i == 0 else "| | | "
            g, c = on_each[0][measure], on_each[1][measure]
            print(f"{head}| {measure} | {g:.4f} | {c:.4f} | {abs(g - c):.4f} |")


if __name__ == "__main__":
    main()
