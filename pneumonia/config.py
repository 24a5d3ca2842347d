"""The one place for settings shared by training, inference and the app."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent

CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
"""Index 0 is the negative class, index 1 the positive class the model scores."""

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpeg", ".jpg", ".png"})
"""What training and data discovery read: the Kermany set's own formats."""
INPUT_EXTENSIONS: frozenset[str] = frozenset(
    {".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".dcm", ".dicom"}
)
"""What `predict` picks up inside folders (files given by name are read whatever their extension)."""
DICOM_EXTENSIONS: frozenset[str] = frozenset({".dcm", ".dicom"})
MAX_MEGAPIXELS = 50
"""Larger images are refused before decoding: decompression bombs, and uploads that would hold the shared
model slot for seconds. A detector's chest film is 5 to 12 megapixels (e.g. 3,000 x 3,000)."""
WORKING_SIDE = 1024
"""Decoded images are reduced to at most this many pixels a side at once (the model reads 128, cards show 512,
the gate's statistics 256), so no full-resolution float image outlives its decode."""
GATE_FILENAME = "pneumonia_gate.npz"
MODELS_DIR = REPO_DIR / "models"
ASSETS_DIR = REPO_DIR / "assets"
MODEL_FILENAME = "pneumonia_cnn.keras"
METADATA_FILENAME = "pneumonia_cnn.json"
TEST_PREDICTIONS_FILENAME = "test_predictions.csv"
VALIDATION_PREDICTIONS_FILENAME = "validation_predictions.csv"
HISTORY_FILENAME = "training_history.csv"
DATA_ENV_VAR = "PNEUMONIA_DATA"
"""Tests and tools read the Kaggle-layout data folder (the one holding train/ and test/) from here."""

DB_ENV_VAR = "PNEUMONIA_DB"
"""Where reader studies are kept: a file path (an SQLite database) or any SQLAlchemy URL, e.g.
postgresql+psycopg://user@host/db when several app servers share the studies."""


def study_database() -> str:
    """The reader-study database named by PNEUMONIA_DB, or by default one SQLite file outside the checkout:
    $XDG_DATA_HOME/pneumonia/studies.db, i.e. ~/.local/share/pneumonia/studies.db."""
    value = os.environ.get(DB_ENV_VAR)
    if value:
        return value
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return str(base / "pneumonia" / "studies.db")


BACKBONE_WEIGHTS = REPO_DIR / "build" / "backbones" / "efficientnet_lite0_imagenet.weights.h5"
"""The converted ImageNet weights a backbone run starts from (git-ignored; docs/backbone.md makes them)."""
CONVERT_COMMAND = "python -m tools.convert_backbone --out build/backbones/efficientnet_lite0_imagenet.weights.h5"
CHECKPOINTS_DIRNAME = "checkpoints"
"""Inside a training run's output folder: the state `train --resume` continues from; removed when the run ends."""

TRAIN_COMMAND = "python -m pneumonia train --data DATA/chest_xray --out models/"
GATE_COMMAND = "python -m pneumonia fit-gate --data DATA/chest_xray --model-dir models/"
EVALUATE_COMMAND = "python -m pneumonia evaluate --data DATA/chest_xray --model-dir models/"


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; saved verbatim into the model metadata."""

    image_size: int = 128
    filters: tuple[int, ...] = (16, 32, 64, 128, 192)
    dropout: float = 0.3
    batch_size: int = 32
    epochs: int = 20
    patience: int = 6
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    validation_fraction: float = 0.15
    target_sensitivity: float = 0.95
    normalization: str = "standardize"  # or "equalize": per-image histogram equalisation inside the model
    backbone: str = "none"  # or "efficientnet_lite0": ImageNet-pretrained, fine-tuned (its own normalisation)
    frozen_epochs: int = 0  # with a backbone: epochs training the new head alone, backbone frozen, first
    head_learning_rate: float = 1e-3  # the learning rate of those head-only epochs
    freeze_batch_norm: bool = True  # with a backbone: keep ImageNet's batch-norm statistics while fine-tuning
    teacher: str = ""  # a saved model's folder: distil it (its logits on each augmented batch) into this model
    distill_weight: float = 0.5  # share of the loss that follows the teacher; the rest follows the labels
    distill_temperature: float = 2.0  # both logits are divided by this before they are compared (Hinton et al.)
    ema: bool = True  # evaluate and keep an exponential moving average of the weights: steadier checkpoints
    mixup_alpha: float = 0.0  # > 0: blend pairs of images and their labels with Beta(alpha, alpha) weights
    calibration_pool: str = "validation+stress"  # or "validation": the images Platt scaling and thresholds use
    seed: int = 42
    split_seed: int | None = None  # the patient split's seed; None: `seed` (seed runs that share one validation set)
    augment: dict = field(
        default_factory=lambda: {
            "rotation": 0.03,  # fraction of a full turn, about +-11 degrees
            "zoom": 0.12,
            "translation": 0.06,
            "contrast": 0.35,
            "brightness": 0.2,
            "gamma": 0.35,  # log-uniform gamma in [exp(-g), exp(g)]
            "blur_probability": 0.5,
            "noise_std": 12.0,  # in 0-255 grey levels
            "border_erase_probability": 0.0,  # per edge: cover a strip with the mean grey (markers, text)
            "border_erase_fraction": 0.12,  # widest strip, as a fraction of the side
        }
    )


PERTURB_ENV_VAR = "PNEUMONIA_PERTURB_SCORES"
"""Test-only: every model score moves by this much, up or down, deterministically (see Predictor._perturbed)."""


def score_perturbation() -> float:
    """The test-only score perturbation, 0 unless PNEUMONIA_PERTURB_SCORES is set (`make test` sets 1e-6)."""
    return float(os.environ.get(PERTURB_ENV_VAR) or 0.0)


def default_data_dir() -> Path | None:
    """The data folder named by the environment, or None when it is not set."""
    value = os.environ.get(DATA_ENV_VAR)
    return Path(value) if value else None


@dataclass(frozen=True)
class GateConfig:
    """The input gate's fixed rules; its learned thresholds are fitted on train/ and stored with the model."""

    min_side: int = 32  # refused below: too small to be a radiograph at all
    max_aspect: float = 3.0  # refused beyond 1:3
    caution_side: int = 224  # cautioned below: the training copies were 224 px a side
    modalities: tuple[str, ...] = ("CR", "DX", "DR")  # DICOM modalities of a projection radiograph
    frontal_views: tuple[str, ...] = ("AP", "PA", "")  # anything else (LL, RL, LATERAL, ...) is cautioned
    body_parts: tuple[str, ...] = ("CHEST", "THORAX", "LUNG", "")
    trained_age_band: str = "1–5 years"
    feature_layers: tuple[str, ...] = ()  # two depths for the Mahalanobis score; () = the middle and last conv blocks
    statistic_refusal_rate: float = 0.001  # per image-statistic rule, on validation and its stress-shifted copies
    unusual_refusal_rate: float = 0.005  # the Mahalanobis rule, on the same images
    caution_rate: float = 0.0  # share of validation images cautioned as unusual (0: no caution band)
    saturation_floor: float = 0.04  # the colour rule never refuses below this mean chroma (grey validation data)
    stats_side: int = 256  # image statistics are computed on a copy this large
