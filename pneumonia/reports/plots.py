"""Figures for the app and reports: each function takes plain data and returns a plotly figure.

Nothing here reads files or knows about Streamlit, so tests can check a figure's numbers directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pneumonia.config import CLASS_NAMES
from pneumonia.decision.metrics import threshold_metrics
from pneumonia.formatting import format_percent, format_threshold

CLASS_COLOURS = {CLASS_NAMES[0]: "#2b7bba", CLASS_NAMES[1]: "#d1495b"}
_MARGIN = dict(l=10, r=10, t=40, b=10)
LEGEND_BELOW = {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.25, "yanchor": "top"}
"""A legend in a row under the plot area, below the axis title, wrapping onto more rows on a narrow screen: a
legend inside the plot covered curves and points, and a legend beside it left a phone's plot a sliver."""
TOOLBAR_PX = 40
"""Height of the band at the top of a chart where plotly's toolbar (and Streamlit's) appears: titles start below it,
so neither toolbar covers a title on a phone (issue 30)."""
AXIS_PAD = 0.04
"""Space around a [0, 1] axis, so a point at 0 or 1 is drawn whole (markers also have cliponaxis=False)."""


def confusion_heatmap(counts: np.ndarray, normalise: bool = False, title: str | None = None) -> go.Figure:
    """Counts [[TN, FP], [FN, TP]] as a heatmap; `normalise` divides each row by its true-class total."""
    counts = np.asarray(counts, dtype=float)
    if normalise:
        totals = counts.sum(axis=1, keepdims=True)
        z = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
        text = [[format_percent(v) for v in row] for row in z]
    else:
        z = counts
        text = [[f"{int(v):,}" for v in row] for row in z]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"called {name}" for name in CLASS_NAMES],
            y=[f"truly {name}" for name in CLASS_NAMES],
            text=text,
            texttemplate="%{text}",
            textfont={"size": 18},
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalise else None,
            showscale=False,
            hovertemplate="%{y}, %{x}: %{text}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")  # true NORMAL on top, as in a printed confusion matrix
    default_title = "Share of each true class" if normalise else "Counts"
    figure.update_layout(title=title or default_title, height=320, margin=_MARGIN)
    return clear_of_toolbar(figure)


def clear_of_toolbar(figure: go.Figure) -> go.Figure:
    """Move a figure's title, and its subplot titles, below the toolbar band at the top of the chart, at any width:
    the title hangs TOOLBAR_PX pixels below the top, and the plot area starts below the title."""
    margin = figure.layout.margin.t or 0
    if figure.layout.title.text:
        figure.update_layout(title={"yref": "container", "y": 1, "yanchor": "top", "pad": {"t": TOOLBAR_PX}},
                             margin={"t": max(margin, TOOLBAR_PX + 36)})
    elif figure.layout.annotations:  # subplot titles sit just above the plot area
        figure.update_layout(margin={"t": max(margin, TOOLBAR_PX + 28)})
    return figure


def operating_point(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """Where one threshold sits on the ROC (fpr, tpr) and precision-recall (recall, precision) curves."""
    metrics = threshold_metrics(labels, probabilities, threshold)
    return {
        "fpr": 1.0 - metrics["specificity"],
        "tpr": metrics["sensitivity"],
        "recall": metrics["sensitivity"],
        "precision": metrics["precision"],
    }


def _curve_with_operating_point(
    curve: tuple[np.ndarray, np.ndarray],
    baseline: tuple[list[float], list[float]],
    point: tuple[float, float],
    names: tuple[str, str],
    threshold: float,
    axes: tuple[str, str, str],
) -> go.Figure:
    """A curve, its no-skill baseline and the current threshold's point: the shape ROC and PR share."""
    title, x_title, y_title = axes
    figure = go.Figure(
        [
            go.Scatter(x=curve[0], y=curve[1], mode="lines", name=names[0], line={"color": "#444"}),
            go.Scatter(x=baseline[0], y=baseline[1], mode="lines", name=names[1], line={"dash": "dot", "color": "#bbb"}),
            go.Scatter(
                x=[point[0]],
                y=[point[1]],
                mode="markers",
                name=f"threshold {format_threshold(threshold)}",
                marker={"size": 14, "color": CLASS_COLOURS[CLASS_NAMES[1]], "symbol": "x"},
                cliponaxis=False,
            ),
        ]
    )
    figure.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, height=400, margin=_MARGIN, legend=LEGEND_BELOW
    )
    return clear_of_toolbar(figure)


def roc_figure(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> go.Figure:
    """The ROC curve with the current threshold marked, so a reader sees what moving it trades."""
    from sklearn.metrics import roc_curve
    fpr, tpr, _ = roc_curve(labels, probabilities)
    point = operating_point(labels, probabilities, threshold)
    return _curve_with_operating_point(
        (fpr, tpr),
        ([0, 1], [0, 1]),
        (point["fpr"], point["tpr"]),
        ("ROC curve", "chance"),
        threshold,
        ("ROC curve", "False-positive rate (1 - specificity)", "Sensitivity"),
    )


def pr_figure(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> go.Figure:
    """The precision-recall curve with the current threshold marked and the prevalence as baseline."""
    from sklearn.metrics import precision_recall_curve
    precision, recall, _ = precision_recall_curve(labels, probabilities)
    point = operating_point(labels, probabilities, threshold)
    prevalence = float(np.mean(labels))
    return _curve_with_operating_point(
        (recall, precision),
        ([0, 1], [prevalence, prevalence]),
        (point["recall"], point["precision"]),
        ("PR curve", "prevalence"),
        threshold,
        ("Precision-recall curve", "Recall (sensitivity)", "Precision (PPV)"),
    )


def score_histogram(
    labels: np.ndarray, probabilities: np.ndarray, score: float | None = None, threshold: float | None = None
) -> go.Figure:
    """Each class's score distribution, with one image's score and the threshold as vertical lines."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=float)
    figure = go.Figure(
        [
            go.Histogram(
                x=probabilities[labels == index],
                name=f"test {name}",
                xbins={"start": 0.0, "end": 1.0, "size": 0.05},
                histnorm="percent",
                marker_color=CLASS_COLOURS[name],
                opacity=0.6,
            )
            for index, name in enumerate(CLASS_NAMES)
        ]
    )
    # The labels sit at opposite heights, and on the side with room, so they never overlap however close the
    # score is to the threshold or to an edge.
    if threshold is not None:
        side = "left" if threshold > 0.5 else "right"
        figure.add_vline(x=threshold, line_dash="dash", line_color="#666", annotation_text="threshold",
                         annotation_position=f"bottom {side}")
    if score is not None:
        side = "left" if score > 0.5 else "right"
        figure.add_vline(x=score, line_width=3, line_color="#111", annotation_text="this image",
                         annotation_position=f"top {side}")
    figure.update_layout(
        barmode="overlay",
        height=230,
        margin=dict(l=10, r=10, t=25, b=10),
        xaxis={"title": "P(pneumonia)", "range": [0, 1]},
        yaxis_title="% of class",
        legend={"orientation": "h", "y": 1.15},
    )
    return clear_of_toolbar(figure)


def training_curves(history: pd.DataFrame, best_epoch: int | None = None) -> go.Figure:
    """Loss and AUC per epoch for fit and validation data (Keras CSVLogger columns, epochs counted from 1)."""
    epochs = history["epoch"].to_numpy() + 1
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "AUC"))
    for col, metric in enumerate(("loss", "auc"), start=1):
        for prefix, name, dash in (("", "fit", "solid"), ("val_", "validation", "dash")):
            column = prefix + metric
            if column in history:
                figure.add_trace(
                    go.Scatter(
                        x=epochs,
                        y=history[column],
                        mode="lines+markers",
                        name=f"{name} {metric}",
                        line={"dash": dash},
                    ),
                    row=1,
                    col=col,
                )
        if best_epoch is not None:
            figure.add_vline(x=best_epoch, line_dash="dot", line_color="#888", row=1, col=col)
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(height=320, margin=_MARGIN)
    return clear_of_toolbar(figure)


def reliability_figure(curves: dict[str, dict[str, list[float]]]) -> go.Figure:
    """Observed pneumonia frequency against mean predicted probability per bin; on the diagonal is calibrated."""
    figure = go.Figure(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dot", "color": "#bbb"})
    )
    for name, curve in curves.items():
        figure.add_trace(
            go.Scatter(
                x=curve["predicted"],
                y=curve["observed"],
                mode="lines+markers",
                name=name,
                customdata=curve["count"],
                hovertemplate="predicted %{x:.2f}, observed %{y:.2f}, %{customdata} images<extra></extra>",
            )
        )
    figure.update_layout(
        title="Reliability",
        xaxis={"title": "Mean predicted P(pneumonia)", "range": [0, 1]},
        yaxis={"title": "Observed share with pneumonia", "range": [0, 1]},
        height=400,
        margin=_MARGIN,
        legend=LEGEND_BELOW,
    )
    return clear_of_toolbar(figure)
