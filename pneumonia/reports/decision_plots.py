"""Figures for decisions: an icon array of natural frequencies, and a reader's calls against the model's ROC.

Like plots.py, each function takes plain data and returns a figure (plotly, or HTML for the icon array, which
must reflow on a phone), so tests can read its numbers.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from pneumonia.config import CLASS_NAMES
from pneumonia.decision.costs import COUNT_KEYS
from pneumonia.reports.plots import AXIS_PAD, CLASS_COLOURS, LEGEND_BELOW, clear_of_toolbar

ICON_COLOURS = {"caught": "#d1495b", "missed": "#f0a202", "false_alarms": "#6a4c93", "all_clear": "#c5d3e0"}
"""Sick children in warm colours (missed in alarm amber), false alarms purple, the all-clear majority a quiet grey."""
ICON_WORDS = {"caught": "caught", "missed": "missed", "false_alarms": "false alarm", "all_clear": "all clear"}
READER_COLOUR = "#1b7f5f"
"""The reader in a colour of their own: neither class's colour, so no one reads it as a call."""
_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


ICON_ARRAY_COLUMNS = 40
"""Columns of the icon array where there is room (40 x 25 for 1,000 children); fewer on a narrow screen."""
ICON_PX = 11
"""Smallest side of one icon, in CSS pixels: below it the array reflows to fewer columns, so icons stay apart."""
ICON_GAP_PX = 2


def icon_sequence(counts: dict[str, int], population: int = 1000) -> list[str]:
    """One category (a COUNT_KEYS key) per child, in the order the icon array fills its squares."""
    if sum(counts[key] for key in COUNT_KEYS) != population:
        raise ValueError(f"the counts must sum to the population ({population}); use decision.rounded_counts")
    return [key for key in COUNT_KEYS for _ in range(counts[key])]


def icon_legend(counts: dict[str, int]) -> dict[str, str]:
    """Each category's legend entry, with its count: "180 caught", "1 false alarm", "160 false alarms"."""
    return {
        key: f"{counts[key]:,} {ICON_WORDS[key]}" + ("s" if key == "false_alarms" and counts[key] != 1 else "")
        for key in COUNT_KEYS
    }


def natural_frequency_html(counts: dict[str, int], population: int = 1000) -> str:
    """One square per child, filled row by row in COUNT_KEYS order, as an HTML grid that reflows: 40 columns
    where there is room, as many as fit (each icon at least ICON_PX wide and square) on a phone. A plotly
    scatter of 1,000 fixed-size markers ran them together into bands of colour on a narrow screen."""
    from html import escape

    legend = icon_legend(counts)
    step = ICON_PX + ICON_GAP_PX
    style = (
        "<style>"
        f".nf-grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax({ICON_PX}px,1fr));"
        f"gap:{ICON_GAP_PX}px;max-width:{ICON_ARRAY_COLUMNS * step - ICON_GAP_PX}px;margin:0.25rem 0}}"
        ".nf-grid i{display:block;aspect-ratio:1/1;border-radius:1px}"
        ".nf-legend{display:flex;flex-wrap:wrap;gap:0.25rem 1rem;font-size:0.875rem;margin:0.5rem 0 1rem}"
        ".nf-legend span{white-space:nowrap}"
        ".nf-legend b{display:inline-block;width:0.8em;height:0.8em;margin-right:0.35em;vertical-align:-0.05em}"
        + "".join(f".nf-{key}{{background:{colour}}}" for key, colour in ICON_COLOURS.items())
        + "</style>"
    )
    summary = escape(f"Per {population:,} children: " + ", ".join(legend.values()))
    icons = "".join(f'<i class="nf-{key}"></i>' for key in icon_sequence(counts, population))
    entries = "".join(f'<span><b class="nf-{key}"></b>{escape(text)}</span>' for key, text in legend.items())
    return (
        f'{style}<div class="nf-array" role="img" aria-label="{summary}">'
        f'<p class="nf-title"><strong>Per {population:,} children</strong></p>'
        f'<div class="nf-grid">{icons}</div><div class="nf-legend">{entries}</div></div>'
    )


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
                cliponaxis=False,
            )
        )
    traces += [
        go.Scatter(
            x=[model_point[0]],
            y=[model_point[1]],
            mode="markers",
            name="model at threshold",
            marker={"size": 14, "color": CLASS_COLOURS[CLASS_NAMES[1]], "symbol": "x"},
            cliponaxis=False,
        ),
        go.Scatter(
            x=[reader_point[0]],
            y=[reader_point[1]],
            mode="markers",
            name="reader",
            marker={"size": 16, "color": READER_COLOUR, "symbol": "star", "line": {"width": 1, "color": "#111"}},
            cliponaxis=False,
        ),
    ]
    figure = go.Figure(traces)
    # Padded axes and cliponaxis=False: a reader at x = 1 was cut in half. The legend goes under the plot: inside
    # it, it covered the reader's point at every width.
    figure.update_xaxes(title="False-positive rate", range=[-AXIS_PAD, 1 + AXIS_PAD], automargin=True)
    figure.update_yaxes(title="Sensitivity", range=[-AXIS_PAD, 1 + AXIS_PAD], automargin=True)
    figure.update_layout(title="Reader vs model", height=440, margin=_MARGIN, legend=LEGEND_BELOW)
    return clear_of_toolbar(figure)
