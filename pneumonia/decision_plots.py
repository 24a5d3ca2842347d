"""Figures for decisions: an icon array of natural frequencies, and a reader's calls against the model's ROC.

Like plots.py, each function takes plain data and returns a plotly figure, so tests can read its numbers.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from pneumonia.config import CLASS_NAMES
from pneumonia.decision import COUNT_KEYS
from pneumonia.plots import CLASS_COLOURS

ICON_COLOURS = {"caught": "#d1495b", "missed": "#f0a202", "false_alarms": "#6a4c93", "all_clear": "#c5d3e0"}
"""Sick children in warm colours (missed in alarm amber), false alarms purple, the all-clear majority a quiet grey."""
ICON_WORDS = {"caught": "caught", "missed": "missed", "false_alarms": "false alarm", "all_clear": "all clear"}
READER_COLOUR = "#1b7f5f"
"""The reader in a colour of their own: neither class's colour, so no one reads it as a call."""
_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def _icon_grid(population: int) -> tuple[int, int]:
    """Columns and rows for a landscape grid: 40 x 25 for 1,000 children."""
    columns = math.ceil(math.sqrt(population * 1.6))
    return columns, math.ceil(population / columns)


def natural_frequency_figure(counts: dict[str, int], population: int = 1000) -> go.Figure:
    """One square per child, filled row by row in COUNT_KEYS order; the legend gives each category's count."""
    if sum(counts[key] for key in COUNT_KEYS) != population:
        raise ValueError(f"the counts must sum to the population ({population}); use decision.rounded_counts")
    columns, rows = _icon_grid(population)
    position = np.arange(population)
    x, y = position % columns, position // columns
    traces, start = [], 0
    for key in COUNT_KEYS:
        count = counts[key]
        word = ICON_WORDS[key] + ("s" if key == "false_alarms" and count != 1 else "")
        traces.append(
            go.Scatter(
                x=x[start : start + count],
                y=y[start : start + count],
                mode="markers",
                name=f"{count:,} {word}",
                marker={"symbol": "square", "size": 8, "color": ICON_COLOURS[key]},
                hovertemplate=f"{count:,} {word}<extra></extra>",
            )
        )
        start += count
    figure = go.Figure(traces)
    hidden = {"showgrid": False, "zeroline": False, "showticklabels": False, "automargin": True}
    figure.update_xaxes(range=[-0.6, columns - 0.4], **hidden)
    # square cells at any width, first row on top
    figure.update_yaxes(range=[rows - 0.4, -0.6], scaleanchor="x", scaleratio=1, **hidden)
    figure.update_layout(
        title=f"Per {population:,} children",
        height=340,
        margin=_MARGIN,
        legend={"orientation": "h", "yanchor": "top", "y": -0.02, "x": 0},
        plot_bgcolor="white",
    )
    return figure


def reader_roc_figure(
    model_fpr: np.ndarray,
    model_tpr: np.ndarray,
    model_point: tuple[float, float],
    reader_point: tuple[float, float],
    reader_curve: tuple[np.ndarray, np.ndarray] | None = None,
) -> go.Figure:
    """The model's ROC curve and operating point beside the reader's (fpr, tpr), and the reader's own ROC
    from confidences when there is one: above the model's curve the reader beat it on these cases."""
    traces = [
        go.Scatter(x=model_fpr, y=model_tpr, mode="lines", name="model ROC", line={"color": "#444"}),
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "#bbb"}),
    ]
    if reader_curve is not None:
        traces.append(
            go.Scatter(
                x=reader_curve[0],
                y=reader_curve[1],
                mode="lines+markers",
                name="reader ROC (confidence)",
                line={"dash": "dash", "color": READER_COLOUR},
                marker={"size": 6},
            )
        )
    traces += [
        go.Scatter(
            x=[model_point[0]],
            y=[model_point[1]],
            mode="markers",
            name="model at threshold",
            marker={"size": 14, "color": CLASS_COLOURS[CLASS_NAMES[1]], "symbol": "x"},
        ),
        go.Scatter(
            x=[reader_point[0]],
            y=[reader_point[1]],
            mode="markers",
            name="reader",
            marker={"size": 16, "color": READER_COLOUR, "symbol": "star", "line": {"width": 1, "color": "#111"}},
        ),
    ]
    figure = go.Figure(traces)
    figure.update_xaxes(title="False-positive rate", range=[-0.02, 1.02], automargin=True)
    figure.update_yaxes(title="Sensitivity", range=[-0.02, 1.02], automargin=True)
    figure.update_layout(
        title="Reader vs model",
        height=380,
        margin=_MARGIN,
        legend={"x": 0.98, "xanchor": "right", "y": 0.03, "bgcolor": "rgba(255,255,255,0.7)"},
    )
    return figure
