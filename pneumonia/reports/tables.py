"""Pure helpers behind the Screen page: naming uploads by content, and wording a score against
the threshold and against the test set. Kept out of app.py so they can be tested without a browser.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from pneumonia.config import CLASS_NAMES
from pneumonia.formatting import format_percent, format_probability, format_threshold
from pneumonia.io.dataset import is_image_file
from pneumonia.reports.model_card import METRIC_LABELS
from pneumonia.screening.predictor import Screening
from pneumonia.threshold import Threshold


@dataclass(frozen=True)
class Upload:
    """One image as bytes held in memory; `digest` keys every cache, so equal bytes are scored once."""

    name: str
    data: bytes

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sample_files(folder: Path) -> list[Path]:
    """The bundled demo images, in a stable order."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def class_percentiles(score: float, labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Per class, the percentage of test images scoring lower than `score` (ties count half)."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=float)
    result: dict[str, float] = {}
    for index, name in enumerate(CLASS_NAMES):
        scores = probabilities[labels == index]
        if scores.size:
            result[name] = float(100.0 * (np.sum(scores < score) + 0.5 * np.sum(scores == score)) / scores.size)
    return result


def percentile_text(percentiles: dict[str, float]) -> str:
    return "Scores higher than " + " and ".join(
        f"{format_percent(value / 100, 0)} of test {name} images" for name, value in percentiles.items()
    ) + "."


def results_table(results: list[Screening], threshold: Threshold) -> pd.DataFrame:
    """One row per input with its gate status and reason; refused rows have no probability or label. The
    probability is kept in full (the CSV writes it so), so a row's label can be checked against its own number."""
    rows = []
    for item in results:
        p = item.probability
        rows.append(
            {
                "file": item.name,
                "status": item.status,
                "reason": item.reason,
                "probability": None if p is None else float(p),
                "label": "" if p is None else threshold.label(p),
                "threshold": threshold.value,
            }
        )
    # The long reason goes last, so status, score and label stay in view on a narrow screen.
    return pd.DataFrame(rows, columns=["file", "status", "probability", "label", "threshold", "reason"])


def displayed_table(table: pd.DataFrame) -> pd.DataFrame:
    """The results table as the app shows it: probabilities written as everywhere else ("> 0.999"), blank if
    refused, and the threshold exactly as applied. The CSV keeps the probability in full."""
    shown = table.copy()
    shown["probability"] = [("" if pd.isna(p) else format_probability(float(p), float(t)))
                            for p, t in zip(table["probability"], table["threshold"])]
    shown["threshold"] = [format_threshold(float(t)) for t in table["threshold"]]
    return shown


RESULT_COLUMNS = ("file", "status", "label", "probability")
"""What each row of the results table shows on one line, at any width; the reason wraps on a line of its own."""


def results_html(shown: pd.DataFrame) -> str:
    """The displayed table (`displayed_table`) as a compact HTML table that fits a phone: file, status, label and
    probability on one row, the gate's reason wrapped in full on the row below it (never cut off), and the
    threshold once in the header. Every cell is escaped; `data-row` and `data-col` name each cell for tests."""
    from html import escape

    threshold = escape(str(shown["threshold"].iloc[0])) if len(shown) else ""
    names = {"label": f"label at {threshold}" if threshold else "label"}
    head = "".join(f'<th scope="col" class="col-{c}">{escape(names.get(c, c))}</th>' for c in RESULT_COLUMNS)
    rows = []
    for number, row in enumerate(shown.to_dict("records")):
        cells = "".join(
            f'<td class="col-{c}" data-row="{number}" data-col="{c}">{escape(str(row[c]))}</td>' for c in RESULT_COLUMNS
        )
        rows.append(f'<tr class="result">{cells}</tr>')
        if row["reason"]:
            rows.append(f'<tr class="reason"><td colspan="{len(RESULT_COLUMNS)}" data-row="{number}" '
                        f'data-col="reason">{escape(str(row["reason"]))}</td></tr>')
    return (f'<table class="pneumonia-results"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def results_csv(table: pd.DataFrame) -> str:
    """The table as CSV text, built in memory so uploads never touch the disk."""
    return table.to_csv(index=False)


def metrics_table(test_report: dict) -> pd.DataFrame:
    """Test metrics with their bootstrap 95% intervals, for the model card."""
    intervals = test_report.get("intervals_95", {})
    rows = []
    for key, label in METRIC_LABELS.items():
        if key in test_report:
            interval = intervals.get(key)
            shown = f"{interval[0]:.3f} – {interval[1]:.3f}" if interval else "not bootstrapped"
            rows.append({"metric": label, "value": test_report[key], "95% interval": shown})
    return pd.DataFrame(rows, columns=["metric", "value", "95% interval"])


def facts_text(facts: dict) -> str:
    """The DICOM facts a card may show (none of them identifies anyone), in one line."""
    parts = [
        f"modality {facts['modality']}" if "modality" in facts else "",
        f"view {facts['view']}" if "view" in facts else "",
        f"body part {facts['body_part']}" if "body_part" in facts else "",
        f"age {facts['age_band']}" if "age_band" in facts else "",
    ]
    return "DICOM: " + (", ".join(p for p in parts if p) or "no modality, view, body part or age recorded")
