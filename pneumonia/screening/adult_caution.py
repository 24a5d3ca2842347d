"""The adult caution without metadata (issue 30): a PNG, a JPEG or a DICOM without an age that looks like an adult's
chest film is scored with a caution saying so.

How. The film at 224 px through the first five blocks of EfficientNet-Lite0 with its ImageNet weights (a generic
pretrained backbone: edges, textures and shapes at the scale of ribs, clavicles and the body's outline), that map
averaged over a 3x3 grid of the film (where in the film things are), projected on its first 128 principal
components, and the class-conditional Mahalanobis distance (Ledoit-Wolf shrinkage) to the training children. The
projection and the covariance are fitted on the fit split's films *and their six stress-shifted copies* (gamma,
contrast, blur, noise, resolution): generic features move with pixel noise and blur as far as with a patient's age,
and fitting on the copies tells the distance that those directions are a child's too. A film further from both
classes than 99.9% of the validation split (train/, by patient) and its stress copies, pooled, is flagged: 0.1% of
validation, the share the gate's other rules (0.9% between them) leave of a 1% budget.

Chosen, never fitted, on 24 adult development films (../shared/data/adult_dev, not in the project):
`python benchmarks/adult_backbone.py` compared this backbone's stages with the network's own activations
(`benchmarks/adult_choice.py`) at the same quantiles; docs/gate_benchmark.md reports what it catches. Nothing here is
fitted on an adult film or on the test split. A film that is from an adult but close to the children (a small adult,
a tightly cropped film) is not caught; a child whose film is framed unlike the training films can be.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumonia.wording import ADULT_LOOK

ADULT_FILENAME = "pneumonia_adult.npz"
TRUNK_WEIGHTS = Path(__file__).with_name("lite0_trunk_imagenet.npz")
"""EfficientNet-Lite0's ImageNet weights of the stem and blocks 0-4 only (Apache-2.0, see NOTICE), written from the
converted backbone by `python -m tools.adult_trunk`; 0.2 MB, so the caution needs no download and no build step."""
BATCH = 32


@dataclass(frozen=True)
class AdultConfig:
    last_block: int = 4  # EfficientNet-Lite0's blocks 0..4 (28 x 28 x 40 at 224 px)
    size: int = 224  # the film's side before the backbone, in pixels
    grid: int = 3  # cells a side; the map is averaged over blocks of (side // grid) pixels
    components: int = 128
    quantile: float = 0.999  # share of validation children (clean and stress-shifted, pooled) left unflagged


@functools.cache
def _trunk(last_block: int, size: int, grid: int):
    """The backbone's first blocks with the committed ImageNet weights, ending in the grid averages."""
    import keras

    from pneumonia.model.efficientnet_lite import lite0_trunk

    inputs = keras.Input((size, size, 3))
    output, (side, _) = lite0_trunk(inputs, (size, size), last_block)
    pool = max(1, side // grid)
    pooled = keras.layers.Flatten()(keras.layers.AveragePooling2D(pool_size=pool, strides=pool)(output))
    model = keras.Model(inputs, pooled, name="adult_trunk")
    with np.load(TRUNK_WEIGHTS) as arrays:
        for layer in model.layers:
            if layer.weights:
                layer.set_weights([arrays[f"{layer.name}/{i}"] for i in range(len(layer.weights))])
    return model


def adult_features(films: np.ndarray, config: AdultConfig) -> np.ndarray:
    """(n, size, size) grey films in [0, 255] -> (n, d) grid features of the backbone's early blocks."""
    import keras

    films = np.asarray(films, np.float32)
    if films.ndim == 2:
        films = films[None]
    model = _trunk(config.last_block, config.size, config.grid)
    parts = [keras.ops.convert_to_numpy(model(np.repeat(films[i:i + BATCH, ..., None], 3, axis=-1), training=False))
             for i in range(0, len(films), BATCH)]
    return np.concatenate(parts).astype(np.float64)


@dataclass
class AdultCaution:
    config: AdultConfig
    centre: np.ndarray  # (d,) mean of the fitted features, before projection
    components: np.ndarray  # (k, d) principal axes
    means: np.ndarray  # (2, k) class means in the projection
    precision: np.ndarray  # (k, k)
    threshold: float  # the validation quantile of the distance

    def distance(self, features: np.ndarray) -> np.ndarray:
        projected = (np.asarray(features, np.float64) - self.centre) @ self.components.T
        centred = projected[:, None, :] - self.means[None]
        return np.einsum("ncd,de,nce->nc", centred, self.precision, centred).min(axis=1)

    def looks_adult(self, features: np.ndarray) -> np.ndarray:
        return self.distance(features) > self.threshold

    def films_look_adult(self, films: np.ndarray) -> np.ndarray:
        """(n, size, size) films at `config.size` -> whether each looks like an adult's."""
        return self.looks_adult(adult_features(films, self.config))


def fit_adult_caution(fit_features: np.ndarray, fit_labels: np.ndarray, validation_features: np.ndarray,
                      config: AdultConfig = AdultConfig()) -> AdultCaution:
    """Projection and class means from the fit split's features (the gate passes its films with their stress copies);
    the threshold from the validation split's (likewise with its stress copies)."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    features = np.asarray(fit_features, np.float64)
    labels = np.asarray(fit_labels).astype(int)
    components = min(config.components, features.shape[1], len(features) - 1)  # a tiny test model has fewer
    config = dataclasses.replace(config, components=components)
    pca = PCA(components, random_state=0).fit(features)
    projected = pca.transform(features)
    means = np.stack([projected[labels == c].mean(axis=0) for c in (0, 1)])
    precision = LedoitWolf(assume_centered=True).fit(projected - means[labels]).precision_
    caution = AdultCaution(config, pca.mean_, pca.components_, means, precision, 0.0)
    caution.threshold = float(np.quantile(caution.distance(validation_features), config.quantile))
    return caution


def save_adult_caution(caution: AdultCaution, model_dir: Path) -> dict:
    from pneumonia.io.dataset import sha256_file

    path = Path(model_dir) / ADULT_FILENAME
    with open(path, "wb") as handle:
        np.savez(handle, centre=caution.centre.astype(np.float32), components=caution.components.astype(np.float32),
                 means=caution.means, precision=caution.precision)
    return {"file": ADULT_FILENAME, "sha256": sha256_file(path), "trunk_sha256": sha256_file(TRUNK_WEIGHTS),
            "config": dataclasses.asdict(caution.config), "threshold": caution.threshold}


def load_adult_caution(model_dir: Path, entry: dict | None) -> AdultCaution | None:
    """The adult caution saved beside a model, or None for a model fitted before it existed."""
    from pneumonia.errors import ModelError
    from pneumonia.io.dataset import sha256_file

    if not entry:
        return None
    refit = "refit it with `python -m pneumonia fit-gate`."
    path = Path(model_dir) / entry["file"]
    if not path.is_file() or sha256_file(path) != entry["sha256"]:
        raise ModelError(f"The adult caution file {path} is missing or does not match its metadata hash; {refit}")
    fields = {field.name for field in dataclasses.fields(AdultConfig)}
    if set(entry["config"]) != fields or entry.get("trunk_sha256") != sha256_file(TRUNK_WEIGHTS):
        raise ModelError(f"The adult caution in {model_dir} was fitted on other features than this version reads; {refit}")
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
