"""The icon array has one icon per child in the right colour, and the reader's point sits where it should."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pneumonia.decision.costs import natural_frequencies, rounded_counts
from pneumonia.reports.decision_plots import (
    ICON_ARRAY_COLUMNS,
    ICON_COLOURS,
    ICON_GAP_PX,
    ICON_PX,
    icon_legend,
    icon_sequence,
    natural_frequency_html,
    reader_roc_figure,
)

COUNTS = {"caught": 180, "missed": 20, "false_alarms": 160, "all_clear": 640}


def icons_in(html: str) -> list[str]:
    return re.findall(r'<i class="nf-([a-z_]+)"></i>', html)


def test_icon_array_has_one_icon_per_child_in_its_categorys_colour():
    html = natural_frequency_html(COUNTS)
    assert icons_in(html) == icon_sequence(COUNTS) == [key for key in COUNTS for _ in range(COUNTS[key])]
    assert len(icons_in(html)) == 1000  # one square per child, filled in COUNT_KEYS order
    for key, colour in ICON_COLOURS.items():
        assert f".nf-{key}{{background:{colour}}}" in html
    assert list(icon_legend(COUNTS).values()) == ["180 caught", "20 missed", "160 false alarms", "640 all clear"]
    assert "Per 1,000 children" in html and 'aria-label="Per 1,000 children: 180 caught, 20 missed' in html


def test_icon_array_reflows_to_fewer_columns_but_never_below_a_visible_square():
    """Issue 19: at 390 px a plotly scatter of 1,000 markers ran together into bands. The grid fills as many
    columns as fit (at least ICON_PX each, square), and at most ICON_ARRAY_COLUMNS where there is room."""
    html = natural_frequency_html(COUNTS)
    assert f"repeat(auto-fill,minmax({ICON_PX}px,1fr))" in html and "aspect-ratio:1/1" in html
    most = ICON_ARRAY_COLUMNS * (ICON_PX + ICON_GAP_PX) - ICON_GAP_PX
    assert f"max-width:{most}px" in html
    assert ICON_PX >= 4 and ICON_GAP_PX >= 1  # icons stay visible and apart at any width


def test_icon_array_for_awkward_counts_and_populations():
    counts = rounded_counts(natural_frequencies(0.87, 0.93, 1 / 3, population=250))
    html = natural_frequency_html(counts, population=250)
    assert [icons_in(html).count(key) for key in counts] == list(counts.values())
    assert "Per 250 children" in html
    one = {"caught": 1, "missed": 0, "false_alarms": 1, "all_clear": 98}
    assert list(icon_legend(one).values()) == ["1 caught", "0 missed", "1 false alarm", "98 all clear"]
    assert len(icons_in(natural_frequency_html(one, population=100))) == 100


def test_icon_array_refuses_counts_that_do_not_add_up():
    with pytest.raises(ValueError, match="sum to the population"):
        natural_frequency_html({**COUNTS, "missed": 21})


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


def test_reader_roc_points_are_never_clipped_or_under_the_legend():
    """Issue 19: a reader at x = 1 was cut in half, and the legend inside the plot covered the point."""
    figure = reader_roc_figure([0, 1], [0, 1], (0.1, 0.6), (1.0, 1.0), reader_curve=([0, 1], [0, 1]))
    for axis in (figure.layout.xaxis, figure.layout.yaxis):
        low, high = axis.range
        assert low < 0 and high > 1  # room for half a marker beyond 0 and 1
    assert all(trace.cliponaxis is False for trace in figure.data if "markers" in trace.mode)
    legend = figure.layout.legend
    assert legend.orientation == "h" and legend.yanchor == "top" and legend.y < 0  # below the plot area


def test_reader_roc_figure_draws_the_readers_own_curve_when_given():
    reader_fpr, reader_tpr = np.array([0, 0.2, 0.5, 1]), np.array([0, 0.5, 0.8, 1])
    figure = reader_roc_figure([0, 1], [0, 1], (0.1, 0.6), (0.2, 0.5), reader_curve=(reader_fpr, reader_tpr))
    curve = next(trace for trace in figure.data if trace.name == "reader ROC (confidence)")
    assert list(curve.x) == list(reader_fpr) and list(curve.y) == list(reader_tpr)
