"""The app's figures carry the numbers they claim to show (checked against independent numpy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pneumonia.decision.metrics import confusion_at, reliability_curve
from pneumonia.reports import plots


@pytest.fixture
def scores():
    """Overlapping classes, with one score exactly on the threshold used below (ties count as PNEUMONIA)."""
    rng = np.random.default_rng(3)
    labels = np.array([0] * 60 + [1] * 90)
    probabilities = np.clip(np.where(labels == 1, rng.normal(0.7, 0.2, 150), rng.normal(0.3, 0.2, 150)), 0, 1)
    probabilities[0] = 0.5
    return labels, probabilities


def _by_hand(labels, probabilities, threshold):
    called = probabilities >= threshold
    tp = np.sum(called & (labels == 1))
    fp = np.sum(called & (labels == 0))
    fn = np.sum(~called & (labels == 1))
    tn = np.sum(~called & (labels == 0))
    return tn, fp, fn, tp


def test_confusion_heatmap_shows_counts_in_matrix_order(scores):
    labels, probabilities = scores
    counts = confusion_at(labels, probabilities, 0.5)
    tn, fp, fn, tp = _by_hand(labels, probabilities, 0.5)
    heat = plots.confusion_heatmap(counts).data[0]
    assert np.array_equal(np.asarray(heat.z), [[tn, fp], [fn, tp]])
    assert list(heat.y) == ["truly NORMAL", "truly PNEUMONIA"]
    assert list(heat.x) == ["called NORMAL", "called PNEUMONIA"]
    assert heat.text[1][1] == f"{tp:,}"


def test_normalised_heatmap_divides_by_true_class(scores):
    labels, probabilities = scores
    tn, fp, fn, tp = _by_hand(labels, probabilities, 0.5)
    z = np.asarray(plots.confusion_heatmap(confusion_at(labels, probabilities, 0.5), normalise=True).data[0].z)
    assert np.allclose(z, [[tn / 60, fp / 60], [fn / 90, tp / 90]])
    assert np.allclose(z.sum(axis=1), 1.0)


def test_normalised_heatmap_leaves_empty_class_blank():
    z = np.asarray(plots.confusion_heatmap(np.array([[0, 0], [3, 7]]), normalise=True).data[0].z, dtype=float)
    assert np.isnan(z[0]).all()
    assert np.allclose(z[1], [0.3, 0.7])


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.81])
def test_roc_marker_sits_at_the_thresholds_rates(scores, threshold):
    labels, probabilities = scores
    tn, fp, fn, tp = _by_hand(labels, probabilities, threshold)
    figure = plots.roc_figure(labels, probabilities, threshold)
    curve, _, marker = figure.data
    assert marker.x[0] == pytest.approx(fp / (fp + tn))
    assert marker.y[0] == pytest.approx(tp / (tp + fn))
    assert (curve.x[0], curve.y[0]) == (0, 0) and (curve.x[-1], curve.y[-1]) == (1, 1)
    assert f"{threshold:.3f}" in marker.name


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.81])
def test_pr_marker_sits_at_the_thresholds_recall_and_precision(scores, threshold):
    labels, probabilities = scores
    tn, fp, fn, tp = _by_hand(labels, probabilities, threshold)
    figure = plots.pr_figure(labels, probabilities, threshold)
    _, baseline, marker = figure.data
    assert marker.x[0] == pytest.approx(tp / (tp + fn))
    assert marker.y[0] == pytest.approx(tp / (tp + fp))
    assert baseline.y[0] == pytest.approx(90 / 150)


def test_score_histogram_splits_by_class_and_marks_score_and_threshold(scores):
    labels, probabilities = scores
    figure = plots.score_histogram(labels, probabilities, score=0.93, threshold=0.41)
    normal, pneumonia = figure.data
    assert np.allclose(normal.x, probabilities[:60]) and np.allclose(pneumonia.x, probabilities[60:])
    lines = {shape.x0 for shape in figure.layout.shapes}
    assert lines == {0.93, 0.41}


def test_score_and_threshold_labels_never_share_a_place_even_when_the_lines_nearly_touch(scores):
    labels, probabilities = scores
    figure = plots.score_histogram(labels, probabilities, score=0.999, threshold=0.911)
    placed = {a.text: (a.yanchor, a.xanchor) for a in figure.layout.annotations}
    assert placed["this image"][0] != placed["threshold"][0]  # one at the top, one at the bottom
    assert placed["this image"][1] == "right"  # written to the left of a line near x = 1, inside the plot


def test_training_curves_plot_every_logged_column_by_epoch_from_one():
    history = pd.DataFrame(
        {"epoch": [0, 1, 2], "auc": [0.9, 0.95, 0.97], "loss": [0.5, 0.3, 0.2], "val_auc": [0.92, 0.96, 0.95],
         "val_loss": [0.4, 0.25, 0.3], "learning_rate": [1e-3, 1e-3, 5e-4]}
    )
    figure = plots.training_curves(history, best_epoch=2)
    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) == {"fit loss", "validation loss", "fit auc", "validation auc"}
    assert list(traces["validation loss"].y) == [0.4, 0.25, 0.3]
    assert list(traces["fit auc"].x) == [1, 2, 3]
    assert all(shape.x0 == 2 for shape in figure.layout.shapes)


def test_reliability_figure_plots_each_curve(scores):
    labels, probabilities = scores
    curve = reliability_curve(labels, probabilities)
    figure = plots.reliability_figure({"test": curve})
    diagonal, test = figure.data
    assert list(diagonal.x) == [0, 1]
    assert list(test.x) == curve["predicted"] and list(test.y) == curve["observed"]
    assert list(test.customdata) == curve["count"]


@pytest.mark.parametrize("draw", [plots.roc_figure, plots.pr_figure])
def test_curve_legends_sit_under_the_plot_and_the_threshold_point_is_never_clipped(draw):
    """Issue 19: a legend inside the plot area covered the curve and points, worst on a phone."""
    labels, probabilities = np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.6, 0.4, 0.8, 0.95])
    figure = draw(labels, probabilities, 0.5)
    assert figure.layout.legend.orientation == "h" and figure.layout.legend.y < 0
    point = next(trace for trace in figure.data if trace.name.startswith("threshold"))
    assert point.cliponaxis is False


def test_every_titled_chart_hangs_its_title_below_the_toolbar_band():
    """Issue 30: at 390 px plotly's toolbar covered chart titles. Titles now start TOOLBAR_PX below the top of the
    chart, and the plot area starts below the title, at any width."""
    import numpy as np

    from pneumonia.reports import plots
    from pneumonia.reports.decision_plots import reader_roc_figure

    labels = np.array([0, 1] * 10)
    scores = np.linspace(0.05, 0.95, 20)
    figures = [plots.confusion_heatmap(np.array([[5, 2], [1, 7]])), plots.roc_figure(labels, scores, 0.5),
               plots.pr_figure(labels, scores, 0.5),
               reader_roc_figure(np.array([0, 1.0]), np.array([0, 1.0]), (0.2, 0.8), (0.3, 0.7), None)]
    for figure in figures:
        title = figure.layout.title
        assert title.text and title.yref == "container" and title.y == 1 and title.yanchor == "top"
        assert title.pad.t >= plots.TOOLBAR_PX
        assert figure.layout.margin.t >= plots.TOOLBAR_PX + 30  # room for the title's line below the band
