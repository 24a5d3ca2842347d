"""The one formatter: thresholds print exactly as applied, adopted thresholds keep every count, no "-0.000"."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pneumonia.formatting import adopt_threshold, format_probability, format_threshold, margin_text

unit = st.floats(0.0, 1.0, allow_nan=False)


def test_probabilities_never_read_as_certain():
    assert [format_probability(p) for p in (0.0, 0.0004, 0.5, 0.9994, 1.0)] == ["< 0.001", "< 0.001", "0.500", "> 0.999", "> 0.999"]


def test_thresholds_print_exactly_with_at_least_three_decimals():
    assert format_threshold(0.5) == "0.500"
    assert format_threshold(0.911) == "0.911"
    assert format_threshold(0.86367) == "0.86367"
    assert format_threshold(0.99963) == "0.99963"  # never "1.000"
    assert format_threshold(0.9108285930585943) == "0.9108285930585943"  # not adopted: written in full


def test_margin_is_never_minus_zero():
    assert margin_text(0.4999, 0.5) == "less than 0.001 (below threshold 0.500)"
    assert margin_text(0.5, 0.5) == "+0.000 (above threshold 0.500)"
    assert margin_text(0.75, 0.5) == "+0.250 (above threshold 0.500)"
    assert margin_text(0.2, 0.5) == "-0.300 (below threshold 0.500)"


def test_an_adopted_threshold_is_short_when_the_scores_leave_room():
    scores = np.array([0.10, 0.86366956, 0.87, 0.95])
    adopted = adopt_threshold(float(np.nextafter(0.86366956, 1.0)), scores)
    assert format_threshold(adopted) == "0.864"
    assert adopt_threshold(0.9108285930585943) == 0.911  # no scores known: up to three decimals
    assert adopt_threshold(0.87, scores) == 0.864  # a threshold at a score: just above the score below it


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(unit, min_size=1, max_size=60), unit)
def test_an_adopted_threshold_keeps_every_count_and_prints_back_to_itself(scores, threshold):
    scores = np.array(scores)
    adopted = adopt_threshold(threshold, scores)
    assert np.array_equal(scores >= adopted, scores >= threshold)  # every film called as before
    assert float(format_threshold(adopted)) == adopted  # the printed number is the applied one


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(unit, min_size=1, max_size=40), unit)
def test_labels_at_the_printed_threshold_are_the_labels_at_the_applied_one(scores, threshold):
    """Issue 26: whatever the threshold (adopted, a site's 0.99963, one typed by hand), a reader who labels the
    films by the printed number gets exactly the labels the model applied."""
    scores = np.array(scores)
    printed = float(format_threshold(threshold))
    assert np.array_equal(scores >= printed, scores >= threshold)


def _reads_as(text: str) -> tuple[str, float]:
    return (text[0], float(text[2:])) if text[0] in "<>" else ("=", float(text))


@settings(max_examples=500, deadline=None, derandomize=True)
@given(unit, unit)
def test_a_printed_score_never_reads_as_on_the_other_side_of_the_printed_threshold(probability, threshold):
    text, shown_threshold = format_probability(probability, threshold), float(format_threshold(threshold))
    relation, shown = _reads_as(text)
    if probability >= threshold:  # labelled PNEUMONIA: the score must read as at or above the threshold
        assert (relation == ">" and shown >= shown_threshold) or (relation == "=" and shown >= shown_threshold)
    else:
        assert (relation == "<" and shown <= shown_threshold) or (relation == "=" and shown < shown_threshold)
    assert text not in ("1.000", "0.000")


def test_a_score_next_to_the_threshold_gets_the_digits_it_needs():
    assert format_probability(0.9059, 0.906) == "0.9059"  # "0.906" would read as at the threshold: PNEUMONIA
    assert format_probability(0.9061, 0.906) == "0.906"  # already on its side at three decimals
    assert format_probability(0.99958, 0.99963) == "0.9996"  # "> 0.999" would read as flagged
    assert format_probability(0.99958) == "> 0.999"  # with no threshold, three decimals as before
def test_percentages_never_round_to_certainty():
    from pneumonia.formatting import format_percent, format_proportion

    assert format_percent(0.9995) == "> 99.9%"  # the NPV at 5% prevalence that read "100.0%" (issue 30)
    assert format_percent(1.0) == "100.0%" and format_percent(0.0) == "0.0%"  # exactly so: said so
    assert format_percent(0.0004) == "< 0.1%" and format_percent(0.5) == "50.0%"
    assert format_percent(0.996, 0) == "> 99%" and format_percent(0.004, 0) == "< 1%"
    assert format_percent(float("nan")) == "n/a"
    assert format_proportion(0.9996) == "> 0.999" and format_proportion(1.0) == "1.000"
    assert format_proportion(0.0004) == "< 0.001" and format_proportion(0.0) == "0.000"


@given(unit, st.integers(0, 3))
@settings(max_examples=2000)
def test_a_percentage_reads_100_or_0_only_when_exact(share, decimals):
    from pneumonia.formatting import format_percent

    text = format_percent(share, decimals)
    hundred, zero = f"{100:.{decimals}f}%", f"{0:.{decimals}f}%"
    assert (text == hundred) == (share == 1.0)
    assert (text == zero) == (share == 0.0)
    if text.startswith("> "):  # the bound is true
        assert share * 100 > float(text[2:-1])
    elif text.startswith("< "):
        assert share * 100 < float(text[2:-1])
    else:
        assert abs(float(text[:-1]) - 100 * share) <= 0.5 * 10.0**-decimals + 1e-9


@given(unit)
@settings(max_examples=2000)
def test_a_rate_reads_one_or_zero_only_when_exact(value):
    from pneumonia.formatting import format_proportion

    text = format_proportion(value)
    assert (text == "1.000") == (value == 1.0) and (text == "0.000") == (value == 0.0)
    if text.startswith("> "):
        assert value > float(text[2:])
    elif text.startswith("< "):
        assert value < float(text[2:])
