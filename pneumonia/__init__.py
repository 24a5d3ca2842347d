"""Pneumonia screening on paediatric chest X-rays: training, evaluation, inference, explanation.

Nothing heavy is imported here, so `import pneumonia` is instant; Keras loads on first use. Importing the
package changes no process-wide setting: the entry points (the CLI's `main`, `app.py`) choose those.
"""

__version__ = "1.0.0"
