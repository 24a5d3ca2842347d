"""Reading and writing what ships in models/: metadata JSON (and its typed view, `ModelMetadata`), prediction
tables and test thumbnails. The model itself and its gate are loaded by `pneumonia.screening.predictor`."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from pneumonia.config import METADATA_FILENAME, TEST_PREDICTIONS_FILENAME, VALIDATION_PREDICTIONS_FILENAME
from pneumonia.errors import ModelError
from pneumonia.threshold import Threshold

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
    _check_schema(metadata, path)
    return metadata


OLDER_SCHEMAS = {0: "it predates schema versions (before 2026-11)"}
"""Schemas this code no longer reads, and why; a bundle from one is refused with what to do."""


def _check_schema(metadata: dict, source: Path | str) -> None:
    """A ModelError saying what to do, unless the metadata has the schema this code reads."""
    version = metadata.get("schema_version", 0)
    if version != METADATA_SCHEMA_VERSION:
        why = OLDER_SCHEMAS.get(version, f"this code reads version {METADATA_SCHEMA_VERSION}")
        raise ModelError(f"{source} has metadata schema version {version}: {why}; retrain the model, or check out the "
                         f"package version that wrote it ({metadata.get('package_version', 'unknown')}).")


@dataclass(frozen=True)
class ModelMetadata:
    """The model's metadata, checked once when it is read: its schema version, what the model is, the default
    threshold and the presets as `Threshold` values, and the records of its training, calibration, metrics and
    gate (read-only mappings, as written by training)."""

    schema_version: int
    name: str
    package_version: str
    created: str
    model_file: str
    model_sha256: str
    input_size: int
    preprocessing: str
    architecture: str
    default_threshold: Threshold
    presets: tuple[Threshold, ...]
    threshold_rule: str
    chosen_on: str
    calibration: Mapping[str, Any]
    training: Mapping[str, Any]
    validation_metrics: Mapping[str, Any]
    test_metrics: Mapping[str, Any] | None
    recalibration: Mapping[str, Any] | None
    gate: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def short_sha(self) -> str:
        return self.model_sha256[:12]

    @property
    def training_config(self) -> Mapping[str, Any]:
        return self.training["config"]

    @classmethod
    def from_dict(cls, metadata: dict, source: Path | str = METADATA_FILENAME) -> ModelMetadata:
        """The typed view of a metadata dict; a missing field or an unknown schema is a ModelError saying what
        to do, not a KeyError later on some page."""
        _check_schema(metadata, source)
        try:
            entry = metadata["threshold"]
            frozen = {key: _frozen(metadata.get(key)) for key in ("calibration", "training", "recalibration", "gate")}
            return cls(
                schema_version=METADATA_SCHEMA_VERSION, name=metadata["name"], package_version=metadata["package_version"],
                created=metadata["created"], model_file=metadata["model_file"], model_sha256=metadata["model_sha256"],
                input_size=int(metadata["input"]["size"]), preprocessing=metadata["input"]["preprocessing"],
                architecture=metadata["architecture"], default_threshold=Threshold.model_default(entry),
                presets=tuple(Threshold.from_preset(p, default_entry=entry) for p in entry.get("presets", [])),
                threshold_rule=entry["rule"], chosen_on=entry["chosen_on"],
                validation_metrics=_frozen(metadata["metrics"]["validation"]),
                test_metrics=_frozen(metadata["metrics"].get("test")), raw=_frozen(metadata), **frozen,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source} is missing or has a malformed field ({exc}); restore it with "
                             f"`git checkout {source}` or retrain.") from exc


def _frozen(value):
    """A read-only view of nested JSON, so no page can change the metadata another page reads."""
    if isinstance(value, dict):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value


def thawed(value):
    """Plain dicts and lists again (for JSON output) from a `_frozen` view."""
    if isinstance(value, Mapping):
        return {key: thawed(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thawed(item) for item in value]
    return value


def read_model_metadata(model_dir: Path) -> ModelMetadata:
    """The model folder's metadata, read and validated once."""
    return ModelMetadata.from_dict(read_metadata(model_dir), Path(model_dir) / METADATA_FILENAME)


def write_metadata(model_dir: Path, metadata: dict) -> Path:
    path = Path(model_dir) / METADATA_FILENAME
    path.write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n")
    return path


def thumbnail_name(file: str) -> str:
    """Where a test file's thumbnail lives, relative to the thumbnails folder (test file stems are unique)."""
    return Path(file).stem + ".jpg"
