"""Which accelerator the Keras backend will run on, in words a user can read."""

from __future__ import annotations

import keras


def describe_device() -> str:
    """'GPU: <name>' when the active backend sees one (Keras then uses it by default), else 'CPU'."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU: {details.get('device_name', gpus[0].name)} (tensorflow)"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)} (torch)"
    elif backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if gpus:
            return f"GPU: {gpus[0].device_kind} (jax)"
    return f"CPU ({backend})"
