"""Round 4's ranking figures (docs/experiments.md), from validation and its six stress copies only.

    python benchmarks/round4.py --data DATA/chest_xray runs/e6r runs/s1 runs/s2 ...

For each run: S95, the specificity on the pooled stress copies at the threshold where their pooled sensitivity is
0.95 (a ranking figure: calibration cannot move it); LL and Brier, the log loss and Brier score of the calibrated
probability on validation plus the pooled stress copies (proper scoring rules); and the seed spread (max - min)
of each over the runs named with --seeds. Nothing here reads the test set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumonia.io.bundle import read_model_metadata  # noqa: E402
from pneumonia.io.dataset import discover_split, find_split, load_images, patient_split, split_seed  # noqa: E402
from pneumonia.screening.predictor import load_predictor  # noqa: E402
from pneumonia.training.stress import stress_shifts  # noqa: E402

TARGET_SENSITIVITY = 0.95
EPS = 1e-7


def specificity_at_sensitivity(labels: np.ndarray, scores: np.ndarray, target: float = TARGET_SENSITIVITY) -> float:
    """Specificity at the highest threshold whose sensitivity is at least `target` (a score >= it is flagged)."""
    positives = np.sort(scores[labels == 1])[::-1]
    threshold = positives[int(np.ceil(target * positives.size)) - 1]
    return float(np.mean(scores[labels == 0] < threshold))


def figures(labels: np.ndarray, clean: np.ndarray, shifted: list[np.ndarray]) -> dict[str, float]:
    stress_labels = np.tile(labels, len(shifted))
    stress = np.concatenate(shifted)
    pooled_labels, pooled = np.concatenate([labels, stress_labels]), np.concatenate([clean, stress])
    p = np.clip(pooled, EPS, 1 - EPS)
    return {
        "S95": specificity_at_sensitivity(stress_labels, stress),
        "LL": float(-np.mean(pooled_labels * np.log(p) + (1 - pooled_labels) * np.log(1 - p))),
        "Brier": float(np.mean((pooled - pooled_labels) ** 2)),
        "val S95": specificity_at_sensitivity(labels, clean),
    }


def run_figures(run: Path, data: Path) -> dict[str, float]:
    metadata = read_model_metadata(run)
    config = metadata.training_config
    samples = discover_split(find_split(data, "train"))
    _, val_samples = patient_split(samples, config["validation_fraction"], split_seed(config))
    labels = np.array([s.label for s in val_samples])
    predictor = load_predictor(run, with_gate=False)
    images = load_images([s.path for s in val_samples], predictor.image_size)
    clean = predictor.predict_arrays(images)
    shifted = [predictor.predict_arrays(x) for x in stress_shifts(images).values()]
    return figures(labels, clean, shifted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", nargs="*", default=[], help="runs of one recipe at several seeds (for the spread)")
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    rows = {run.name: run_figures(run, args.data) for run in args.runs}
    names = list(next(iter(rows.values())))
    print("| run | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{values[k]:.4f}" for k in names) + " |")
    seeds = [Path(s).name for s in args.seeds if Path(s).name in rows]
    if len(seeds) > 1:
        spread = {k: max(rows[s][k] for s in seeds) - min(rows[s][k] for s in seeds) for k in names}
        print(f"| seed spread ({', '.join(seeds)}) | " + " | ".join(f"{spread[k]:.4f}" for k in names) + " |")


if __name__ == "__main__":
    main()
