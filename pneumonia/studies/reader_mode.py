"""Reader mode ("read first, then reveal"): which cases to show, and how the reader did against the model.

The reader and the model are scored on exactly the same cases, so their numbers can be compared directly.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from pneumonia.config import CLASS_NAMES
from pneumonia.decision.metrics import _ratio
from pneumonia.formatting import format_threshold
from pneumonia.threshold import label_at

TALLY_COLUMNS = (
    "file",
    "truth",
    "subtype",
    "reader_call",
    "confidence",
    "model_probability",
    "model_call",
    "threshold",
)


def reader_order(labels: np.ndarray, seed: int, count: int | None = None) -> list[int]:
    """A seeded order of case indices with both classes spread evenly through it, so a reader who stops
    early has still seen NORMAL and PNEUMONIA in proportion (every prefix is within one case of it).

    Each class is shuffled, its members given evenly spaced positions in [0, 1) with a random phase, and the
    classes merged by position. `count` keeps the first cases (all when None or more than there are).
    """
    if count is not None and count < 0:
        raise ValueError(f"count must be at least 0, not {count}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(labels.size)
    position = np.empty(labels.size)
    for label in np.unique(labels):
        members = labels[shuffled] == label
        position[members] = (np.arange(members.sum()) + rng.uniform()) / members.sum()
    return shuffled[np.argsort(position, kind="stable")][:count].tolist()


@dataclass(frozen=True)
class Reading:
    """One case as the reader called it, with the model's score and threshold kept for the reveal."""

    index: int
    file: str
    truth: int
    subtype: str
    reader_call: int
    confidence: int | None
    model_probability: float
    threshold: float

    def __post_init__(self):
        for name in ("truth", "reader_call"):
            if getattr(self, name) not in (0, 1):
                raise ValueError(f"{name} is 0 (NORMAL) or 1 (PNEUMONIA), not {getattr(self, name)!r}")
        if self.confidence is not None and not 1 <= self.confidence <= 5:
            raise ValueError(f"confidence runs from 1 to 5, not {self.confidence!r}")

    @property
    def model_call(self) -> int:
        return CLASS_NAMES.index(label_at(self.model_probability, self.threshold))


def _scores(truth: np.ndarray, calls: np.ndarray) -> dict:
    tp, fp = int(np.sum(calls & truth)), int(np.sum(calls & ~truth))
    fn, tn = int(np.sum(~calls & truth)), int(np.sum(~calls & ~truth))
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, truth.size),
    }


def tally(readings: list[Reading]) -> dict:
    """Counts, sensitivity, specificity and accuracy for the reader and for the model on the same cases;
    a rate with nothing to count (a class absent, or no readings yet) is nan."""
    truth = np.array([r.truth for r in readings], dtype=bool)
    return {
        "n": len(readings),
        "reader": _scores(truth, np.array([r.reader_call for r in readings], dtype=bool)),
        "model": _scores(truth, np.array([r.model_call for r in readings], dtype=bool)),
    }


def model_thresholds_text(readings: list[Reading]) -> str:
    """The threshold(s) the model's tally used: each reading keeps the one it was read at, so a threshold
    moved since then does not apply to cases already read."""
    used = sorted({r.threshold for r in readings})
    if len(used) == 1:
        return f"at {format_threshold(used[0])}"
    return f"at each case's own threshold ({format_threshold(used[0])} to {format_threshold(used[-1])})"


def reader_roc(readings: list[Reading]) -> tuple[np.ndarray, np.ndarray] | None:
    """The reader's empirical ROC (fpr, tpr) from call and confidence, or None without confidences on every
    case or without both classes.

    Call and confidence make one ordinal score, -5 (NORMAL, certain) ... -1, 1 ... 5 (PNEUMONIA, certain);
    each cut between neighbouring scores is one operating point the reader could have chosen.
    """
    from sklearn.metrics import roc_curve
    truth = [r.truth for r in readings]
    if not readings or any(r.confidence is None for r in readings) or len(set(truth)) < 2:
        return None
    scores = [r.confidence if r.reader_call == 1 else -r.confidence for r in readings]
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return fpr, tpr


def tally_csv(readings: list[Reading]) -> str:
    """The session as CSV text for a download: one row per case, calls as 0/1, a blank for no confidence."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TALLY_COLUMNS)
    for r in readings:
        confidence = "" if r.confidence is None else r.confidence
        writer.writerow(
            [
                r.file,
                r.truth,
                r.subtype,
                r.reader_call,
                confidence,
                repr(float(r.model_probability)),
                r.model_call,
                repr(float(r.threshold)),
            ]
        )
    return buffer.getvalue()
