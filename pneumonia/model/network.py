"""The CNN, its in-model preprocessing, and radiograph-appropriate augmentation, in Keras 3 only.

The saved model takes grey levels in [0, 255] with shape (size, size, 1) and returns the
calibrated probability of pneumonia: rescaling lives inside it, so callers never normalise.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from pneumonia.config import TrainConfig

_PACKAGE = "pneumonia"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PerImageStandardization(layers.Layer):
    """Zero mean, unit variance per image: removes exposure and contrast differences between machines."""

    def call(self, inputs):
        mean = ops.mean(inputs, axis=(1, 2, 3), keepdims=True)
        std = ops.std(inputs, axis=(1, 2, 3), keepdims=True)
        return (inputs - mean) / ops.maximum(std, 1.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class HistogramEqualization(layers.Layer):
    """Each pixel becomes its mid-rank within its image, standardised: invariant to any monotonic
    change of grey levels (exposure, contrast, gamma, detector response curve)."""

    def call(self, inputs):
        shape = ops.shape(inputs)
        batch, pixels = shape[0], shape[1] * shape[2] * shape[3]
        flat = ops.reshape(inputs, (batch, pixels))
        # One 1-D sorted sequence for the whole batch: grey levels lie in [0, 255] (noise aside),
        # so offsetting image i by i * 4096 keeps images apart for searchsorted.
        offsets = ops.cast(ops.arange(batch), flat.dtype)[:, None] * 4096.0
        keys = ops.reshape(flat + offsets, (-1,))
        ordered = ops.sort(keys)
        below = ops.searchsorted(ordered, keys, side="left")
        through = ops.searchsorted(ordered, keys, side="right")
        start = ops.cast(ops.repeat(ops.arange(batch) * pixels, pixels), "float32")
        mid_rank = (ops.cast(below, "float32") + ops.cast(through, "float32") - 1.0) / 2.0 - start
        uniform = mid_rank / ops.cast(pixels - 1, "float32")
        return ops.reshape((uniform - 0.5) * 3.4641016, shape)  # 3.464 = 1 / std of U(0, 1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TemperatureSigmoid(layers.Layer):
    """sigmoid(logit / T + b): Platt scaling fitted on validation, so probabilities are calibrated."""

    def __init__(self, temperature: float = 1.0, bias: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.bias = float(bias)

    def call(self, logits):
        return ops.sigmoid(logits / self.temperature + self.bias)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "bias": self.bias}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RandomGamma(layers.Layer):
    """Gamma curve with log-uniform exponent, as differing detector response curves produce."""

    def __init__(self, log_range: float, value_max: float = 255.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.log_range = float(log_range)
        self.value_max = float(value_max)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.log_range == 0:
            return inputs
        shape = (ops.shape(inputs)[0], 1, 1, 1)
        log_gamma = keras.random.uniform(shape, -self.log_range, self.log_range, seed=self.seed_generator)
        scaled = ops.clip(inputs / self.value_max, 0.0, 1.0)
        return ops.power(scaled, ops.exp(log_gamma)) * self.value_max

    def get_config(self):
        return {**super().get_config(), "log_range": self.log_range, "value_max": self.value_max, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RandomBlur(layers.Layer):
    """A 3x3 box blur on a random share of the batch, for softer, lower-resolution scanners."""

    def __init__(self, probability: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.probability = float(probability)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.pool = layers.AveragePooling2D(pool_size=3, strides=1, padding="same")

    def call(self, inputs, training=None):
        if not training or self.probability == 0:
            return inputs
        shape = (ops.shape(inputs)[0], 1, 1, 1)
        chosen = ops.cast(keras.random.uniform(shape, seed=self.seed_generator) < self.probability, inputs.dtype)
        return chosen * self.pool(inputs) + (1.0 - chosen) * inputs

    def get_config(self):
        return {**super().get_config(), "probability": self.probability, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RandomNoise(layers.Layer):
    """Additive Gaussian noise in grey levels (keras' GaussianNoise only accepts stddev <= 1)."""

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stddev = float(stddev)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.stddev == 0:
            return inputs
        return inputs + keras.random.normal(ops.shape(inputs), stddev=self.stddev, seed=self.seed_generator)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RandomBorderErase(layers.Layer):
    """Covers a random strip along each edge with the image's mean grey level, each edge with some
    probability: side markers, text and collimation at the borders differ between sites and must not
    carry the label."""

    def __init__(self, probability: float, max_fraction: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.probability = float(probability)
        self.max_fraction = float(max_fraction)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.probability == 0:
            return inputs
        batch, height, width = ops.shape(inputs)[0], ops.shape(inputs)[1], ops.shape(inputs)[2]
        chosen = keras.random.uniform((batch, 4), seed=self.seed_generator) < self.probability
        widths = keras.random.uniform((batch, 4), 0.0, self.max_fraction, seed=self.seed_generator)
        widths = ops.where(chosen, widths, ops.zeros_like(widths))[:, :, None, None]
        rows = (ops.cast(ops.arange(height), "float32") + 0.5)[None, :, None] / ops.cast(height, "float32")
        cols = (ops.cast(ops.arange(width), "float32") + 0.5)[None, None, :] / ops.cast(width, "float32")
        erased = (
            (rows < widths[:, 0]) | (rows > 1.0 - widths[:, 1]) | (cols < widths[:, 2]) | (cols > 1.0 - widths[:, 3])
        )
        mean = ops.mean(inputs, axis=(1, 2, 3), keepdims=True)
        return ops.where(erased[..., None], mean, inputs)

    def get_config(self):
        return {
            **super().get_config(),
            "probability": self.probability,
            "max_fraction": self.max_fraction,
            "seed": self.seed,
        }


def build_augmenter(config: TrainConfig) -> keras.Sequential:
    """Geometry and intensity changes a radiograph plausibly undergoes; no flips (the heart is on the left)."""
    aug, seed = config.augment, config.seed
    border = aug.get("border_erase_probability", 0.0)
    return keras.Sequential(
        ([RandomBorderErase(border, aug.get("border_erase_fraction", 0.12), seed=seed + 8)] if border else [])
        + [
            layers.RandomRotation(aug["rotation"], fill_mode="nearest", seed=seed),
            layers.RandomZoom(aug["zoom"], fill_mode="nearest", seed=seed + 1),
            layers.RandomTranslation(aug["translation"], aug["translation"], fill_mode="nearest", seed=seed + 2),
            RandomGamma(aug["gamma"], seed=seed + 3),
            layers.RandomContrast(aug["contrast"], value_range=(0, 255), seed=seed + 4),
            layers.RandomBrightness(aug["brightness"], value_range=(0, 255), seed=seed + 5),
            RandomBlur(aug["blur_probability"], seed=seed + 6),
            RandomNoise(aug["noise_std"], seed=seed + 7),
        ],
        name="augment",
    )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GreyToRGB(layers.Layer):
    """One grey channel repeated to three, for a backbone pretrained on colour photographs."""

    def call(self, inputs):
        return ops.repeat(inputs, 3, axis=-1)


BACKBONES = ("none", "efficientnet_lite0")
GRADCAM_LAYERS = {"efficientnet_lite0": "block10_add"}
"""Grad-CAM's layer in a backbone: the last one at 1/16 of the input (8 x 8 at 128 px, as the small CNN's last block);
the head's 1/32 map is 4 x 4 at 128 px, too coarse to point at a lobe."""


def build_logits_model(config: TrainConfig) -> keras.Model:
    """Grey levels in, one pneumonia logit out: conv-BN-ReLU-pool blocks, global pooling, dropout;
    or, with `config.backbone`, the ImageNet-pretrained backbone under the same pooling, dropout and logit."""
    if config.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {config.backbone!r}; known: {', '.join(BACKBONES)}")
    if config.backbone != "none":
        return _pretrained_logits_model(config)
    size = config.image_size
    inputs = keras.Input((size, size, 1), name="grey_levels")
    normalize = {"standardize": PerImageStandardization, "equalize": HistogramEqualization}[config.normalization]
    x = normalize(name=config.normalization)(inputs)
    for i, filters in enumerate(config.filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i + 1}_bn")(x)
        x = layers.Activation("relu", name=f"block{i + 1}_relu")(x)
        if i < len(config.filters) - 1:
            x = layers.MaxPooling2D(name=f"block{i + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    logits = layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, logits, name="pneumonia_cnn_logits")


def _pretrained_logits_model(config: TrainConfig) -> keras.Model:
    """EfficientNet-Lite0 on the grey film repeated to RGB, its ImageNet weights loaded (docs/backbone.md)."""
    from pneumonia.config import BACKBONE_WEIGHTS, CONVERT_COMMAND
    from pneumonia.errors import ModelError
    from pneumonia.model.efficientnet_lite import copy_backbone_weights, efficientnet_lite0, lite0_features

    if not BACKBONE_WEIGHTS.is_file():
        raise ModelError(f"the ImageNet weights {BACKBONE_WEIGHTS} are missing; convert them once with `{CONVERT_COMMAND}`.")
    size = config.image_size
    inputs = keras.Input((size, size, 1), name="grey_levels")
    features = lite0_features(GreyToRGB(name="grey_to_rgb")(inputs), (size, size))
    x = layers.GlobalAveragePooling2D(name="pool")(features)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    model = keras.Model(inputs, layers.Dense(1, name="logit")(x), name="pneumonia_cnn_logits")
    copy_backbone_weights(efficientnet_lite0(weights=str(BACKBONE_WEIGHTS)), model)
    return model


def backbone_layers(model: keras.Model) -> list:
    """The pretrained layers of a logits model (everything but the input adapter and the new head)."""
    own = {"grey_levels", "grey_to_rgb", "pool", "dropout", "logit"}
    return [layer for layer in model.layers if layer.name not in own]


def last_conv_layer_name(model: keras.Model) -> str:
    """The activation Grad-CAM differentiates against: the last ReLU of the conv stack, or a backbone's own
    choice (GRADCAM_LAYERS)."""
    names = {layer.name for layer in model.layers}
    for layer_name in GRADCAM_LAYERS.values():
        if layer_name in names:
            return layer_name
    names = [layer.name for layer in model.layers if layer.name.endswith("_relu")]
    if not names:
        raise ValueError(f"model {model.name} has no conv block activations")
    return names[-1]


CALIBRATION_LAYER = "calibrated_probability"


def with_calibration(logits_model: keras.Model, temperature: float, bias: float = 0.0) -> keras.Model:
    """The shipped model: the logits model followed by the calibrated sigmoid."""
    probability = TemperatureSigmoid(temperature, bias, name=CALIBRATION_LAYER)(logits_model.output)
    return keras.Model(logits_model.input, probability, name="pneumonia_cnn")


def logits_of(model: keras.Model, name: str = "pneumonia_cnn_logits") -> keras.Model:
    """The uncalibrated logits model inside a shipped model (for recalibration, or to teach a student)."""
    return keras.Model(model.input, model.get_layer(CALIBRATION_LAYER).input, name=name)


def distillation_model(student: keras.Model, teacher: keras.Model, augmenter: keras.Model) -> keras.Model:
    """For training only: one augmented batch goes through the student and the frozen teacher; the output is
    (student logit, teacher logit) side by side, for `DistillationLoss` and `StudentAUC`."""
    teacher.trainable = False
    inputs = keras.Input(student.input_shape[1:])
    augmented = augmenter(inputs)
    both = layers.Concatenate(name="student_teacher")([student(augmented), teacher(augmented, training=False)])
    return keras.Model(inputs, both, name="distillation")


class DistillationLoss(keras.losses.Loss):
    """(1 - w) x cross-entropy with the labels + w x T^2 x cross-entropy between the teacher's and the student's
    probabilities, both logits divided by T (Hinton et al. 2015, for one sigmoid output)."""

    def __init__(self, weight: float, temperature: float, label_smoothing: float = 0.0, **kwargs):
        super().__init__(name="distillation", **kwargs)
        self.weight, self.temperature, self.label_smoothing = weight, temperature, label_smoothing

    def call(self, y_true, y_pred):
        student, teacher = y_pred[:, :1], y_pred[:, 1:]
        labels = keras.losses.binary_crossentropy(
            ops.reshape(ops.cast(y_true, student.dtype), (-1, 1)), student, from_logits=True, label_smoothing=self.label_smoothing)
        soft = ops.sigmoid(teacher / self.temperature)
        follows = keras.losses.binary_crossentropy(soft, student / self.temperature, from_logits=True)
        return (1.0 - self.weight) * labels + self.weight * self.temperature**2 * follows


class StudentAUC(keras.metrics.AUC):
    """AUC of the student's logit alone, from the (student, teacher) output of `distillation_model`."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, y_pred[:, :1], sample_weight)
