"""The one way probabilities and thresholds are written, for the app, the CSV, the CLI and the PDF.

A threshold that is printed must be the threshold that is applied: `adopt_threshold` turns a threshold found
by a rule into a short decimal, rounded up ("flags at most"), that keeps every known score on the same side;
`format_threshold` then prints that number exactly.
"""

from __future__ import annotations

import math

import numpy as np

MIN_DECIMALS = 3
MAX_DECIMALS = 9
SCORE_MARGIN = 1e-5
"""Scores move by about 1e-6 between CPUs and batch sizes; an adopted threshold keeps this far from any known
score when the gap between scores allows it, so a film scored again elsewhere stays on its side."""


def format_probability(probability: float, threshold=None) -> str:
    """Three decimals, never "1.000" or "0.000": a calibrated score is not certainty, so the extremes read
    "> 0.999" and "< 0.001". With the `threshold` applied (a number or a `Threshold`), as many more decimals as
    it takes for the printed score to sit on the same side of the printed threshold as the score itself: a film
    labelled NORMAL never shows a score that reads as at or above its threshold."""
    value = getattr(threshold, "value", threshold)
    for decimals in range(MIN_DECIMALS, MAX_DECIMALS + 1):
        text = _probability_text(probability, decimals)
        if value is None or _reads_on_its_side(text, probability >= value, value):
            return text
    return repr(float(probability))


def _probability_text(probability: float, decimals: int) -> str:
    step = 10.0**-decimals
    if probability > 1.0 - step:
        return f"> {1.0 - step:.{decimals}f}"
    if probability < step:
        return f"< {step:.{decimals}f}"
    return f"{probability:.{decimals}f}"


def _reads_on_its_side(text: str, at_or_above: bool, threshold: float) -> bool:
    """Whether every score the text could stand for is labelled as the score it stands for."""
    if text.startswith("> "):
        return at_or_above and float(text[2:]) >= threshold
    if text.startswith("< "):
        return not at_or_above and float(text[2:]) <= threshold
    return (float(text) >= threshold) == at_or_above


def format_percent(share: float, decimals: int = 1) -> str:
    """A share (0-1) as a percentage that never rounds to certainty: "100.0%" and "0.0%" only when the share is
    exactly 1 or 0; a share that would round to either reads "> 99.9%" or "< 0.1%" (with `decimals` places)."""
    if share != share:  # NaN
        return "n/a"
    step = 10.0 ** -decimals
    text = f"{share:.{decimals}%}"
    if share != 1 and float(text[:-1]) >= 100:
        return f"> {100 - step:.{decimals}f}%"
    if share != 0 and float(text[:-1]) <= 0:
        return f"< {step:.{decimals}f}%" if share > 0 else f"< -{100 - step:.{decimals}f}%"
    return text


def format_proportion(value: float, decimals: int = 3) -> str:
    """A rate (sensitivity, specificity, PPV...) with `decimals` places, written "1.000" or "0.000" only when it is
    exactly so; otherwise the extremes read "> 0.999" and "< 0.001", as probabilities do."""
    if value != value:
        return "n/a"
    text = f"{value:.{decimals}f}"
    step = 10.0 ** -decimals
    if value != 1 and float(text) >= 1:
        return f"> {1 - step:.{decimals}f}"
    if value != 0 and 0 <= value and float(text) <= 0:
        return f"< {step:.{decimals}f}"
    return text


def format_threshold(threshold: float) -> str:
    """At least three decimals and as many as it takes to write the threshold exactly: an adopted threshold
    needs few, and any other is written in full rather than rounded to a number that was not applied."""
    for decimals in range(MIN_DECIMALS, MAX_DECIMALS + 1):
        text = f"{threshold:.{decimals}f}"
        if float(text) == threshold:
            return text
    return repr(float(threshold))


def adopt_threshold(threshold: float, scores: np.ndarray | None = None) -> float:
    """A short decimal (at least three places) that calls every known score as `threshold` does, so every count
    made at `threshold` holds at the printed value. Rounded up where the scores allow ("flags at most"); when
    `threshold` is itself a score, the shortest decimal just above the next lower score. Where the gap allows,
    it also keeps SCORE_MARGIN away from the nearest scores on both sides."""
    if scores is None or len(scores) == 0:
        return _ceil(threshold, MIN_DECIMALS)
    scores = np.asarray(scores, dtype=np.float64)
    below = scores[scores < threshold]
    above = scores[scores >= threshold]
    highest_below = float(below.max()) if below.size else -math.inf
    lowest_above = float(above.min()) if above.size else math.inf
    for margin in (SCORE_MARGIN, 0.0):
        for floor in (max(threshold, highest_below + margin), highest_below + margin):
            for decimals in range(MIN_DECIMALS, MAX_DECIMALS + 1):
                candidate = _ceil(max(floor, 0.0), decimals)
                if highest_below < candidate and candidate + margin <= lowest_above and candidate <= 1.0:
                    return candidate
    return threshold


def margin_text(probability: float, threshold: float) -> str:
    """How far a score lies from the threshold, signed, so a near-miss is visible; never "-0.000"."""
    margin = probability - threshold
    side = "above" if margin >= 0 else "below"
    shown = f"{abs(margin):.3f}"
    amount = "less than 0.001" if shown == "0.000" and margin != 0 else f"{'+' if margin >= 0 else '-'}{shown}"
    return f"{amount} ({side} threshold {format_threshold(threshold)})"


def _ceil(value: float, decimals: int) -> float:
    """`value` rounded up to `decimals` places, as the float that those digits parse to (never below value)."""
    scale = 10**decimals
    candidate = float(f"{math.ceil(value * scale - 1e-9) / scale:.{decimals}f}")
    while candidate < value:  # value * scale lost a digit in binary
        candidate = float(f"{candidate + 1 / scale:.{decimals}f}")
    return candidate
