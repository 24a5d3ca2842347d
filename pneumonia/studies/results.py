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

from pneumonia.studies.design import case_id, is_finished, order_of, rating
from pneumonia.studies.store import AIDED, UNAIDED, Reader, Study, StudyCase, StudyError, StudyReading, StudyStore

EXPORT_COLUMNS = ("reader", "case", "truth", "modality", "rating", "order")
"""The readings CSV `study analyse` reads: one row per reader, case and modality; `order` is the case's place (from
1) in that reader's own random order (the analysis ignores it; it lets an order effect be looked for)."""


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
    places = {r.id: order_of(snap.cases, r) for r in snap.readers}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    rows = sorted((r for r in snap.readings if r.reader_id in keep),
                  key=lambda r: (names[r.reader_id].casefold(), r.modality != UNAIDED, r.position))
    for r in rows:
        writer.writerow([names[r.reader_id], case_id(r.position), truth[r.position], r.modality,
                         rating(r.call, r.confidence), places[r.reader_id][r.position]])
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


SCORE_WORDS = "1 is perfect, 0.5 is no better than tossing a coin"
AUC_SENTENCE = ("The score is the AUC (area under the ROC curve): the chance that a reader, through their call and how "
                "sure they were, ranks a random pneumonia above a random normal X-ray; 1 is perfect, 0.5 is a coin "
                "toss.")
P_SENTENCE = ("p is the chance of a difference at least this large if the AI made no difference at all, given how "
              "much readers and cases vary; below 0.05 is taken as more than chance.")
CLIP_SENTENCE = "Intervals are cut at 0 and 1 for a score (its limits) and at −1 and +1 for a change in score."


def plain_words(result, model_auc: float | None = None) -> str:
    """The analysis for a class, in sentences (markdown): how well the readers told pneumonia from normal alone and
    with the AI, whether the difference is more than chance, and what a study this size can and cannot conclude.
    No statistic is named here: the AUC, p and the rest go in the statistics expander (`statistics_words`)."""
    from pneumonia.studies.mrmc import clipped

    n, k = len(result.readers), result.cases
    intro = (f"**{n} readers** finished all **{k} cases** ({result.positives} PNEUMONIA, {result.negatives} NORMAL). "
             f"Their score says how well their calls and how sure they were told pneumonia from normal: "
             f"{SCORE_WORDS}.")
    model = "" if model_auc is None or not math.isfinite(model_auc) else \
        f" The AI alone scored {model_auc:.2f} on the same cases."
    limits = (f"A class study says how these {n} readers did on these {k} X-rays; it cannot show that the AI is safe "
              "or useful in a clinic, and other readers and other X-rays like these could give somewhat different "
              "numbers.")
    if UNAIDED in result.mean_auc and AIDED in result.mean_auc:
        alone, aided = result.mean_auc[UNAIDED], result.mean_auc[AIDED]
        (comparison,) = [c for c in result.comparisons if set(c.modalities) == {UNAIDED, AIDED}]
        sign = 1 if comparison.modalities[0] == AIDED else -1
        change = sign * comparison.difference
        said = f"On average the readers scored **{alone:.2f} alone** and **{aided:.2f} with the AI**.{model}"
        if not math.isfinite(comparison.p) or not all(math.isfinite(v) for v in comparison.ci):
            verdict = ("Whether the AI helped cannot be worked out: every reader scored the same, so there is no "
                       "spread between readers to judge a change against.")
            size = ""
        else:
            low, high = clipped(tuple(sorted(sign * v for v in comparison.ci)), -1.0, 1.0)
            if comparison.p < 0.05:
                direction = "helped" if change > 0 else "made the readers worse"
                verdict = (f"**The AI {direction}**: the score changed by {change:+.2f}, more than chance would "
                           f"give once readers and cases are allowed to vary; the true change is probably between "
                           f"{low:+.2f} and {high:+.2f}.")
            else:
                verdict = (f"**This study cannot tell whether the AI helps**: a change of {change:+.2f} could be "
                           f"chance; the true change could be anywhere from {low:+.2f} to {high:+.2f}.")
            size = (f" With {n} readers and {k} cases, a change smaller than about {(high - low) / 2:.2f} cannot be "
                    "told from chance; more readers narrow this most, more cases help too.")
        return f"{intro}\n\n{said} {verdict}{size}\n\n{limits}"
    (modality,) = result.modalities
    interval = result.intervals[modality]
    if all(math.isfinite(v) for v in interval.ci):
        low, high = clipped(interval.ci)
        spread = (f" For other readers like these reading other cases like these, it would probably lie between "
                  f"{low:.2f} and {high:.2f}.")
    else:
        spread = " How far it could move with other readers cannot be worked out: every reader scored the same."
    return f"{intro}\n\nOn average the readers scored **{interval.estimate:.2f}**.{spread}{model}\n\n{limits}"


def statistics_words(result) -> str:
    """What the statistics expander says first: the AUC and p in a sentence each, and the method."""
    return (f"{AUC_SENTENCE} {P_SENTENCE} {CLIP_SENTENCE} Ratings are calls weighted by confidence, from 1 (NORMAL, "
            "certain) through 5 (NORMAL, a guess) and 6 (PNEUMONIA, a guess) to 10 (PNEUMONIA, certain); readers "
            "and cases are both treated as random samples (Obuchowski–Rockette analysis with Hillis's degrees of "
            "freedom, jackknife covariances).")


def _number(value: float, digits: int) -> str:
    """A statistic as text for a table: never "nan" or an empty cell."""
    return f"{value:.{digits}f}" if math.isfinite(value) else "not defined"


def _range(ci: tuple[float, float], low: float, high: float) -> str:
    from pneumonia.studies.mrmc import clipped

    if not all(math.isfinite(v) for v in ci):
        return "not defined (readers' AUCs do not vary)"
    a, b = clipped(ci, low, high)
    return f"{a:.3f} to {b:.3f}"


def statistics_rows(result) -> list[dict]:
    """Every reader's AUC in each modality, then the readers' mean, for the statistics expander: text cells,
    every one filled."""
    label = {UNAIDED: "AUC alone", AIDED: "AUC with the AI"}
    rows = [{"reader": r, **{label.get(m, m): _number(result.auc[m][r], 3) for m in result.modalities}}
            for r in result.readers]
    rows.append({"reader": "mean", **{label.get(m, m): _number(result.mean_auc[m], 3) for m in result.modalities}})
    return rows


def analysis_rows(result) -> list[dict]:
    """The global test (three or more modalities), each comparison, then each modality's own interval: the same
    columns in every row and no empty cell, intervals cut to the figure's limits."""
    words = {UNAIDED: "alone", AIDED: "with the AI"}

    def name(modality: str) -> str:
        return words.get(modality, modality)

    rows = []
    if len(result.modalities) > 2 and result.random_readers is not None:
        test = result.random_readers
        rows.append({"what": f"all {len(result.modalities)} modalities equal?", "estimate": "—",
                     "F": _number(test.statistic, 3), "p": _number(test.p, 4), "95% interval": "—"})
    for c in result.comparisons:
        rows.append({"what": f"{name(c.modalities[0])} − {name(c.modalities[1])}",
                     "estimate": _number(c.difference, 4), "F": _number(c.f, 3), "p": _number(c.p, 4),
                     "95% interval": _range(c.ci, -1.0, 1.0)})
    for m, i in result.intervals.items():
        rows.append({"what": f"{name(m)}: mean AUC", "estimate": _number(i.estimate, 4), "F": "—", "p": "—",
                     "95% interval": _range(i.ci, 0.0, 1.0)})
    return rows
