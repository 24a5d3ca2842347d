"""The adult caution without metadata (issue 30): a PNG, a JPEG or a DICOM without an age that looks like an adult's
chest film is scored with a caution saying so.

How: two class-conditional Mahalanobis distances (Ledoit-Wolf shrinkage, on principal components) to the training
children of the fit split, in a cascade, so that children do not pay for the expensive one.
- *The prescreen* reads the network's own block-3 activations, averaged over a 3x3 grid of the film (where in the
  film things are), log-scaled, on 64 components. They come out of the pass that scores the film, so it costs nothing.
  Its threshold is the 90% quantile of validation and its stress copies, pooled: about one child in ten goes on.
- *The backbone* reads the film at 224 px through the first five blocks of EfficientNet-Lite0 with its ImageNet
  weights (a generic pretrained backbone: edges, textures and shapes at the scale of ribs, clavicles and the body's
  outline), on the same grid, on 128 components. Its projection and covariance are fitted on the fit split's films
  *and their six stress-shifted copies* (gamma, contrast, blur, noise, resolution): generic features move with pixel
  noise and blur as far as with a patient's age, and fitting on the copies tells the distance that those directions
  are a child's too. Its threshold is the 99.9% pooled validation quantile: 0.1% of validation, the share the gate's
  other rules (0.9% between them) leave of a 1% budget. It runs only on the films past the prescreen.
A film is told it looks like an adult's when it is past both.

Chosen, never fitted, on 24 adult development films (../shared/data/adult_dev, not in the project):
`python benchmarks/adult_backbone.py --stress-fit` compared the backbone's stages with the network's own activations
(`benchmarks/adult_choice.py`), and `python benchmarks/adult_cascade.py` chose the prescreen's quantile; all 24 pass
the prescreen at 90%. docs/gate_benchmark.md reports what the cascade catches. Nothing here is fitted on an adult
film or on the test split. A film that is from an adult but close to the children (a small adult, a tightly cropped
film) is not caught; a child whose film is framed unlike the training films can be.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumonia.wording import ADULT_LOOK

ADULT_FILENAME = "pneumonia_adult.npz"
TRUNK_WEIGHTS = Path(__file__).with_name("lite0_trunk_imagenet.npz")
"""EfficientNet-Lite0's ImageNet weights of the stem and blocks 0-4 only (Apache-2.0, see NOTICE), written from the
converted backbone by `python -m tools.adult_trunk`; 0.25 MB, so the caution needs no download and no build step."""
BATCH = 32
STAGES = ("prescreen", "backbone")


@dataclass(frozen=True)
class AdultConfig:
    # the prescreen: the network's own activations
    layer: str = "block3_relu"
    grid: int = 3  # cells a side, for both stages; a map is averaged over blocks of (side // grid) pixels
    prescreen_components: int = 64
    prescreen_quantile: float = 0.90  # share of validation children (clean and stress-shifted) the prescreen lets off
    # the backbone: EfficientNet-Lite0's blocks 0..last_block, only for the films past the prescreen
    last_block: int = 4  # 28 x 28 x 40 at 224 px
    size: int = 224  # the film's side before the backbone, in pixels
    components: int = 128
    quantile: float = 0.999  # share of validation children (clean and stress-shifted, pooled) left unflagged


@dataclass
class ClassDistance:
    """The squared Mahalanobis distance to the nearer class mean of the training children, in a PCA projection."""

    centre: np.ndarray  # (d,) mean of the fitted features, before projection
    components: np.ndarray  # (k, d) principal axes
    means: np.ndarray  # (2, k) class means in the projection
    precision: np.ndarray  # (k, k)
    threshold: float  # a validation quantile of the distance

    def distance(self, features: np.ndarray) -> np.ndarray:
        projected = (np.asarray(features, np.float64) - self.centre) @ self.components.T
        centred = projected[:, None, :] - self.means[None]
        return np.einsum("ncd,de,nce->nc", centred, self.precision, centred).min(axis=1)

    def far(self, features: np.ndarray) -> np.ndarray:
        return self.distance(features) > self.threshold


@dataclass
class AdultCaution:
    config: AdultConfig
    prescreen: ClassDistance  # on log_features of the network's grid averages
    backbone: ClassDistance  # on adult_features of the film at config.size

    def looks_adult(self, network_grid: np.ndarray, films) -> np.ndarray:
        """Whether each film looks like an adult's, from `network_grid` (the scoring pass's grid averages) and
        `films` (a sequence of (size, size) arrays), which the backbone reads only where the prescreen finds the film
        far."""
        return self.cascade(network_grid,
                            lambda past: adult_features(np.stack([films[i] for i in past]), self.config))

    def cascade(self, network_grid: np.ndarray, backbone_features: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Past the prescreen and then past the backbone; `backbone_features(indices)` is asked only for the films
        past the prescreen."""
        flags = self.prescreen.far(log_features(network_grid))
        past = np.flatnonzero(flags)
        if len(past):
            flags[past] = self.backbone.far(backbone_features(past))
        return flags


def log_features(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float64)
    return np.log1p(np.maximum(raw.reshape(len(raw), -1), 0.0))


def grid_output(model, config: AdultConfig):
    """The Keras tensor of `config.layer`'s grid averages (flattened), added to the network's features model's outputs
    for the prescreen."""
    import keras

    output = model.get_layer(config.layer).output
    size = max(1, int(output.shape[1]) // config.grid)
    return keras.layers.Flatten()(keras.layers.AveragePooling2D(pool_size=size, strides=size)(output))


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
    """(n, size, size) grey films in [0, 255] -> (n, d) grid features of the backbone's early blocks. Compiled
    (`predict_on_batch`) rather than eager: about half the time on a CPU."""
    import keras

    films = np.asarray(films, np.float32)
    if films.ndim == 2:
        films = films[None]
    model = _trunk(config.last_block, config.size, config.grid)
    parts = [keras.ops.convert_to_numpy(model.predict_on_batch(np.repeat(films[i:i + BATCH, ..., None], 3, axis=-1)))
             for i in range(0, len(films), BATCH)]
    return np.concatenate(parts).astype(np.float64)


def fit_distance(features: np.ndarray, labels: np.ndarray, validation_features: np.ndarray, components: int,
                 quantile: float) -> ClassDistance:
    """Projection, class means and covariance from `features`; the threshold, the `quantile` of the distances of
    `validation_features` (the gate passes validation with its stress-shifted copies)."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    features = np.asarray(features, np.float64)
    labels = np.asarray(labels).astype(int)
    components = min(components, features.shape[1], len(features) - 1)  # a tiny test model has fewer
    pca = PCA(components, random_state=0).fit(features)
    projected = pca.transform(features)
    means = np.stack([projected[labels == c].mean(axis=0) for c in (0, 1)])
    precision = LedoitWolf(assume_centered=True).fit(projected - means[labels]).precision_
    distance = ClassDistance(pca.mean_, pca.components_, means, precision, 0.0)
    distance.threshold = float(np.quantile(distance.distance(validation_features), quantile))
    return distance


def fit_adult_caution(prescreen: tuple[np.ndarray, np.ndarray, np.ndarray],
                      backbone: tuple[np.ndarray, np.ndarray, np.ndarray],
                      config: AdultConfig = AdultConfig()) -> AdultCaution:
    """Both stages from (fit features, fit labels, validation features): the prescreen's on the network's raw grid
    averages, the backbone's on `adult_features`."""
    fit_grid, fit_labels, validation_grid = prescreen
    first = fit_distance(log_features(fit_grid), fit_labels, log_features(validation_grid),
                         config.prescreen_components, config.prescreen_quantile)
    second = fit_distance(*backbone, config.components, config.quantile)
    config = dataclasses.replace(config, prescreen_components=len(first.components), components=len(second.components))
    return AdultCaution(config, first, second)


def save_adult_caution(caution: AdultCaution, model_dir: Path) -> dict:
    from pneumonia.io.dataset import sha256_file

    path = Path(model_dir) / ADULT_FILENAME
    arrays = {}
    for stage in STAGES:
        distance = getattr(caution, stage)
        arrays.update({f"{stage}_centre": distance.centre.astype(np.float32),
                       f"{stage}_components": distance.components.astype(np.float32),
                       f"{stage}_means": distance.means, f"{stage}_precision": distance.precision})
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return {"file": ADULT_FILENAME, "sha256": sha256_file(path), "trunk_sha256": sha256_file(TRUNK_WEIGHTS),
            "config": dataclasses.asdict(caution.config), "prescreen_threshold": caution.prescreen.threshold,
            "threshold": caution.backbone.threshold}


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
    thresholds = {"prescreen": entry["prescreen_threshold"], "backbone": entry["threshold"]}
    with np.load(path) as arrays:
        stages = {stage: ClassDistance(arrays[f"{stage}_centre"].astype(np.float64),
                                       arrays[f"{stage}_components"].astype(np.float64), arrays[f"{stage}_means"],
                                       arrays[f"{stage}_precision"], float(thresholds[stage])) for stage in STAGES}
    return AdultCaution(AdultConfig(**entry["config"]), **stages)


def applies(facts: dict) -> bool:
    """Only films that carry no age: a DICOM's own age is judged by the age rule instead."""
    return not facts.get("age_band")


def with_adult_caution(status: str, reasons: tuple[str, ...], looks_adult: bool, facts: dict) -> tuple[str, tuple]:
    """The verdict with the adult caution added where it applies; a refusal stays as it is."""
    if not looks_adult or status == "refused" or not applies(facts):
        return status, reasons
    return "caution", (ADULT_LOOK, *reasons)
