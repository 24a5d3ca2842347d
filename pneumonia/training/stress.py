"""Fixed acquisition shifts of validation images: a validation-only proxy for another hospital's machines.

Training chooses its calibration and thresholds on validation plus these copies, and the input gate sets its
thresholds on them, so they live apart from both.
"""

from __future__ import annotations

import numpy as np


def stress_shifts(images: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed acquisition shifts applied to validation images: a validation-only proxy for how a
    model copes with another hospital's machines, since plain validation AUC saturates near 1."""
    from scipy.ndimage import uniform_filter, zoom

    unit = images / 255.0
    mean = unit.mean(axis=(1, 2, 3), keepdims=True)
    size = images.shape[1]
    half = zoom(images, (1, 0.5, 0.5, 1), order=1)
    noise = np.random.default_rng(seed).normal(0.0, 10.0, images.shape)
    shifted = {
        "gamma_0.6": 255.0 * unit**0.6,
        "gamma_1.6": 255.0 * unit**1.6,
        "low_contrast": 255.0 * (mean + 0.6 * (unit - mean)),
        "blur": uniform_filter(images, size=(1, 3, 3, 1)),
        "noise": images + noise,
        "half_resolution": zoom(half, (1, size / half.shape[1], size / half.shape[2], 1), order=1),
    }
    return {name: np.clip(x, 0.0, 255.0).astype(np.float32) for name, x in shifted.items()}


def stress_report(probabilities_of, images: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """AUC and specificity/sensitivity at the threshold under each shift, and their means."""
    shifted = {name: probabilities_of(x) for name, x in stress_shifts(images).items()}
    return stress_summary(shifted, labels, threshold)


def stress_summary(probabilities_by_shift: dict[str, np.ndarray], labels: np.ndarray, threshold: float) -> dict:
    """`stress_report` from probabilities already computed on the shifted copies."""
    from pneumonia.decision.metrics import roc_auc, threshold_metrics

    report: dict = {}
    for name, p in probabilities_by_shift.items():
        m = threshold_metrics(labels, p, threshold)
        report[name] = {"auc": roc_auc(labels, p), "sensitivity": m["sensitivity"], "specificity": m["specificity"]}
    for key in ("auc", "sensitivity", "specificity"):
        report[f"mean_{key}"] = float(np.mean([v[key] for v in report.values() if isinstance(v, dict)]))
    return report
