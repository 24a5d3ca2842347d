"""Loading the shipped model safely and scoring images from bytes or files, in batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from pneumonia.artifacts import read_metadata
from pneumonia.config import CLASS_NAMES, MODELS_DIR, TRAIN_COMMAND
from pneumonia.data import decode_grayscale, is_image_file, sha256_file
from pneumonia.errors import DataError, ImageDecodeError, ModelError

BATCH_SIZE = 64


def label_at(probability: float, threshold: float) -> str:
    """The one decision rule: a score at or above the threshold is called pneumonia."""
    return CLASS_NAMES[int(probability >= threshold)]


@dataclass(frozen=True)
class ImageResult:
    """One scored image, or the one-line reason it could not be scored."""

    name: str
    probability: float | None = None
    error: str | None = None

    def label(self, threshold: float) -> str | None:
        return None if self.probability is None else label_at(self.probability, threshold)


class Predictor:
    """A loaded model with its metadata; probabilities are calibrated P(pneumonia)."""

    def __init__(self, model, metadata: dict, model_dir: Path):
        self.model = model
        self.metadata = metadata
        self.model_dir = Path(model_dir)
        self.image_size = int(metadata["input"]["size"])
        self.threshold = float(metadata["threshold"]["default"])
        self._device: str | None = None

    @property
    def device(self) -> str:
        if self._device is None:
            from pneumonia.device import describe_device

            self._device = describe_device()
        return self._device

    def decode(self, source: bytes | Path | str) -> np.ndarray:
        """Grey levels at the model's input size, exactly as in training."""
        return decode_grayscale(source, self.image_size)

    def predict_arrays(self, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Probabilities for a (n, size, size) or (n, size, size, 1) batch of grey levels."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[..., None]
        if images.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        scores = [
            np.asarray(self.model(images[start : start + batch_size], training=False)).reshape(-1)
            for start in range(0, images.shape[0], batch_size)
        ]
        return np.concatenate(scores)

    def predict_bytes(self, data: bytes) -> float:
        return float(self.predict_arrays(self.decode(data)[None])[0])

    def predict_sources(self, named_sources: Iterable[tuple[str, bytes | Path]]) -> list[ImageResult]:
        """Score many images in batches; a file that cannot be decoded gets an error, the rest still go through."""
        results: list[ImageResult] = []
        decoded_names: list[str] = []
        decoded: list[np.ndarray] = []
        for name, source in named_sources:
            try:
                decoded.append(self.decode(source))
                decoded_names.append(name)
                results.append(ImageResult(name))
            except ImageDecodeError as exc:
                results.append(ImageResult(name, error=str(exc)))
        probabilities = iter(self.predict_arrays(np.stack(decoded)) if decoded else [])
        return [r if r.error else ImageResult(r.name, float(next(probabilities))) for r in results]

    def warm_up(self) -> None:
        """One tiny call so the first real prediction does not pay for graph building."""
        self.predict_arrays(np.zeros((1, self.image_size, self.image_size), dtype=np.float32))


def load_predictor(model_dir: Path | str = MODELS_DIR) -> Predictor:
    """Load the model named by the metadata after checking it exists and matches its recorded hash.

    The checks run before Keras is imported, so a missing model is reported at once and alone.
    """
    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    model_path = model_dir / metadata["model_file"]
    retrain = f"retrain with `{TRAIN_COMMAND}` then evaluate, or restore it with `git checkout {model_dir}`"
    if not model_path.is_file():
        raise ModelError(f"Model file {model_path} is missing; {retrain}.")
    actual = sha256_file(model_path)
    if actual != metadata["model_sha256"]:
        raise ModelError(
            f"{model_path} has SHA-256 {actual[:12]}..., but its metadata records "
            f"{metadata['model_sha256'][:12]}...: the file is corrupt or from another run; {retrain}."
        )
    import keras

    import pneumonia.model  # noqa: F401  (registers the custom layers for deserialisation)

    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as exc:  # keras raises many types for a damaged archive
        raise ModelError(f"Could not load {model_path} ({type(exc).__name__}); {retrain}.") from exc
    expected = (None, metadata["input"]["size"], metadata["input"]["size"], 1)
    if tuple(model.input_shape) != expected:
        raise ModelError(f"{model_path} takes inputs {model.input_shape}, metadata says {expected}; {retrain}.")
    return Predictor(model, metadata, model_dir)


def expand_inputs(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given plus image files found under folders; errors on a missing path or no images at all."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if is_image_file(p)))
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path} does not exist.")
    if not found:
        raise DataError("No .jpeg/.jpg/.png images found in " + ", ".join(str(p) for p in paths) + ".")
    return found
