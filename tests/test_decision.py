"""Natural frequencies by hand, whole-child rounding, and the cost-minimising threshold against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pneumonia.config import MODELS_DIR
from pneumonia.decision.costs import (
    COUNT_KEYS,
    cost_minimising_threshold,
    cost_rule,
    expected_cost,
    natural_frequencies,
    rounded_counts,
)
from pneumonia.formatting import format_threshold
from pneumonia.io.bundle import read_validation_predictions


def test_natural_frequencies_by_hand():
    # 200 sick children: 90% caught; 800 well: 80% all clear
    f = natural_frequencies(0.9, 0.8, 0.2)
    assert f["caught"] == pytest.approx(180)
    assert f["missed"] == pytest.approx(20)
    assert f["false_alarms"] == pytest.approx(160)
    assert f["all_clear"] == pytest.approx(640)
    assert f["ppv"] == pytest.approx(180 / 340)
    assert f["npv"] == pytest.approx(640 / 660)
    assert rounded_counts(f) == {"caught": 180, "missed": 20, "false_alarms": 160, "all_clear": 640}


def test_natural_frequencies_scale_with_population_and_leave_0_over_0_as_nan():
    f = natural_frequencies(0.9, 0.8, 0.2, population=50)
    assert [f[k] for k in COUNT_KEYS] == pytest.approx([9, 1, 8, 32])
    assert math.isnan(natural_frequencies(0.9, 1.0, 0.0)["ppv"])  # nobody sick and no false alarm: no one flagged
    assert math.isnan(natural_frequencies(1.0, 0.8, 1.0)["npv"])  # everybody sick and all caught: no one cleared


def test_rounding_by_largest_remainder():
    # floors 0, 0, 0, 1 leave 2 children; the two largest remainders (0.6, first in order on ties) get them
    assert rounded_counts({"caught": 0.6, "missed": 0.6, "false_alarms": 0.6, "all_clear": 1.2}) == {
        "caught": 1,
        "missed": 1,
        "false_alarms": 0,
        "all_clear": 1,
    }
    # prevalence 1/3: 300 caught, 33.3 missed, 133.3 false alarms, 533.3 all clear; naive rounding gives 999
    f = natural_frequencies(0.9, 0.8, 1 / 3)
    assert sum(round(f[k]) for k in COUNT_KEYS) == 999
    counts = rounded_counts(f)
    assert sum(counts.values()) == 1000
    assert counts["caught"] == 300 and counts["all_clear"] == 534


@pytest.mark.parametrize("seed", range(5))
def test_rounding_always_sums_to_the_population_and_moves_no_count_by_a_whole_child(seed):
    rng = np.random.default_rng(seed)
    for sensitivity, specificity, prevalence in rng.uniform(size=(200, 3)):
        population = int(rng.choice([100, 1000, 999]))
        f = natural_frequencies(sensitivity, specificity, prevalence, population)
        counts = rounded_counts(f)
        assert sum(counts.values()) == population
        assert all(abs(counts[k] - f[k]) < 1 for k in COUNT_KEYS)


def test_expected_cost_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.7, 0.4, 0.9])
    # at 0.5: sensitivity 1/2, specificity 2/4
    assert expected_cost(labels, scores, 0.5, 0.1, 5) == pytest.approx(0.1 * 0.5 * 5 + 0.9 * 0.5)
    # above every score nothing is called: every sick child is missed, no well child alarmed
    assert expected_cost(labels, scores, 0.95, 0.1, 5) == pytest.approx(0.1 * 5)


def _costs(labels, scores, thresholds, prevalence, ratio):
    """Expected cost at each threshold straight from the definition: every call at every threshold, O(n^2)."""
    called = scores[None, :] >= np.asarray(thresholds)[:, None]
    miss_rate = (~called & (labels == 1)).sum(axis=1) / (labels == 1).sum()
    false_alarm_rate = (called & (labels == 0)).sum(axis=1) / (labels == 0).sum()
    return prevalence * miss_rate * ratio + (1 - prevalence) * false_alarm_rate


def _brute_force(labels, scores, prevalence, ratio):
    """Every candidate threshold; the highest among the (near-)equal minima."""
    candidates = np.append(np.unique(scores), np.nextafter(scores.max(), np.inf))
    costs = _costs(labels, scores, candidates, prevalence, ratio)
    best = np.flatnonzero(costs <= costs.min() + 1e-12)[-1]
    return candidates[best], costs[best]


@pytest.mark.parametrize("prevalence", [0.0, 0.05, 0.3, 0.8, 1.0])
@pytest.mark.parametrize("ratio", [0.5, 1, 5, 30])
def test_cost_minimising_threshold_matches_brute_force(prevalence, ratio):
    for seed in range(5):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 2, 150)
        scores = np.round(np.clip(0.3 * labels + rng.uniform(0, 0.7, 150), 0, 1), 2)  # rounded: many tied scores
        threshold, cost = cost_minimising_threshold(labels, scores, prevalence, ratio)
        expected_threshold, expected = _brute_force(labels, scores, prevalence, ratio)
        # adopted as a short decimal that calls every score as the brute-force threshold does
        assert np.array_equal(scores >= threshold, scores >= expected_threshold)
        assert cost == pytest.approx(expected, abs=1e-12)
        assert cost == pytest.approx(expected_cost(labels, scores, threshold, prevalence, ratio), abs=1e-12)
        grid = _costs(labels, scores, np.linspace(0, 1.001, 2003), prevalence, ratio)
        assert grid.min() >= cost - 1e-12  # no threshold between candidates does better


def test_ties_go_to_the_highest_threshold():
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    # costs at prevalence 1/2, ratio 1: 0.1 -> 0.5, 0.2 -> 0.25, 0.3 -> 0.5, 0.4 -> 0.25, above 0.4 -> 0.5
    threshold, cost = cost_minimising_threshold(labels, scores, 0.5, 1)
    assert 0.3 < threshold <= 0.4 and cost == 0.25  # calls only 0.4, as the highest tied threshold does


def test_extreme_prevalences_call_nothing_or_catch_everyone():
    labels = np.array([0, 0, 1, 1, 0])
    scores = np.array([0.2, 0.6, 0.5, 0.9, 0.95])
    threshold, cost = cost_minimising_threshold(labels, scores, 0.0, 5)
    assert threshold > 0.95 and cost == 0  # no one is sick: every alarm is false
    threshold, cost = cost_minimising_threshold(labels, scores, 1.0, 5)
    assert 0.2 < threshold <= 0.5 and cost == 0.0  # everyone is sick: every sick score is called


def test_one_class_has_no_expected_cost():
    labels = np.zeros(5, dtype=int)
    scores = np.linspace(0.1, 0.9, 5)
    assert math.isnan(expected_cost(labels, scores, 0.5, 0.2, 5))
    with pytest.raises(ValueError, match="both classes"):
        cost_minimising_threshold(labels, scores, 0.2, 5)
    with pytest.raises(ValueError, match="both classes"):
        cost_minimising_threshold(np.ones(5, dtype=int), scores, 0.2, 5)


def test_cost_rule_text():
    assert cost_rule(0.2, 5) == (
        "minimises expected cost on validation at prevalence 20% with a missed pneumonia costing 5 false alarms"
    )
    assert cost_rule(0.005, 1).endswith("prevalence 0.5% with a missed pneumonia costing 1 false alarm")


@pytest.mark.integration
def test_cost_minimising_threshold_on_the_shipped_validation_split():
    validation = read_validation_predictions(MODELS_DIR)
    for prevalence, ratio in ((0.05, 10), (0.3, 3), (0.6, 1)):
        threshold, cost = cost_minimising_threshold(validation.labels, validation.probabilities, prevalence, ratio)
        expected_threshold, expected = _brute_force(validation.labels, validation.probabilities, prevalence, ratio)
        scores = validation.probabilities
        assert np.array_equal(scores >= threshold, scores >= expected_threshold)  # the same calls, a short decimal
        assert cost == pytest.approx(expected, abs=1e-12)
        assert float(format_threshold(threshold)) == threshold


def test_round4_specificity_at_sensitivity_reads_the_highest_threshold_that_keeps_the_target():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from round4 import specificity_at_sensitivity

    labels = np.array([1] * 20 + [0] * 4)
    scores = np.array([0.9] * 19 + [0.3] + [0.1, 0.5, 0.95, 0.2])
    # 19 of 20 positives at 0.9 give sensitivity 0.95: the threshold is 0.9, and one normal (0.95) is above it.
    assert specificity_at_sensitivity(labels, scores) == 0.75
    assert specificity_at_sensitivity(labels, scores, target=1.0) == 0.5  # down to 0.3: 0.5 and 0.95 flagged
