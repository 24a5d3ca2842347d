"""The teacher's picture: every reader's operating point alone and with the AI on the model's ROC curve for the
study's cases, and the class mean. Plain data in, a plotly figure out, so tests can read its numbers."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from pneumonia.reports.decision_plots import READER_COLOUR
from pneumonia.reports.plots import AXIS_PAD, CLASS_COLOURS, LEGEND_BELOW, clear_of_toolbar
from pneumonia.studies.results import OperatingPoint
from pneumonia.studies.store import AIDED, UNAIDED

AIDED_COLOUR = "#2a6fdb"
"""With the AI: blue, beside the reader colour for reading alone (green)."""
_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def study_roc_figure(
    model_fpr: np.ndarray, model_tpr: np.ndarray, model_point: tuple[float, float], model_auc: float,
    points: list[OperatingPoint], means: dict[str, tuple[float, float]],
) -> go.Figure:
    """Readers as small dots (hollow alone, filled with the AI, a grey line from one to the other), the class
    mean of the readers who finished as large diamonds, and the model's curve and point on the same cases."""
    traces = [
        go.Scatter(x=model_fpr, y=model_tpr, mode="lines", name=f"model ROC (AUC {model_auc:.2f})",
                   line={"color": "#444"}),
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "#bbb"},
                   hoverinfo="skip"),
        go.Scatter(x=[model_point[0]], y=[model_point[1]], mode="markers", name="model at its threshold",
                   marker={"size": 13, "color": CLASS_COLOURS["PNEUMONIA"], "symbol": "x"}),
    ]
    by_reader: dict[str, dict[str, OperatingPoint]] = {}
    for p in points:
        by_reader.setdefault(p.reader, {})[p.modality] = p
    moves_x, moves_y = [], []
    for pair in by_reader.values():
        if UNAIDED in pair and AIDED in pair:
            moves_x += [1 - pair[UNAIDED].specificity, 1 - pair[AIDED].specificity, None]
            moves_y += [pair[UNAIDED].sensitivity, pair[AIDED].sensitivity, None]
    if moves_x:
        traces.append(go.Scatter(x=moves_x, y=moves_y, mode="lines", name="change with the AI",
                                 line={"color": "#999", "width": 1}, hoverinfo="skip"))
    styles = {UNAIDED: ("readers alone", READER_COLOUR, "circle-open"),
              AIDED: ("readers with the AI", AIDED_COLOUR, "circle")}
    for modality, (name, colour, symbol) in styles.items():
        chosen = [p for p in points if p.modality == modality  # a reader yet to see both classes has no point
                  and np.isfinite(p.sensitivity) and np.isfinite(p.specificity)]
        if chosen:
            traces.append(go.Scatter(
                x=[1 - p.specificity for p in chosen], y=[p.sensitivity for p in chosen], mode="markers", name=name,
                marker={"size": 10, "color": colour, "symbol": symbol, "line": {"width": 2, "color": colour}},
                text=[f"{p.reader}: {p.cases} cases" + ("" if p.finished else " (not finished)") for p in chosen],
                hovertemplate="%{text}<br>sensitivity %{y:.2f}, false-positive rate %{x:.2f}<extra></extra>",
            ))
    for modality, (name, colour, _) in styles.items():
        if modality in means:
            sensitivity, specificity = means[modality]
            traces.append(go.Scatter(
                x=[1 - specificity], y=[sensitivity], mode="markers", name=f"class mean {name.split(' ', 1)[1]}",
                marker={"size": 18, "color": colour, "symbol": "diamond", "line": {"width": 1.5, "color": "#111"}},
            ))
    figure = go.Figure(traces)
    # As on the Reader page: padded axes and unclipped markers (a reader at x = 1 was cut in half), and the
    # legend under the plot, where it can cover no point at any width.
    figure.update_traces(cliponaxis=False)
    figure.update_xaxes(title="False-positive rate (1 - specificity)", range=[-AXIS_PAD, 1 + AXIS_PAD], automargin=True)
    figure.update_yaxes(title="Sensitivity", range=[-AXIS_PAD, 1 + AXIS_PAD], automargin=True)
    figure.update_layout(
        title="Readers and the model on the study's cases", height=520, margin=_MARGIN,
        legend={**LEGEND_BELOW, "font": {"size": 11}},
    )
    return clear_of_toolbar(figure)
