"""Pneumonia screening on paediatric chest X-rays: training, evaluation, inference, explanation.

Nothing heavy is imported here, so `import pneumonia` is instant; Keras loads on first use.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the CLI and app

__version__ = "1.0.0"
