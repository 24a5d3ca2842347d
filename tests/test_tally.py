"""Reader mode: a stratified seeded order, and the reader's and model's scores on the same cases, by hand."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace

import numpy as np
import pytest

from pneumonia.studies.reader_mode import (
    TALLY_COLUMNS,
    Reading,
    model_thresholds_text,
    reader_order,
    reader_roc,
    tally,
    tally_csv,
)

LABELS = np.array([0] * 30 + [1] * 70)


def test_reader_order_is_a_seeded_permutation():
    order = reader_order(LABELS, seed=7)
    assert sorted(order) == list(range(100)) and all(isinstance(i, int) for i in order)
    assert order == reader_order(LABELS, seed=7)
    assert order != reader_order(LABELS, seed=8)
    assert reader_order(LABELS, seed=7, count=12) == order[:12]


@pytest.mark.parametrize("seed", range(10))
def test_every_prefix_of_the_order_holds_the_classes_in_proportion(seed):
    labels = np.random.default_rng(seed).permutation([0] * 23 + [1] * 58)
    picked = labels[reader_order(labels, seed)]
    seen = np.arange(1, picked.size + 1)
    assert np.all(np.abs(np.cumsum(picked) - seen * 58 / 81) <= 1)


def test_reader_order_edges():
    assert sorted(reader_order(np.ones(5, dtype=int), 0)) == list(range(5))
    assert reader_order(LABELS, 0, count=500) == reader_order(LABELS, 0)
    assert reader_order(np.array([], dtype=int), 0) == []
    with pytest.raises(ValueError):
        reader_order(LABELS, 0, count=-1)


def _readings():
    """Eight cases at threshold 0.5; the reader calls 3 of 4 sick and 3 of 4 well children right."""
    truth = [1, 1, 1, 1, 0, 0, 0, 0]
    calls = [1, 1, 0, 1, 0, 1, 0, 0]
    confidence = [5, 3, 2, 4, 5, 2, 4, 1]
    scores = [0.9, 0.4, 0.7, 0.5, 0.55, 0.3, 0.6, 0.2]  # model calls 1 0 1 1 | 1 0 1 0 (0.5 is on the threshold)
    return [
        Reading(i, f"test/{i}.jpeg", t, "bacteria" if t else "normal", c, k, p, 0.5)
        for i, (t, c, k, p) in enumerate(zip(truth, calls, confidence, scores))
    ]


def test_model_call_uses_the_one_decision_rule():
    assert [r.model_call for r in _readings()] == [1, 0, 1, 1, 1, 0, 1, 0]


def test_tally_by_hand():
    result = tally(_readings())
    assert result["n"] == 8
    assert result["reader"] == {
        "tp": 3,
        "fp": 1,
        "fn": 1,
        "tn": 3,
        "sensitivity": 0.75,
        "specificity": 0.75,
        "accuracy": 0.75,
    }
    assert result["model"] == {
        "tp": 3,
        "fp": 2,
        "fn": 1,
        "tn": 2,
        "sensitivity": 0.75,
        "specificity": 0.5,
        "accuracy": 0.625,
    }


def test_model_counts_and_label_use_each_readings_own_threshold():
    """A threshold moved mid-session does not relabel cases already read, and the label says which were used."""
    readings = _readings()
    assert model_thresholds_text(readings) == "at 0.500"
    moved = readings[:4] + [replace(r, threshold=0.25) for r in readings[4:]]  # 0.55, 0.3, 0.6 flagged; 0.2 not
    assert tally(moved)["model"]["fp"] == 3 and tally(moved)["model"]["tp"] == 3
    assert model_thresholds_text(moved) == "at each case's own threshold (0.250 to 0.500)"


def test_tally_is_nan_safe_without_a_class_or_readings():
    only_well = tally(_readings()[4:])["reader"]
    assert math.isnan(only_well["sensitivity"]) and only_well["specificity"] == 0.75
    empty = tally([])
    assert empty["n"] == 0 and empty["model"]["tp"] == 0 and math.isnan(empty["model"]["accuracy"])


def test_reader_roc_by_hand():
    # ordinal scores: sick 5, 3, -2, 4; well -5, 2, -4, -1; one point per cut, from the strictest down
    fpr, tpr = reader_roc(_readings())
    assert list(fpr) == [0, 0, 0, 0, 0.25, 0.5, 0.5, 0.75, 1]
    assert list(tpr) == [0, 0.25, 0.5, 0.75, 0.75, 0.75, 1, 1, 1]
    reader = tally(_readings())["reader"]
    assert (1 - reader["specificity"], reader["sensitivity"]) in zip(fpr, tpr)  # the calls themselves are one cut


def test_reader_roc_needs_confidences_and_both_classes():
    readings = _readings()
    unsure = [replace(r, confidence=None) for r in readings]
    assert reader_roc(unsure) is None
    assert reader_roc(readings[:1] + unsure[1:]) is None
    assert reader_roc(readings[:4]) is None
    assert reader_roc([]) is None


def test_reading_refuses_impossible_values():
    with pytest.raises(ValueError, match="reader_call"):
        Reading(0, "a.jpeg", 1, "virus", 2, None, 0.5, 0.5)
    with pytest.raises(ValueError, match="truth"):
        Reading(0, "a.jpeg", -1, "virus", 1, None, 0.5, 0.5)
    with pytest.raises(ValueError, match="confidence"):
        Reading(0, "a.jpeg", 1, "virus", 1, 6, 0.5, 0.5)


def test_tally_csv_round_trips():
    readings = _readings()
    readings[0] = replace(readings[0], confidence=None, model_probability=0.1 + 0.2)
    rows = list(csv.DictReader(io.StringIO(tally_csv(readings))))
    assert tuple(rows[0]) == TALLY_COLUMNS
    assert len(rows) == 8
    assert rows[0] == {
        "file": "test/0.jpeg",
        "truth": "1",
        "subtype": "bacteria",
        "reader_call": "1",
        "confidence": "",
        "model_probability": repr(0.1 + 0.2),
        "model_call": "0",
        "threshold": "0.5",
    }
    assert float(rows[0]["model_probability"]) == 0.1 + 0.2
    assert [row["confidence"] for row in rows[1:]] == ["3", "2", "4", "5", "2", "4", "1"]
    assert [row["model_call"] for row in rows] == ["0", "0", "1", "1", "1", "0", "1", "0"]
