"""The network: the small CNN and its layers (`network`), the EfficientNet-Lite0 port (`efficientnet_lite`), and
which device Keras runs on (`device`).

Committed `.keras` files record this package's old module path, `pneumonia.model`, for their custom layers, and
Keras finds them by their registered names ("pneumonia>TemperatureSigmoid"). Importing `network` here registers
them, so loading works whichever of the two Keras looks up (tests/test_layout.py checks it).
"""

from pneumonia.model.network import (  # noqa: F401  (the saved layers, under the module path the files record)
    GreyToRGB,
    HistogramEqualization,
    PerImageStandardization,
    RandomBlur,
    RandomBorderErase,
    RandomGamma,
    RandomNoise,
    TemperatureSigmoid,
)
