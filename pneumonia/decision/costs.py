"""What a threshold means for a population: natural frequencies, and the threshold that minimises expected cost.

Sensitivity and specificity do not depend on prevalence, but what a parent or clinician meets does: the same
model gives very different shares of false alarms in a clinic (many sick children) and in a school (few).
"""

from __future__ import annotations

import numpy as np

from pneumonia.decision.metrics import _ratio, confusion_at

COUNT_KEYS = ("caught", "missed", "false_alarms", "all_clear")
"""TP, FN, FP, TN in the words the app uses; the order icons are drawn and remainders are handed out."""


def natural_frequencies(sensitivity: float, specificity: float, prevalence: float, population: int = 1000) -> dict:
    """Expected counts per `population` children, and PPV/NPV at this prevalence (Bayes' rule as counting)."""
    sick = population * prevalence
    well = population - sick
    caught, missed = sick * sensitivity, sick * (1.0 - sensitivity)
    false_alarms, all_clear = well * (1.0 - specificity), well * specificity
    return {
        "caught": caught,
        "missed": missed,
        "false_alarms": false_alarms,
        "all_clear": all_clear,
        "ppv": _ratio(caught, caught + false_alarms),
        "npv": _ratio(all_clear, all_clear + missed),
    }


def rounded_counts(freq: dict) -> dict[str, int]:
    """Whole children per category, summing exactly to the population (largest-remainder rounding).

    Rounding each count on its own can give 999 or 1001 icons; here the floors are kept and the units still
    missing go to the largest fractional parts (ties in COUNT_KEYS order).
    """
    values = np.array([freq[key] for key in COUNT_KEYS], dtype=float)
    floors = np.floor(values)
    missing = round(values.sum() - floors.sum())
    floors[np.argsort(floors - values, kind="stable")[:missing]] += 1
    return {key: int(count) for key, count in zip(COUNT_KEYS, floors)}


def _check_both_classes(labels: np.ndarray) -> None:
    if np.unique(labels).size < 2:
        raise ValueError("expected cost needs both classes: sensitivity and specificity are re-weighted by prevalence")


def expected_cost(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, prevalence: float, cost_ratio: float
) -> float:
    """Cost per child if this split's sensitivity and specificity held at `prevalence`, a false alarm costing 1
    and a missed pneumonia `cost_ratio`; nan when a class is absent (its rate is unknown)."""
    (tn, fp), (fn, tp) = confusion_at(labels, probabilities, threshold)
    miss_rate = _ratio(fn, fn + tp)
    false_alarm_rate = _ratio(fp, fp + tn)
    return float(prevalence * miss_rate * cost_ratio + (1.0 - prevalence) * false_alarm_rate)


def cost_minimising_threshold(
    labels: np.ndarray, probabilities: np.ndarray, prevalence: float, cost_ratio: float
) -> tuple[float, float]:
    """(threshold, expected cost) minimising `expected_cost` over every threshold that changes a call.

    Candidates are the distinct scores plus one just above the highest ("call nothing"); ties go to the
    highest threshold, the fewest alarms. Pass the validation split, never the test split.
    """
    from sklearn.metrics import roc_curve

    from pneumonia.formatting import adopt_threshold

    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=float)
    _check_both_classes(labels)
    false_alarm_rate, sensitivity, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    thresholds[0] = np.nextafter(probabilities.max(), np.inf)  # sklearn's "call nothing" threshold is inf
    costs = prevalence * (1.0 - sensitivity) * cost_ratio + (1.0 - prevalence) * false_alarm_rate
    # thresholds fall, so the first near-minimum is the highest; the tolerance absorbs rounding in equal costs
    best = int(np.flatnonzero(costs <= costs.min() + 1e-12)[0])
    return adopt_threshold(float(thresholds[best]), probabilities), float(costs[best])


def cost_rule(prevalence: float, cost_ratio: float) -> str:
    """The preset's rule, in the words the app shows beside the other operating points."""
    alarms = "false alarm" if cost_ratio == 1 else "false alarms"
    return (
        f"minimises expected cost on validation at prevalence {100 * prevalence:.3g}% "
        f"with a missed pneumonia costing {cost_ratio:g} {alarms}"
    )
