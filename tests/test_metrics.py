"""Operating-point rules, bootstrap intervals, calibration error and temperature fitting."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, recall_score

from pneumonia.decision.metrics import (
    bootstrap_intervals,
    confusion_at,
    expected_calibration_error,
    full_report,
    threshold_for_sensitivity,
    threshold_metrics,
)
from pneumonia.training.train import fit_calibration

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
SCORES = np.array([0.1, 0.2, 0.6, 0.3, 0.4, 0.7, 0.8, 0.9, 0.95, 0.5])


def test_confusion_and_metrics_at_threshold():
    assert confusion_at(LABELS, SCORES, 0.5).tolist() == [[3, 1], [1, 5]]
    m = threshold_metrics(LABELS, SCORES, 0.5)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (3, 1, 1, 5)
    assert m["sensitivity"] == recall_score(LABELS, SCORES >= 0.5)
    assert m["specificity"] == 0.75
    assert m["precision"] == 5 / 6 and m["npv"] == 0.75
    assert m["accuracy"] == accuracy_score(LABELS, SCORES >= 0.5)


def test_threshold_for_sensitivity_is_the_highest_that_meets_the_target():
    for target in (0.5, 0.8, 0.95, 1.0):
        t = threshold_for_sensitivity(LABELS, SCORES, target)
        assert recall_score(LABELS, SCORES >= t) >= target
        higher = SCORES[SCORES > t].min()
        assert recall_score(LABELS, SCORES >= higher) < target


def test_bootstrap_intervals_bracket_the_point_estimate_and_are_seeded():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(labels * 0.4 + rng.uniform(0, 0.6, 300), 0, 1)
    subtypes = np.where(labels == 1, np.where(rng.uniform(size=300) < 0.5, "bacteria", "virus"), "normal")
    report = full_report(labels, scores, 0.5, subtypes)
    intervals = bootstrap_intervals(labels, scores, 0.5, subtypes, resamples=300)
    for name in ("auc", "accuracy", "sensitivity", "specificity", "f1", "recall_bacteria", "recall_virus"):
        low, high = intervals[name]
        assert low <= report[name] <= high, name
        assert high - low < 0.25, name
    assert intervals == bootstrap_intervals(labels, scores, 0.5, subtypes, resamples=300)


def test_expected_calibration_error():
    labels = np.array([0] * 50 + [1] * 50)
    assert expected_calibration_error(labels, np.full(100, 0.5)) < 1e-9
    assert abs(expected_calibration_error(labels, np.full(100, 0.9)) - 0.4) < 1e-9


def test_fit_calibration_recovers_a_known_temperature_and_bias():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, 20000)
    labels = (rng.uniform(size=true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(float)
    # an over-confident model (3x too sharp) whose logits were also shifted by class weighting
    temperature, bias = fit_calibration(true_logits * 3.0 + 1.5, labels)
    assert abs(temperature - 3.0) < 0.15
    assert abs(bias - (-0.5)) < 0.05
