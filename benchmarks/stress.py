"""Validation-only robustness of a trained model: AUC and specificity under fixed acquisition shifts.

    python benchmarks/stress.py MODEL_DIR [--data DIR] [--write]

Training records the same report; this recomputes it for any model folder (for example one
trained before the report existed). --write stores it in the folder's metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumonia.decision.metrics import OperatingPoint, operating_points, threshold_metrics  # noqa: E402
from pneumonia.io.bundle import read_metadata, read_validation_predictions, write_metadata  # noqa: E402
from pneumonia.io.dataset import load_images  # noqa: E402
from pneumonia.screening.predictor import load_predictor  # noqa: E402
from pneumonia.training.stress import stress_report, stress_shifts  # noqa: E402


def threshold_rules_under_stress(predictor, images, labels, clean_probabilities) -> list[str]:
    """Each validation threshold rule, scored on the clean and on the shifted validation images."""
    shifted = {name: predictor.predict_arrays(x) for name, x in stress_shifts(images).items()}
    lines = ["| rule | threshold | clean sens/spec | shifted mean sens | shifted mean spec | shifted worst spec |", "|---|---|---|---|---|---|"]
    rules = (
        operating_points(labels, clean_probabilities, 0.97)
        + operating_points(labels, clean_probabilities, 0.95)[:1]
        + [OperatingPoint("model", predictor.default_threshold.value, predictor.metadata.threshold_rule)]
    )
    for point in rules:
        clean = threshold_metrics(labels, clean_probabilities, point.threshold)
        under = [threshold_metrics(labels, p, point.threshold) for p in shifted.values()]
        sens = sum(m["sensitivity"] for m in under) / len(under)
        spec = [m["specificity"] for m in under]
        name = point.rule.split(" (screening")[0] + (" (the model's default)" if point.name == "model" else "")
        lines.append(
            f"| {name} | {point.threshold:.3f} | {clean['sensitivity']:.3f}/{clean['specificity']:.3f} "
            f"| {sens:.3f} | {sum(spec) / len(spec):.3f} | {min(spec):.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("PNEUMONIA_DATA", "../shared/data/chest_xray")))
    parser.add_argument("--rules", action="store_true", help="also compare threshold rules under the shifts")
    parser.add_argument("--write", action="store_true", help="store the report in the model's metadata")
    args = parser.parse_args()
    predictor = load_predictor(args.model_dir)
    validation = read_validation_predictions(args.model_dir)
    images = load_images([args.data / f for f in validation.files], predictor.image_size)
    report = stress_report(predictor.predict_arrays, images, validation.labels, predictor.default_threshold.value)
    print(json.dumps(report, indent=1))
    if args.rules:
        clean = predictor.predict_arrays(images)
        print("\n".join(threshold_rules_under_stress(predictor, images, validation.labels, clean)))
    if args.write:
        metadata = read_metadata(args.model_dir)
        metadata["metrics"]["validation"]["stress"] = report
        write_metadata(args.model_dir, metadata)


if __name__ == "__main__":
    main()
