"""What the teacher sees and exports: progress per reader, operating points, the class mean, the readings as
CSV in the format `study analyse` reads, and the MRMC analysis of that CSV in plain words.

The dashboard analyses exactly the text it offers for download (and `study export` writes), so its numbers
are those of `python -m pneumonia study analyse` on the exported file.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from pneumonia.studies.design import case_id, is_finished, rating
from pneumonia.studies.store import AIDED, UNAIDED, Reader, Study, StudyCase, StudyError, StudyReading, StudyStore

EXPORT_COLUMNS = ("reader", "case", "truth", "modality", "rating")
"""The readings CSV `study analyse` reads: one row per reader, case and modality."""


@dataclass(frozen=True)
class StudySnapshot:
    """One consistent look at a study, read at once: what every dashboard number is computed from."""

    study: Study
    cases: list[StudyCase]
    readers: list[Reader]
    readings: list[StudyReading]

    def of(self, reader: Reader) -> list[StudyReading]:
        return [r for r in self.readings if r.reader_id == reader.id]

    @property
    def finished(self) -> list[Reader]:
        return [r for r in self.readers if is_finished(self.study, self.cases, self.of(r))]


def snapshot(store: StudyStore, study: Study) -> StudySnapshot:
    return StudySnapshot(study, store.cases(study.id), store.readers(study.id), store.readings(study.id))


def progress_rows(snap: StudySnapshot, now: float) -> list[dict]:
    """Per reader: cases read alone and with the AI, finished or not, and how long since their last reading."""
    rows = []
    total = len(snap.cases)
    for reader in snap.readers:
        own = snap.of(reader)
        row = {"reader": reader.pseudonym,
               "read alone": f"{sum(r.modality == UNAIDED for r in own)} of {total}"}
        if snap.study.aided:
            row["read with the AI"] = f"{sum(r.modality == AIDED for r in own)} of {total}"
        row["finished"] = "yes" if is_finished(snap.study, snap.cases, own) else "no"
        row["last reading"] = _ago(now - max(r.created for r in own)) if own else "not started"
        rows.append(row)
    return rows


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


@dataclass(frozen=True)
class OperatingPoint:
    """A reader's sensitivity and specificity at their calls on the cases they have read in one modality."""

    reader: str
    modality: str
    sensitivity: float
    specificity: float
    cases: int
    finished: bool


def operating_points(snap: StudySnapshot) -> list[OperatingPoint]:
    truth = {c.position: c.truth for c in snap.cases}
    finished = {r.id for r in snap.finished}
    points = []
    for reader in snap.readers:
        for modality in snap.study.modalities:
            own = [r for r in snap.of(reader) if r.modality == modality]
            if not own:
                continue
            t = np.array([truth[r.position] for r in own], dtype=bool)
            c = np.array([r.call for r in own], dtype=bool)
            points.append(OperatingPoint(reader.pseudonym, modality, _rate(np.sum(c & t), np.sum(t)),
                                         _rate(np.sum(~c & ~t), np.sum(~t)), len(own), reader.id in finished))
    return points


def _rate(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


def class_mean(points: list[OperatingPoint]) -> dict[str, tuple[float, float]]:
    """Per modality, the mean sensitivity and specificity of the readers who finished (nan-free means)."""
    means = {}
    for modality in (UNAIDED, AIDED):
        chosen = [p for p in points if p.modality == modality and p.finished]
        if chosen:
            means[modality] = (float(np.nanmean([p.sensitivity for p in chosen])),
                               float(np.nanmean([p.specificity for p in chosen])))
    return means


def model_roc(snap: StudySnapshot) -> tuple[np.ndarray, np.ndarray, float, tuple[float, float]]:
    """The model's ROC curve (fpr, tpr) and AUC on the study's own cases, and its point at the study's threshold."""
    from sklearn.metrics import roc_auc_score, roc_curve

    truth = np.array([c.truth for c in snap.cases])
    scores = np.array([c.probability for c in snap.cases])
    fpr, tpr, _ = roc_curve(truth, scores)
    called = scores >= snap.study.threshold
    point = (1 - _rate(np.sum(~called & (truth == 0)), np.sum(truth == 0)),
             _rate(np.sum(called & (truth == 1)), np.sum(truth == 1)))
    return fpr, tpr, float(roc_auc_score(truth, scores)), point


def export_csv(snap: StudySnapshot, include_unfinished: bool = False) -> str:
    """reader,case,truth,modality,rating: one row per reading, of the readers who finished every case (the
    analysis needs every reader to rate every case in every modality) unless `include_unfinished`."""
    truth = {c.position: c.truth for c in snap.cases}
    keep = {r.id for r in (snap.readers if include_unfinished else snap.finished)}
    names = {r.id: r.pseudonym for r in snap.readers}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    rows = sorted((r for r in snap.readings if r.reader_id in keep),
                  key=lambda r: (names[r.reader_id].casefold(), r.modality != UNAIDED, r.position))
    for r in rows:
        writer.writerow([names[r.reader_id], case_id(r.position), truth[r.position], r.modality,
                         rating(r.call, r.confidence)])
    return buffer.getvalue()


def export_study(store: StudyStore, name: str, include_unfinished: bool = False) -> tuple[str, StudySnapshot]:
    """The readings CSV of the study with this name (for `study export`), with the snapshot it came from."""
    study = store.study_by_name(name)
    if study is None:
        known = ", ".join(repr(s.name) for s in store.studies()) or "none"
        where = store.url.render_as_string(hide_password=True)
        raise StudyError(f"No study is called {name!r} in the database {where}. Studies there: {known}.")
    snap = snapshot(store, study)
    return export_csv(snap, include_unfinished), snap


def analyse_csv(text: str):
    """The MRMC analysis (`pneumonia.studies.mrmc`) of a readings CSV, read exactly as `study analyse` reads it."""
    import pandas as pd

    from pneumonia.studies import mrmc

    table = pd.read_csv(io.StringIO(text), dtype=str, skipinitialspace=True,
                        keep_default_na=False, na_values=[""])  # a reader called "NA" stays "NA", not missing
    table.columns = [str(name).strip().lower() for name in table.columns]
    return mrmc.analyse(table)


def _p_words(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def plain_words(result, model_auc: float | None = None) -> str:
    """The analysis for a class: the readers' average AUC alone and with the AI, and whether the difference is
    more than chance, in sentences (markdown). The numbers behind it go in the statistics expander."""
    n, k = len(result.readers), result.cases
    intro = (f"**{n} readers** finished all **{k} cases** ({result.positives} PNEUMONIA, {result.negatives} NORMAL). "
             "The AUC says how well a reader's calls and confidences put the pneumonias above the normals: "
             "1 is perfect, 0.5 is a coin toss.")
    model = "" if model_auc is None else f" The model's AUC on the same cases is {model_auc:.2f}."
    if UNAIDED in result.mean_auc and AIDED in result.mean_auc:
        alone, aided = result.mean_auc[UNAIDED], result.mean_auc[AIDED]
        (comparison,) = [c for c in result.comparisons if set(c.modalities) == {UNAIDED, AIDED}]
        sign = 1 if comparison.modalities[0] == AIDED else -1
        change = sign * comparison.difference
        low, high = sorted(sign * v for v in comparison.ci)
        said = f"The readers' average AUC was **{alone:.2f} alone** and **{aided:.2f} with the AI**.{model}"
        if not math.isfinite(comparison.p):
            verdict = "The change cannot be tested: every reader's AUC is the same."
        elif comparison.p < 0.05:
            direction = "helped" if change > 0 else "made the readers worse"
            verdict = (f"**The AI {direction}**: a change of {change:+.2f} (95% interval {low:+.2f} to {high:+.2f}) is "
                       f"unlikely to be chance ({_p_words(comparison.p)}), allowing for how readers and cases vary; "
                       "it should hold for other readers like these reading other cases like these.")
        else:
            verdict = (f"**This study cannot tell whether the AI helps**: the change, {change:+.2f}, could be chance "
                       f"({_p_words(comparison.p)}); the 95% interval runs from {low:+.2f} to {high:+.2f}. More "
                       "readers or more cases would narrow it.")
        return f"{intro}\n\n{said} {verdict}"
    (modality,) = result.modalities
    interval = result.intervals[modality]
    return (f"{intro}\n\nThe readers' average AUC was **{interval.estimate:.2f}** (95% interval "
            f"{interval.ci[0]:.2f} to {interval.ci[1]:.2f}, for other readers like these reading other cases like "
            f"these).{model}")


def statistics_rows(result) -> list[dict]:
    """Every reader's AUC in each modality, then the readers' mean, for the statistics expander."""
    rows = [{"reader": r, **{m: round(result.auc[m][r], 4) for m in result.modalities}} for r in result.readers]
    rows.append({"reader": "mean", **{m: round(result.mean_auc[m], 4) for m in result.modalities}})
    return rows
