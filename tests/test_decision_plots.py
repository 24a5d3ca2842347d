"""The icon array has one icon per child in the right colour, and the reader's point sits where it should."""

from __future__ import annotations

import numpy as np
import pytest

from pneumonia.decision import natural_frequencies, rounded_counts
from pneumonia.decision_plots import ICON_COLOURS, natural_frequency_figure, reader_roc_figure

COUNTS = {"caught": 180, "missed": 20, "false_alarms": 160, "all_clear": 640}


def test_icon_array_has_one_icon_per_child_in_its_categorys_colour():
    figure = natural_frequency_figure(COUNTS)
    assert [trace.name for trace in figure.data] == ["180 caught", "20 missed", "160 false alarms", "640 all clear"]
    for trace, key in zip(figure.data, COUNTS):
        assert len(trace.x) == len(trace.y) == COUNTS[key]
        assert trace.marker.color == ICON_COLOURS[key] and trace.marker.symbol == "square"
    cells = {(x, y) for trace in figure.data for x, y in zip(trace.x, trace.y)}
    assert len(cells) == 1000  # no two children share a square
    assert {x for x, _ in cells} == set(range(40)) and {y for _, y in cells} == set(range(25))
    assert figure.layout.title.text == "Per 1,000 children"


def test_icon_array_for_awkward_counts_and_populations():
    counts = rounded_counts(natural_frequencies(0.87, 0.93, 1 / 3, population=250))
    figure = natural_frequency_figure(counts, population=250)
    assert [len(trace.x) for trace in figure.data] == list(counts.values())
    assert figure.layout.title.text == "Per 250 children"
    one = natural_frequency_figure({"caught": 1, "missed": 0, "false_alarms": 1, "all_clear": 98}, population=100)
    assert [trace.name for trace in one.data] == ["1 caught", "0 missed", "1 false alarm", "98 all clear"]


def test_icon_array_refuses_counts_that_do_not_add_up():
    with pytest.raises(ValueError, match="sum to the population"):
        natural_frequency_figure({**COUNTS, "missed": 21})


def test_reader_roc_figure_places_model_and_reader_points():
    fpr, tpr = np.array([0, 0.1, 0.3, 1]), np.array([0, 0.6, 0.9, 1])
    figure = reader_roc_figure(fpr, tpr, model_point=(0.1, 0.6), reader_point=(0.25, 0.8))
    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) == {"model ROC", "chance", "model at threshold", "reader"}
    assert list(traces["model ROC"].x) == list(fpr) and list(traces["model ROC"].y) == list(tpr)
    assert (traces["model at threshold"].x[0], traces["model at threshold"].y[0]) == (0.1, 0.6)
    assert (traces["reader"].x[0], traces["reader"].y[0]) == (0.25, 0.8)
    assert traces["reader"].marker.symbol != traces["model at threshold"].marker.symbol
    assert figure.layout.xaxis.automargin and figure.layout.yaxis.automargin


def test_reader_roc_figure_draws_the_readers_own_curve_when_given():
    reader_fpr, reader_tpr = np.array([0, 0.2, 0.5, 1]), np.array([0, 0.5, 0.8, 1])
    figure = reader_roc_figure([0, 1], [0, 1], (0.1, 0.6), (0.2, 0.5), reader_curve=(reader_fpr, reader_tpr))
    curve = next(trace for trace in figure.data if trace.name == "reader ROC (confidence)")
    assert list(curve.x) == list(reader_fpr) and list(curve.y) == list(reader_tpr)
