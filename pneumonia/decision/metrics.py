"""Classification metrics, operating-point rules and bootstrap intervals (scikit-learn underneath)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


def confusion_at(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """2x2 counts [[TN, FP], [FN, TP]]; a score at or above the threshold is called pneumonia."""
    from sklearn.metrics import confusion_matrix
    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    return confusion_matrix(np.asarray(labels).astype(int), predicted, labels=[0, 1])


def cell_indices(labels: np.ndarray, probabilities: np.ndarray, threshold: float, cell: str) -> list[int]:
    """Indices of the images in one confusion-matrix cell ("TP", "FP", "FN" or "TN"), highest score first."""
    called = np.asarray(probabilities) >= threshold
    truth = np.asarray(labels).astype(bool)
    mask = {"TP": truth & called, "FP": ~truth & called, "FN": truth & ~called, "TN": ~truth & ~called}[cell]
    chosen = np.flatnonzero(mask)
    return chosen[np.argsort(-np.asarray(probabilities)[chosen], kind="stable")].tolist()


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def threshold_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """Everything a reader of a confusion matrix asks for, at one threshold."""
    from sklearn.metrics import f1_score
    (tn, fp), (fn, tp) = confusion_at(labels, probabilities, threshold)
    sensitivity = _ratio(tp, tp + fn)
    precision = _ratio(tp, tp + fp)
    return {
        "threshold": float(threshold),
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "tp": int(tp),
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "precision": precision,
        "npv": _ratio(tn, tn + fn),
        "f1": float(f1_score(labels, np.asarray(probabilities) >= threshold, zero_division=0)),
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
    }


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(labels, probabilities))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width probability bins, weighted by bin size."""
    labels = np.asarray(labels, dtype=float)
    probabilities = np.asarray(probabilities, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(labels[members].mean() - probabilities[members].mean())
    return float(error)


def reliability_curve(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Per-bin mean predicted probability, observed frequency and count, for a reliability plot."""
    labels = np.asarray(labels, dtype=float)
    probabilities = np.asarray(probabilities, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    curve: dict[str, list[float]] = {"predicted": [], "observed": [], "count": []}
    for b in range(bins):
        members = which == b
        if members.any():
            curve["predicted"].append(float(probabilities[members].mean()))
            curve["observed"].append(float(labels[members].mean()))
            curve["count"].append(int(members.sum()))
    return curve


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    threshold: float
    rule: str


def threshold_for_sensitivity(labels: np.ndarray, probabilities: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity is still at least `target` (fewest false alarms)."""
    labels = np.asarray(labels).astype(int)
    positives = np.sort(np.asarray(probabilities)[labels == 1])
    if positives.size == 0:
        raise ValueError("no positive cases to set a sensitivity target on")
    allowed_misses = int(np.floor((1.0 - target) * positives.size + 1e-9))
    return float(positives[allowed_misses])


def threshold_max_f1(labels: np.ndarray, probabilities: np.ndarray) -> float:
    from sklearn.metrics import precision_recall_curve
    precision, recall, thresholds = precision_recall_curve(labels, probabilities)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def threshold_youden(labels: np.ndarray, probabilities: np.ndarray) -> float:
    from sklearn.metrics import roc_curve
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    finite = np.isfinite(thresholds)
    best = int(np.argmax((tpr - fpr)[finite]))
    return float(np.clip(thresholds[finite][best], 0.0, 1.0))


def operating_points(
    labels: np.ndarray, probabilities: np.ndarray, target_sensitivity: float, split: str = "validation"
) -> list[OperatingPoint]:
    """Threshold presets, each computed on the validation split (`split` names the exact pool) and labelled with its
    rule. Each is adopted as a short decimal with no pooled score between it and the rule's exact value, so the
    threshold printed is the one applied and every validation count holds."""
    from pneumonia.formatting import adopt_threshold

    points = [
        OperatingPoint(
            "default",
            threshold_for_sensitivity(labels, probabilities, target_sensitivity),
            f"highest threshold with sensitivity >= {target_sensitivity:.2f} on {split} (screening: few misses)",
        ),
        OperatingPoint("max_f1", threshold_max_f1(labels, probabilities), f"maximises F1 on {split}"),
        OperatingPoint("youden", threshold_youden(labels, probabilities), f"maximises Youden's J (sens + spec - 1) on {split}"),
        OperatingPoint(
            "sensitivity_99",
            threshold_for_sensitivity(labels, probabilities, 0.99),
            f"highest threshold with sensitivity >= 0.99 on {split}",
        ),
    ]
    return [dataclasses.replace(p, threshold=adopt_threshold(p.threshold, probabilities)) for p in points]


def bootstrap_intervals(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    subtypes: np.ndarray | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Percentile 95% intervals by resampling images with replacement (seeded, so re-runs agree)."""
    from sklearn.metrics import roc_auc_score
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=float)
    rng = np.random.default_rng(seed)
    n = labels.size
    names = ["auc", "accuracy", "sensitivity", "specificity", "precision", "f1"]
    subtype_names = sorted(set(subtypes) - {"normal"}) if subtypes is not None else []
    draws: dict[str, list[float]] = {name: [] for name in names + [f"recall_{s}" for s in subtype_names]}
    predicted_all = probabilities >= threshold
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        y, p, hit = labels[idx], probabilities[idx], predicted_all[idx]
        if y.min() == y.max():
            continue
        tp = np.sum(hit & (y == 1))
        tn = np.sum(~hit & (y == 0))
        fp = np.sum(hit & (y == 0))
        fn = np.sum(~hit & (y == 1))
        draws["auc"].append(roc_auc_score(y, p))
        draws["accuracy"].append((tp + tn) / n)
        draws["sensitivity"].append(tp / (tp + fn))
        draws["specificity"].append(tn / (tn + fp))
        draws["precision"].append(tp / max(tp + fp, 1))
        draws["f1"].append(2 * tp / max(2 * tp + fp + fn, 1))
        for s in subtype_names:
            members = subtypes[idx] == s
            if members.any():
                draws[f"recall_{s}"].append(hit[members].mean())
    return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for name, v in draws.items() if v}


def subtype_recall(probabilities: np.ndarray, subtypes: np.ndarray, threshold: float) -> dict[str, float]:
    """Share of each pneumonia subtype called pneumonia at the threshold."""
    probabilities = np.asarray(probabilities)
    subtypes = np.asarray(subtypes)
    return {
        f"recall_{s}": float((probabilities[subtypes == s] >= threshold).mean())
        for s in sorted(set(subtypes) - {"normal"})
    }


def full_report(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, subtypes: np.ndarray | None = None
) -> dict:
    """AUC, threshold metrics, calibration and (when subtypes are given) per-subtype recall."""
    report = {"n": int(len(labels)), "auc": roc_auc(labels, probabilities), **threshold_metrics(labels, probabilities, threshold)}
    report["ece"] = expected_calibration_error(labels, probabilities)
    if subtypes is not None:
        report.update(subtype_recall(probabilities, subtypes, threshold))
    return report
