"""Why the model said what it said: LIME over superpixels and Grad-CAM, fast enough for the app.

LIME here is lime's own algorithm (its binary masks, cosine distances, kernel and ridge surrogate
from `lime.lime_base.LimeBase`), with its masks drawn in antithetic pairs for stability; the slow
parts are replaced: perturbed images are built in one vectorised step per batch and scored in
large model batches. Two
choices differ from lime's image defaults because this is a radiograph: superpixels come from
SLIC on the grey levels, and a hidden superpixel is filled with its own mean grey level, never
black, since black is air and itself reads as evidence. The surrogate is fitted to the model's
log-odds rather than its probability, which saturates on confident predictions.

Heavy libraries are imported here at module level; `pneumonia` imports this module lazily.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
from keras import ops

from pneumonia.model.network import last_conv_layer_name

SLIC_COMPACTNESS = 0.3
"""Intensity-vs-space trade-off for SLIC on [0, 1] grey levels (docs/lime_samples.md): 0.1 traces
rib texture into ragged shapes, 1.0 ignores the lung borders, 0.3 follows them in compact regions."""

OVERLAY_ALPHA = 0.45
POSITIVE_RGB = np.array([1.0, 0.15, 0.1])  # towards PNEUMONIA
NEGATIVE_RGB = np.array([0.1, 0.35, 1.0])  # towards NORMAL


@dataclass(frozen=True)
class LimeSettings:
    """LIME knobs the app exposes; the defaults are the measured speed/stability sweet spot."""

    num_samples: int = 300
    n_segments: int = 40
    seed: int = 0
    batch_size: int = 100

    def __post_init__(self):
        if self.num_samples < 2 or self.n_segments < 2 or self.batch_size < 1:
            raise ValueError(f"need num_samples >= 2, n_segments >= 2 and batch_size >= 1, got {self}")


@dataclass(frozen=True, eq=False)
class LimeExplanation:
    """Superpixels and the surrogate's weight for each, in log-odds: > 0 pushes towards PNEUMONIA."""

    segments: np.ndarray
    weights: np.ndarray
    probability: float
    score: float

    def top_segments(self, k: int, sign: int = 1) -> np.ndarray:
        """Ids of at most k superpixels with weights of the given sign, strongest first."""
        if sign not in (1, -1):
            raise ValueError(f"sign must be 1 or -1, got {sign}")
        signed = self.weights * sign
        order = np.argsort(-signed, kind="stable")
        return order[signed[order] > 0][:k]


def segment_image(image: np.ndarray, n_segments: int, compactness: float = SLIC_COMPACTNESS) -> np.ndarray:
    """SLIC superpixels on the grey levels, numbered 0..n-1 without gaps."""
    from skimage.segmentation import slic

    labels = slic(
        np.asarray(image, dtype=np.float64) / 255.0,
        n_segments=n_segments,
        compactness=compactness,
        channel_axis=None,
        start_label=0,
    )
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def hide_image(image: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """What a removed superpixel shows: its own mean grey level (lime's hide_color=None).

    It erases the texture inside the superpixel but keeps its density, so removal never looks
    like air (black) or bone. It also gave the most stable rankings of the fills measured in
    docs/lime_samples.md: blurring across superpixels made each one's effect depend on its
    neighbours.
    """
    counts = np.bincount(segments.ravel())
    means = np.bincount(segments.ravel(), np.asarray(image, dtype=np.float64).ravel()) / counts
    return means[segments].astype(np.float32)


def perturbation_masks(random_state: np.random.RandomState, num_samples: int, n_features: int) -> np.ndarray:
    """lime's fair coin per superpixel, drawn in antithetic pairs: every random mask is followed by its
    complement, and row 0 keeps every superpixel (as in lime).

    Paired sampling (as in KernelSHAP's estimators) makes each superpixel appear on and off equally often and
    cancels much of the sampling noise in the linear fit, at no extra model calls: on validation images the
    top-5 regions agree across seeds far more often than with lime's independent draws (docs/explain_benchmark.md).
    """
    pairs = random_state.randint(0, 2, (num_samples // 2) * n_features).reshape((num_samples // 2, n_features))
    paired = np.stack([pairs, 1 - pairs], axis=1).reshape(-1, n_features)  # mask, complement, mask, ...
    return np.vstack([np.ones((1, n_features), dtype=pairs.dtype), paired])[:num_samples]


def perturbed_images(image: np.ndarray, hidden: np.ndarray, segments: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(len(masks), S, S) images: superpixels switched off in a mask row show `hidden` instead."""
    keep = masks.astype(bool)[:, segments]
    return np.where(keep, image, hidden).astype(np.float32, copy=False)


def log_odds(predictor, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Calibrated log-odds of PNEUMONIA for a (n, S, S) batch, from the logit itself where the model exposes it.

    LIME fits its surrogate to these rather than to probabilities: a confident prediction sits
    where the sigmoid is flat, so removing evidence barely moves the probability and the ranking
    of superpixels turns to noise (docs/lime_samples.md measures the difference).
    """
    parts = _model_parts(predictor.model)
    if parts.logit is None:
        probabilities = np.clip(predictor.predict_arrays(images, batch_size).astype(np.float64), 1e-7, 1 - 1e-7)
        return np.log(probabilities / (1.0 - probabilities))
    images = np.asarray(images, dtype=np.float32)[..., None]
    logits = [
        np.asarray(parts.logit.predict_on_batch(images[start : start + batch_size])).reshape(-1)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(logits).astype(np.float64) / parts.temperature + parts.bias


def score_masks(
    predictor,
    image: np.ndarray,
    hidden: np.ndarray,
    segments: np.ndarray,
    masks: np.ndarray,
    batch_size: int,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Log-odds of every perturbed image, built and scored one model batch at a time."""
    scores = np.empty(len(masks), dtype=np.float64)
    for start in range(0, len(masks), batch_size):
        stop = min(start + batch_size, len(masks))
        batch = perturbed_images(image, hidden, segments, masks[start:stop])
        scores[start:stop] = log_odds(predictor, batch, batch_size)
        if progress is not None:
            progress(stop / len(masks))
    return scores


def fit_surrogate(explainer, masks: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, float]:
    """lime's weighted ridge surrogate of `targets` on all superpixels: (weight per superpixel, R^2).

    lime's image default ('auto' selection of 100000 features) keeps every superpixel, so
    selection 'none' fits the same model without the extra selection fit.
    """
    from sklearn.metrics import pairwise_distances

    distances = pairwise_distances(masks, masks[:1], metric="cosine").ravel()
    labels = np.column_stack([-targets, targets])
    _, local_exp, score, _ = explainer.base.explain_instance_with_data(
        masks, labels, distances, label=1, num_features=masks.shape[1], feature_selection="none"
    )
    weights = np.zeros(masks.shape[1])
    for feature, weight in local_exp:
        weights[feature] = weight
    return weights, float(score)


def explain_lime(
    predictor,
    image: np.ndarray,
    settings: LimeSettings = LimeSettings(),
    progress: Callable[[float], None] | None = None,
) -> LimeExplanation:
    """LIME for one decoded image; the same image, settings and seed always give the same weights."""
    from lime.lime_image import LimeImageExplainer

    image = np.asarray(image, dtype=np.float32)
    size = predictor.image_size
    if image.shape != (size, size):
        raise ValueError(f"expected a ({size}, {size}) grey image from predictor.decode, got shape {image.shape}")
    explainer = LimeImageExplainer(random_state=settings.seed)  # lime's kernel, ridge and RandomState
    segments = segment_image(image, settings.n_segments)
    hidden = hide_image(image, segments)
    masks = perturbation_masks(explainer.random_state, settings.num_samples, int(segments.max()) + 1)
    scores = score_masks(predictor, image, hidden, segments, masks, settings.batch_size, progress)
    weights, score = fit_surrogate(explainer, masks, scores)
    return LimeExplanation(segments, weights, float(1.0 / (1.0 + np.exp(-scores[0]))), score)


def lime_heatmap(explanation: LimeExplanation) -> np.ndarray:
    """Each pixel carries its superpixel's weight."""
    return explanation.weights[explanation.segments]


def _grey_rgb(image: np.ndarray) -> np.ndarray:
    grey = np.clip(np.asarray(image, dtype=np.float64), 0.0, 255.0) / 255.0
    return np.repeat(grey[..., None], 3, axis=-1)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def lime_overlay(image: np.ndarray, explanation: LimeExplanation, top_k: int = 5) -> np.ndarray:
    """The X-ray with the top_k regions for PNEUMONIA tinted red, the top_k for NORMAL blue, outlined."""
    from skimage.segmentation import find_boundaries

    rgb = _grey_rgb(image)
    segments = explanation.segments
    for sign, colour in ((1, POSITIVE_RGB), (-1, NEGATIVE_RGB)):
        chosen = np.isin(segments, explanation.top_segments(top_k, sign))
        rgb[chosen] = (1.0 - OVERLAY_ALPHA) * rgb[chosen] + OVERLAY_ALPHA * colour
        rgb[find_boundaries(np.where(chosen, segments + 1, 0), mode="inner")] = colour
    return _to_uint8(rgb)


def heatmap_overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A heat map blended on the X-ray.

    Non-negative maps (Grad-CAM) use jet scaled to their maximum; signed maps (LIME weights)
    use a red-blue map centred on zero, red towards PNEUMONIA as in `lime_overlay`.
    """
    from matplotlib import colormaps

    heat = np.asarray(heat, dtype=np.float64)
    if heat.shape != np.shape(image):
        raise ValueError(f"heat map shape {heat.shape} differs from image shape {np.shape(image)}")
    peak = float(np.abs(heat).max())
    scale = peak if peak > 0 else 1.0
    if heat.min() < 0:
        colours = colormaps["RdBu_r"](0.5 + 0.5 * heat / scale)[..., :3]
    else:
        colours = colormaps["jet"](heat / scale)[..., :3]
    return _to_uint8((1.0 - OVERLAY_ALPHA) * _grey_rgb(image) + OVERLAY_ALPHA * colours)


@dataclass(frozen=True)
class _ModelParts:
    """Keras models cut from the shipped one: the logit before calibration, and Grad-CAM's halves."""

    logit: keras.Model | None  # grey levels -> logit; None when the model has no calibration layer
    temperature: float
    bias: float
    features: keras.Model  # grey levels -> last conv block activation
    head: keras.Model  # that activation -> logit, or -> probability without a calibration layer


_MODEL_PARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _model_parts(model) -> _ModelParts:
    """Built once per model. Both explanations use the logit where they can reach it (the input
    of `calibrated_probability`): the sigmoid saturates on confident predictions and flattens
    both gradients and perturbation effects."""
    if model not in _MODEL_PARTS:
        activation = model.get_layer(last_conv_layer_name(model)).output
        try:
            calibration = model.get_layer("calibrated_probability")
        except ValueError:
            logit, logit_model, temperature, bias = model.output, None, 1.0, 0.0
        else:
            logit, temperature, bias = calibration.input, float(calibration.temperature), float(calibration.bias)
            logit_model = keras.Model(model.input, logit)
            # A compiled forward pass for LIME's large batches: a TensorFlow graph (jax.jit under JAX) rather
            # than eager calls. Not XLA under TensorFlow: Streamlit clears Keras' session after every script run,
            # which empties TensorFlow's kernel cache, and each re-instantiated XLA function then cost ~30 ms and
            # kept ~0.25 MB for good, the app's memory creep (docs/reliability.md); a plain graph costs neither
            # and is faster after such a clear (350 against 430 ms for 300 samples). torch stays eager:
            # torch.compile would add minutes of start-up.
            logit_model.compile(jit_compile=keras.backend.backend() == "jax")
        _MODEL_PARTS[model] = _ModelParts(
            logit_model, temperature, bias, keras.Model(model.input, activation), keras.Model(activation, logit)
        )
    return _MODEL_PARTS[model]


def _gradient(function: Callable, x):
    """d function(x) / dx for a scalar-valued function: the one backend-specific step."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
        return tape.gradient(y, x)
    if backend == "torch":
        import torch

        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(function(x), x)[0]
    if backend == "jax":
        import jax

        return jax.grad(function)(x)
    raise NotImplementedError(f"Grad-CAM has no gradient for the {backend!r} Keras backend")


def grad_cam(predictor, image: np.ndarray) -> np.ndarray:
    """Grad-CAM of the pneumonia logit at the last conv block, upsampled to the image, in [0, 1].

    Shows where the evidence *for* pneumonia is; an all-zero map means the model found none.
    """
    size = predictor.image_size
    parts = _model_parts(predictor.model)
    batch = ops.convert_to_tensor(np.asarray(image, dtype=np.float32).reshape(1, size, size, 1))
    activation = parts.features(batch, training=False)
    gradients = _gradient(lambda a: ops.sum(parts.head(a, training=False)), activation)
    channel_weights = ops.mean(gradients, axis=(1, 2), keepdims=True)
    cam = ops.relu(ops.sum(channel_weights * activation, axis=-1, keepdims=True))
    cam = ops.convert_to_numpy(ops.image.resize(cam, (size, size), interpolation="bilinear"))[0, ..., 0]
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    return (cam / peak if peak > 0 else np.zeros_like(cam)).astype(np.float32)


def map_agreement(lime_map: np.ndarray, cam_map: np.ndarray) -> float:
    """Spearman rank correlation of the two maps over pixels, in [-1, 1].

    1: both rank the image's regions in the same order; 0: unrelated; -1: reversed. Ranks make
    it indifferent to the maps' scales (signed LIME weights vs Grad-CAM's [0, 1]); ties, such
    as a superpixel's constant weight, get their mean rank. A constant map agrees with nothing: 0.
    """
    from scipy.stats import spearmanr

    lime_map, cam_map = np.asarray(lime_map).ravel(), np.asarray(cam_map).ravel()
    if lime_map.shape != cam_map.shape:
        raise ValueError(f"maps differ in size: {lime_map.size} vs {cam_map.size} pixels")
    if np.ptp(lime_map) == 0 or np.ptp(cam_map) == 0:
        return 0.0
    return float(spearmanr(lime_map, cam_map).statistic)
