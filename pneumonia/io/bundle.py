"""Reading and writing what ships in models/: metadata JSON and prediction tables."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumonia.config import METADATA_FILENAME, TEST_PREDICTIONS_FILENAME, VALIDATION_PREDICTIONS_FILENAME
from pneumonia.errors import ModelError

THUMBNAILS_DIR = "test_thumbnails"
"""Inside the model folder: 224-px copies of the test films (written by evaluate) for reader mode and the gallery."""
METADATA_SCHEMA_VERSION = 1
PREDICTION_COLUMNS = ("file", "label", "subtype", "probability")


@dataclass(frozen=True)
class Predictions:
    """One split's labels and scores, as the app and the threshold explorer use them."""

    files: list[str]
    labels: np.ndarray
    subtypes: np.ndarray
    probabilities: np.ndarray


def write_predictions(path: Path, files: list[str], labels, subtypes, probabilities) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        for row in zip(files, labels, subtypes, probabilities):
            writer.writerow([row[0], int(row[1]), row[2], repr(float(row[3]))])  # exact round trip: thresholds sit on scores


def read_predictions(path: Path) -> Predictions:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} is missing; run `python -m pneumonia evaluate` to regenerate it.")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or set(PREDICTION_COLUMNS) - set(rows[0]):
        raise ModelError(f"{path} lacks the columns {', '.join(PREDICTION_COLUMNS)}; regenerate it with evaluate.")
    return Predictions(
        files=[r["file"] for r in rows],
        labels=np.array([int(r["label"]) for r in rows]),
        subtypes=np.array([r["subtype"] for r in rows]),
        probabilities=np.array([float(r["probability"]) for r in rows]),
    )


def read_test_predictions(model_dir: Path) -> Predictions:
    return read_predictions(Path(model_dir) / TEST_PREDICTIONS_FILENAME)


def read_validation_predictions(model_dir: Path) -> Predictions:
    return read_predictions(Path(model_dir) / VALIDATION_PREDICTIONS_FILENAME)


def read_metadata(model_dir: Path) -> dict:
    path = Path(model_dir) / METADATA_FILENAME
    if not path.is_file():
        raise ModelError(
            f"No model metadata at {path}; train a model with `python -m pneumonia train --data DIR --out {model_dir}`."
        )
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); restore it with `git checkout {path}` or retrain.") from exc
    if metadata.get("schema_version") != METADATA_SCHEMA_VERSION:
        raise ModelError(
            f"{path} has schema version {metadata.get('schema_version')}, this code reads {METADATA_SCHEMA_VERSION}; retrain."
        )
    return metadata


def write_metadata(model_dir: Path, metadata: dict) -> Path:
    path = Path(model_dir) / METADATA_FILENAME
    path.write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n")
    return path


def thumbnail_name(file: str) -> str:
    """Where a test file's thumbnail lives, relative to the thumbnails folder (test file stems are unique)."""
    return Path(file).stem + ".jpg"
