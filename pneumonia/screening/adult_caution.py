"""The adult caution without metadata (issue 30): a PNG, a JPEG or a DICOM without an age that looks like an adult's
chest film is scored with a caution saying so.

How. The network's block-3 activations, averaged over a 3x3 grid of the film (where in the film things are, so body
size, rib shape and how much of the film the chest fills show), log-scaled, projected on their first 64 principal
components, and the class-conditional Mahalanobis distance (Ledoit-Wolf shrinkage) to the training children of the
fit split. A film further from both classes than 99.5% of the validation split (train/, by patient) and its
stress-shifted copies, pooled as for the gate's other thresholds, is flagged.

Chosen, never fitted, on 24 adult development films (../shared/data/adult_dev, not in the project): among block 3,
4 and 5 grids with 32, 64, 128 components or none, at the 99.5% validation quantile, block 3 with 64 components
flagged the most of them (17 of 24; docs/gate_benchmark.md). Nothing here is fitted on an adult film or on the test
split. A film that is from an adult but close to the children (a small adult, a tightly cropped film) is not caught;
a child whose film is framed unlike the training films can be.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumonia.wording import ADULT_LOOK

ADULT_FILENAME = "pneumonia_adult.npz"


@dataclass(frozen=True)
class AdultConfig:
    layer: str = "block3_relu"
    grid: int = 3  # cells a side; the layer's map is averaged over blocks of (side // grid) pixels
    components: int = 64
    quantile: float = 0.995  # share of validation children (clean and stress-shifted, pooled) left unflagged


@dataclass
class AdultCaution:
    config: AdultConfig
    centre: np.ndarray  # (d,) mean of the fit split's grid features, before projection
    components: np.ndarray  # (k, d) principal axes
    means: np.ndarray  # (2, k) class means in the projection
    precision: np.ndarray  # (k, k)
    threshold: float  # the validation quantile of the distance

    def distance(self, raw: np.ndarray) -> np.ndarray:
        projected = (log_features(raw) - self.centre) @ self.components.T
        centred = projected[:, None, :] - self.means[None]
        return np.einsum("ncd,de,nce->nc", centred, self.precision, centred).min(axis=1)

    def looks_adult(self, raw: np.ndarray) -> np.ndarray:
        return self.distance(raw) > self.threshold


def log_features(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float64)
    return np.log1p(np.maximum(raw.reshape(len(raw), -1), 0.0))


def grid_output(model, config: AdultConfig):
    """The Keras tensor of the layer's grid averages (flattened), to add to a features model's outputs."""
    import keras

    output = model.get_layer(config.layer).output
    size = max(1, int(output.shape[1]) // config.grid)
    return keras.layers.Flatten()(keras.layers.AveragePooling2D(pool_size=size, strides=size)(output))


def fit_adult_caution(fit_raw: np.ndarray, fit_labels: np.ndarray, validation_raw: np.ndarray,
                      config: AdultConfig = AdultConfig()) -> AdultCaution:
    """Projection and class means from the fit split; the threshold from `validation_raw`: the validation split's
    children (the gate passes them with their stress-shifted copies)."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    features = log_features(fit_raw)
    labels = np.asarray(fit_labels).astype(int)
    components = min(config.components, features.shape[1], len(features) - 1)  # a tiny test model has fewer
    config = dataclasses.replace(config, components=components)
    pca = PCA(components, random_state=0).fit(features)
    projected = pca.transform(features)
    means = np.stack([projected[labels == c].mean(axis=0) for c in (0, 1)])
    precision = LedoitWolf(assume_centered=True).fit(projected - means[labels]).precision_
    caution = AdultCaution(config, pca.mean_, pca.components_, means, precision, 0.0)
    caution.threshold = float(np.quantile(caution.distance(validation_raw), config.quantile))
    return caution


def save_adult_caution(caution: AdultCaution, model_dir: Path) -> dict:
    from pneumonia.io.dataset import sha256_file

    path = Path(model_dir) / ADULT_FILENAME
    with open(path, "wb") as handle:
        np.savez(handle, centre=caution.centre.astype(np.float32), components=caution.components.astype(np.float32),
                 means=caution.means, precision=caution.precision)
    return {"file": ADULT_FILENAME, "sha256": sha256_file(path), "config": dataclasses.asdict(caution.config),
            "threshold": caution.threshold}


def load_adult_caution(model_dir: Path, entry: dict | None) -> AdultCaution | None:
    """The adult caution saved beside a model, or None for a model fitted before it existed."""
    from pneumonia.errors import ModelError
    from pneumonia.io.dataset import sha256_file

    if not entry:
        return None
    path = Path(model_dir) / entry["file"]
    if not path.is_file() or sha256_file(path) != entry["sha256"]:
        raise ModelError(f"The adult caution file {path} is missing or does not match its metadata hash; refit it "
                         "with `python -m pneumonia fit-gate`.")
    with np.load(path) as arrays:
        return AdultCaution(AdultConfig(**entry["config"]), arrays["centre"].astype(np.float64),
                            arrays["components"].astype(np.float64), arrays["means"], arrays["precision"],
                            float(entry["threshold"]))


def applies(facts: dict) -> bool:
    """Only films that carry no age: a DICOM's own age is judged by the age rule instead."""
    return not facts.get("age_band")


def with_adult_caution(status: str, reasons: tuple[str, ...], looks_adult: bool, facts: dict) -> tuple[str, tuple]:
    """The verdict with the adult caution added where it applies; a refusal stays as it is."""
    if not looks_adult or status == "refused" or not applies(facts):
        return status, reasons
    return "caution", (ADULT_LOOK, *reasons)
