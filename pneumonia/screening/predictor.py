"""Loading the model folder once (`ModelBundle`) and scoring images from bytes or files, in batches."""

from __future__ import annotations

import zlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterable

import numpy as np

from pneumonia.config import INPUT_EXTENSIONS, MODELS_DIR, TRAIN_COMMAND, score_perturbation
from pneumonia.errors import DataError, ImageDecodeError, ModelError
from pneumonia.io.bundle import ModelMetadata, Predictions, read_model_metadata, read_test_predictions
from pneumonia.io.dataset import sha256_file
from pneumonia.io.images import (
    DICOM_MAGIC,
    DICOM_MAGIC_OFFSET,
    decode_grayscale,
    display_image,
    read_input,
    to_model_input,
)
from pneumonia.screening.adult_caution import with_adult_caution
from pneumonia.screening.gate import REFUSED, Gate, image_statistics, load_gate
from pneumonia.threshold import label_at

BATCH_SIZE = 64
UNCHECKED = "unchecked"
"""The status of an image scored with the gate turned off (research use, `predict --no-gate`)."""


@dataclass(frozen=True)
class Screening:
    """One input after the gate: its status and reason, and a probability unless it was refused.

    `image` is the decoded grey picture the model saw (8-bit, at most 512 px), for display; `model_input`
    is that picture at the model's input size, for explanations. Both are kept only when asked for.
    """

    name: str
    status: str
    reason: str = ""
    probability: float | None = None
    facts: dict = field(default_factory=dict)
    source_format: str = ""
    image: np.ndarray | None = None
    model_input: np.ndarray | None = None

    def label(self, threshold: float) -> str | None:
        return None if self.probability is None else label_at(self.probability, threshold)


@dataclass(frozen=True)
class PendingInput:
    """An input read and pre-checked, waiting for the model: only what scoring and the result need, so a batch
    holds no full decoded image."""

    name: str
    model_input: np.ndarray
    cautions: list[str]
    common: dict  # facts, source_format and the display image, passed on to the Screening
    keep_input: bool  # the Screening keeps model_input (for explanations)
    adult_input: np.ndarray | None = None  # the film at the adult caution's size, where the gate has one


def prepare_input(
    name: str, source: bytes | Path, gate: Gate | None, image_size: int, keep_images: bool = False
) -> Screening | PendingInput:
    """One input read, pre-checked by `gate` (None: no gate) and resized for the model, or refused with its reason
    at the first problem. Needs no model, so worker processes run it. Never raises for anything in the file: what
    the fuzz tests hold it to."""
    try:
        image = read_input(source, name=Path(str(name)).name)
        common = {"facts": image.facts, "source_format": image.source_format,
                  "image": display_image(image.grey) if keep_images else None}
        if gate is not None:
            refusals, cautions = gate.precheck(image, image_statistics(image))
            if refusals:
                return Screening(name, REFUSED, "; ".join(refusals), **common)
        else:
            cautions = list(image.cautions)
        adult = gate.adult if gate is not None else None
        return PendingInput(name, to_model_input(image.grey, image_size), cautions, common, keep_images,
                            to_model_input(image.grey, adult.config.size) if adult is not None else None)
    except ImageDecodeError as exc:
        return Screening(name, REFUSED, str(exc))
    except MemoryError:
        return Screening(name, REFUSED, "the image is too large to process on this computer")
    except Exception as exc:  # one odd file never sinks the batch; the reason names no file content
        return Screening(name, REFUSED, f"the file could not be read: an unexpected problem ({type(exc).__name__})")


@dataclass(frozen=True)
class ModelBundle:
    """The model folder, loaded and checked once: the Keras model, its metadata (schema-checked, typed), its input
    gate, its test-set predictions (None before `evaluate`), and the SHA-256 the model file was checked against."""

    folder: Path
    metadata: ModelMetadata
    model: object
    gate: Gate | None
    test_predictions: Predictions | None

    @property
    def sha256(self) -> str:
        return self.metadata.model_sha256


class Predictor:
    """A loaded model bundle ready to score; probabilities are calibrated P(pneumonia)."""

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.model = bundle.model
        self.metadata = bundle.metadata
        self.model_dir = bundle.folder
        self.gate = bundle.gate
        self.image_size = bundle.metadata.input_size
        self.default_threshold = bundle.metadata.default_threshold
        self._device: str | None = None
        self._feature_model = None

    @property
    def device(self) -> str:
        if self._device is None:
            from pneumonia.model.device import describe_device

            self._device = describe_device()
        return self._device

    def decode(self, source: bytes | Path | str) -> np.ndarray:
        """Grey levels at the model's input size, exactly as in training."""
        return decode_grayscale(source, self.image_size)

    def predict_arrays(self, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Probabilities for a (n, size, size) or (n, size, size, 1) batch of grey levels."""
        images = _as_batch(images)
        if images.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        scores = [
            self._perturbed(images[start : start + batch_size],
                            _to_numpy(self.model(images[start : start + batch_size], training=False)).reshape(-1))
            for start in range(0, images.shape[0], batch_size)
        ]
        return np.concatenate(scores)

    def predict_bytes(self, data: bytes) -> float:
        """The ungated probability of one file (tests and benchmarks compare the app against this)."""
        return float(self.predict_arrays(self.decode(data)[None])[0])

    def features_and_probabilities(
        self, images: np.ndarray, layers: tuple[str, ...], batch_size: int = BATCH_SIZE, grid=None
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """One forward pass giving the pooled activations of `layers` (for the gate) and the probabilities; with
        `grid` (an AdultConfig), also its layer's grid averages (the adult caution's prescreen), as one more entry
        after the layers'."""
        images = _as_batch(images)
        model = self._features_model(layers, grid)
        # Each batch's outputs become numpy at once: a backend tensor held on to (torch) would keep its whole
        # forward graph alive, about 5 MB an image for the small CNN.
        parts = [
            [_to_numpy(output) for output in model(images[start : start + batch_size], training=False)]
            for start in range(0, len(images), batch_size)
        ]
        features = [np.concatenate([p[i] for p in parts]) for i in range(len(layers) + (grid is not None))]
        probabilities = [
            self._perturbed(images[start : start + batch_size], p[-1].reshape(-1))
            for start, p in zip(range(0, len(images), batch_size), parts)
        ]
        return features, np.concatenate(probabilities)

    def _perturbed(self, images: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Test-only (PNEUMONIA_PERTURB_SCORES=1e-6): move each score by a deterministic +-amount that depends on
        the image and on the size of the call, as scores move between CPUs and batch sizes, so a test that
        compares scores exactly fails on this machine instead of on someone else's."""
        amount = score_perturbation()
        if not amount:
            return probabilities
        signs = np.array([1.0 if (zlib.crc32(image.tobytes()) + len(images)) % 2 else -1.0 for image in images])
        return np.clip(probabilities + amount * signs, 0.0, 1.0).astype(probabilities.dtype)

    def _features_model(self, layers: tuple[str, ...], grid=None):
        if self._feature_model is None or self._feature_model[0] != (layers, grid):
            import keras

            pooled = [keras.layers.GlobalAveragePooling2D()(self.model.get_layer(name).output) for name in layers]
            if grid is not None:
                from pneumonia.screening.adult_caution import grid_output

                pooled.append(grid_output(self.model, grid))
            self._feature_model = ((layers, grid), keras.Model(self.model.input, [*pooled, self.model.output]))
        return self._feature_model[1]

    def screen(
        self,
        named_sources: Iterable[tuple[str, bytes | Path]],
        use_gate: bool = True,
        keep_images: bool = False,
        model_slot: Callable[[], ContextManager] | None = None,
    ) -> list[Screening]:
        """Read, gate and score many inputs. Any input that cannot be read, gated or scored gets `refused` with a
        one-line reason and no probability; the others still go through. Reading and the gate's statistics run
        first, outside `model_slot` (a shared lock, say), which is held only around the model calls."""
        prepared = [self.prepare(name, source, use_gate, keep_images) for name, source in named_sources]
        return self.score(prepared, use_gate, model_slot)

    def score(
        self,
        prepared: list[Screening | PendingInput],
        use_gate: bool = True,
        model_slot: Callable[[], ContextManager] | None = None,
    ) -> list[Screening]:
        """The model over the prepared inputs that wait for it, in one call, under `model_slot`; the rest (already
        refused) pass through. The order is kept."""
        pending = [item for item in prepared if isinstance(item, PendingInput)]
        if not pending:
            return list(prepared)
        with model_slot() if model_slot is not None else nullcontext():
            scored = iter(self._score_pending(pending, use_gate))
        return [next(scored) if isinstance(item, PendingInput) else item for item in prepared]

    def prepare(
        self, name: str, source: bytes | Path, use_gate: bool = True, keep_images: bool = False
    ) -> Screening | PendingInput:
        """One input read, pre-checked and resized for the model (see `prepare_input`)."""
        if use_gate and self.gate is None:
            raise ModelError("This model was loaded without its input gate; load it with load_predictor().")
        return prepare_input(name, source, self.gate if use_gate else None, self.image_size, keep_images)

    def _score_pending(self, pending: list[PendingInput], use_gate: bool) -> list[Screening]:
        """The model over every pending input at once; if that fails, one at a time, so a failure stays with
        the input that caused it."""
        try:
            return self._score_batch(pending, use_gate)
        except Exception:
            if len(pending) == 1:
                item = pending[0]
                return [Screening(item.name, REFUSED, "the model could not score this image (an unexpected error)",
                                  **item.common)]
            return [result for item in pending for result in self._score_pending([item], use_gate)]

    def _score_batch(self, pending: list[PendingInput], use_gate: bool) -> list[Screening]:
        batch = np.stack([item.model_input for item in pending])
        inverted: dict[int, float] = {}
        if use_gate:
            layers = self.gate.config.feature_layers
            adult = self.gate.adult
            features, probabilities = self.features_and_probabilities(batch, layers, grid=adult and adult.config)
            # the backbone reads only the films the prescreen (the network's grid, features[-1]) finds far
            looks_adult = (adult.looks_adult(features[-1], [item.adult_input for item in pending]) if adult
                           else np.zeros(len(pending), bool))
            unusualness = self.gate.unusualness(features[: len(layers)])
            refused = [i for i, value in enumerate(unusualness) if self.gate.refuses_as_unusual(value)]
            if refused:  # is it a negative? only refused films pay for this second pass
                negatives, _ = self.features_and_probabilities(255.0 - batch[refused], layers, grid=adult and adult.config)
                inverted = dict(zip(refused, self.gate.unusualness(negatives[: len(layers)]).tolist()))
        else:
            probabilities, unusualness = self.predict_arrays(batch), [None] * len(pending)
        results = []
        for index, (item, probability, unusual) in enumerate(zip(pending, probabilities, unusualness)):
            if use_gate:
                verdict = self.gate.verdict([], item.cautions, float(unusual), inverted.get(index), item.model_input)
                status, reasons = with_adult_caution(verdict.status, verdict.reasons, bool(looks_adult[index]),
                                                     item.common.get("facts") or {})
                reason = "; ".join(reasons)
            else:
                status = UNCHECKED
                reason = "; ".join(["not checked: the input gate was turned off", *item.cautions])
            if status != REFUSED and not np.isfinite(probability):
                status, reason = REFUSED, "the model gave no valid score for this image (an unexpected error)"
            scored = status != REFUSED
            results.append(Screening(item.name, status, reason, float(probability) if scored else None,
                                     **item.common, model_input=item.model_input if scored and item.keep_input else None))
        return results

    def warm_up(self) -> None:
        """One tiny call through each path so the first real prediction does not pay for graph building. Not the
        adult caution's backbone: only films past its prescreen (about one child film in ten) need it, so the first
        of them builds it (~0.6 s, once), rather than every cold start's first score waiting for it."""
        blank = np.zeros((1, self.image_size, self.image_size), dtype=np.float32)
        self.predict_arrays(blank)
        if self.gate is not None:
            adult = self.gate.adult
            self.features_and_probabilities(blank, self.gate.config.feature_layers, grid=adult and adult.config)


def _to_numpy(tensor) -> np.ndarray:
    """A model output as NumPy under any Keras backend (torch's tensors carry gradients np.asarray refuses)."""
    import keras

    return keras.ops.convert_to_numpy(tensor)


def _as_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    return images[..., None] if images.ndim == 3 else images


def _retrain_hint(model_dir: Path) -> str:
    return f"retrain with `{TRAIN_COMMAND}` then evaluate, or restore it with `git checkout {model_dir}`"


def check_model_files(model_dir: Path | str = MODELS_DIR) -> ModelMetadata:
    """The metadata, once the model file it names exists and matches its recorded hash. Cheap (no Keras), so
    the app can say what is wrong before it spends seconds importing TensorFlow."""
    model_dir = Path(model_dir)
    metadata = read_model_metadata(model_dir)
    model_path = model_dir / metadata.model_file
    retrain = _retrain_hint(model_dir)
    if not model_path.is_file():
        raise ModelError(f"Model file {model_path} is missing; {retrain}.")
    actual = sha256_file(model_path)
    if actual != metadata.model_sha256:
        raise ModelError(
            f"{model_path} has SHA-256 {actual[:12]}..., but its metadata records "
            f"{metadata.short_sha}...: the file is corrupt or from another run; {retrain}."
        )
    return metadata


def load_bundle(model_dir: Path | str = MODELS_DIR, with_gate: bool = True) -> ModelBundle:
    """Load the model named by the metadata, and its input gate, after checking both match their recorded hashes.

    The checks run before Keras is imported, so a missing model is reported at once and alone. Only
    fitting the gate itself loads a model without one.
    """
    model_dir = Path(model_dir)
    metadata = check_model_files(model_dir)
    model_path = model_dir / metadata.model_file
    retrain = _retrain_hint(model_dir)
    gate = load_gate(model_dir, metadata.gate) if with_gate else None
    import keras

    import pneumonia.model.network  # noqa: F401  (registers the custom layers for deserialisation)

    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as exc:  # keras raises many types for a damaged archive
        raise ModelError(f"Could not load {model_path} ({type(exc).__name__}); {retrain}.") from exc
    expected = (None, metadata.input_size, metadata.input_size, 1)
    if tuple(model.input_shape) != expected:
        raise ModelError(f"{model_path} takes inputs {model.input_shape}, metadata says {expected}; {retrain}.")
    try:
        test_predictions = read_test_predictions(model_dir) if metadata.test_metrics is not None else None
    except ModelError:
        test_predictions = None  # a folder between train and evaluate; pages say how to make them
    return ModelBundle(model_dir, metadata, model, gate, test_predictions)


def load_predictor(model_dir: Path | str = MODELS_DIR, with_gate: bool = True) -> Predictor:
    """A `Predictor` over the model folder's bundle (see `load_bundle`)."""
    return Predictor(load_bundle(model_dir, with_gate))


def is_input_file(path: Path) -> bool:
    """An image or DICOM inside a folder: by extension, or by the DICOM preamble for files without one."""
    if not path.is_file() or path.name.startswith("."):
        return False
    if path.suffix.lower() in INPUT_EXTENSIONS:
        return True
    if path.suffix:
        return False
    with open(path, "rb") as handle:
        return handle.read(DICOM_MAGIC_OFFSET + 4)[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC


def expand_inputs(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given plus images and DICOMs found under folders; errors on a missing path or nothing found."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if is_input_file(p)))
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path} does not exist.")
    if not found:
        raise DataError("No images or DICOM files found in " + ", ".join(str(p) for p in paths) + ".")
    return found
