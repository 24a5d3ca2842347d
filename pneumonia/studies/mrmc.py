"""Multi-reader multi-case (MRMC) analysis: does a modality (say, reading with the AI) change readers' AUC?

Every reader rates every case in every modality. A difference in reader-averaged AUC varies both with the
readers and with the cases drawn, so it is tested with the Obuchowski-Rockette (OR) model: jackknife
covariances of the reader AUCs and Hillis's (2007, 2008) denominator degrees of freedom, as in the Iowa
OR-DBM MRMC software, RJafroc and MRMCaov. tests/test_mrmc.py reproduces OR-DBM MRMC 2.51's published
analysis of the Van Dyke et al. (1993) study.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pneumonia.errors import StudyError

COLUMNS = ("reader", "case", "truth", "modality", "rating")
CALL_COLUMN = "call"
"""Optional: the reader's binary call (1 = abnormal), for sensitivity and specificity."""
CONFIDENCE = 0.95


def placements(truth, ratings) -> tuple[np.ndarray, np.ndarray]:
    """Each abnormal case's share of normal cases rated below it, and each normal case's share of abnormal
    cases rated above it, ties counting half: the AUC's structural components (DeLong et al. 1988)."""
    truth = np.asarray(truth, dtype=bool)
    ratings = np.asarray(ratings, dtype=float)
    abnormal, normal = ratings[truth], ratings[~truth]
    normal_sorted, abnormal_sorted = np.sort(normal), np.sort(abnormal)
    below = np.searchsorted(normal_sorted, abnormal, "left") + np.searchsorted(normal_sorted, abnormal, "right")
    above = 2 * len(abnormal) - np.searchsorted(abnormal_sorted, normal, "left") - np.searchsorted(
        abnormal_sorted, normal, "right")
    return below / (2 * len(normal)), above / (2 * len(abnormal))


def auc(truth, ratings) -> float:
    """Trapezoidal (Wilcoxon-Mann-Whitney) AUC; a larger rating means more likely abnormal (truth 1)."""
    _check_classes(np.asarray(truth, dtype=bool), minimum=1)
    return float(placements(truth, ratings)[0].mean())


def jackknife_auc(truth, ratings) -> np.ndarray:
    """The AUC with each case left out in turn (in case order): exact, from the placements, in O(K log K)."""
    truth = np.asarray(truth, dtype=bool)
    _check_classes(truth, minimum=2)
    n_abnormal, n_normal = int(truth.sum()), int((~truth).sum())
    of_abnormal, of_normal = placements(truth, ratings)
    concordant = of_abnormal.sum() * n_normal  # pairs ranked right, ties counting half
    left_out = np.empty(truth.shape)
    left_out[truth] = (concordant - of_abnormal * n_normal) / ((n_abnormal - 1) * n_normal)
    left_out[~truth] = (concordant - of_normal * n_abnormal) / (n_abnormal * (n_normal - 1))
    return left_out


def sensitivity_specificity(truth, calls) -> tuple[float, float]:
    """Share of abnormal cases called abnormal, and of normal cases called normal; calls are 1 (abnormal) or 0."""
    truth = np.asarray(truth, dtype=bool)
    calls = np.asarray(calls, dtype=bool)
    _check_classes(truth, minimum=1)
    return float(calls[truth].mean()), float((~calls[~truth]).mean())


@dataclass(frozen=True)
class Covariances:
    """OR error variance and covariances of the reader AUCs, each averaged over its pairs (Hillis 2007)."""

    var: float
    cov1: float
    """Same reader, different modalities."""
    cov2: float
    """Different readers, same modality."""
    cov3: float
    """Different readers, different modalities."""


def pseudovalue_covariance(jackknife: np.ndarray) -> np.ndarray:
    """Covariance matrix, over cases, of the (modality, reader) AUCs from their jackknife pseudovalues.

    `jackknife` is modalities x readers x cases (each AUC with that case left out); the result is
    modalities x readers x modalities x readers. The pseudovalues' covariance over K cases, divided by K, is the
    jackknife covariance (K - 1)/K * sum (left-out AUC - their mean)(...)', as in Hillis et al. (2005).
    """
    n_modalities, n_readers, n_cases = jackknife.shape
    left_out = jackknife.reshape(n_modalities * n_readers, n_cases)
    pseudo = n_cases * left_out.mean(axis=1, keepdims=True) - (n_cases - 1) * left_out
    return (np.cov(pseudo) / n_cases).reshape(n_modalities, n_readers, n_modalities, n_readers)


def or_covariances(covariance: np.ndarray) -> Covariances:
    """Var, Cov1, Cov2 and Cov3 as the averages of the matching entries of the covariance matrix (NaN where the
    design has no such pair, e.g. Cov1 with one modality)."""
    n_modalities, n_readers = covariance.shape[:2]
    same_modality = np.eye(n_modalities, dtype=bool)[:, None, :, None]
    same_reader = np.eye(n_readers, dtype=bool)[None, :, None, :]

    def average(mask) -> float:
        entries = covariance[np.broadcast_to(mask, covariance.shape)]
        return float(entries.mean()) if entries.size else math.nan

    return Covariances(var=average(same_modality & same_reader), cov1=average(~same_modality & same_reader),
                       cov2=average(same_modality & ~same_reader), cov3=average(~same_modality & ~same_reader))


@dataclass(frozen=True)
class Comparison:
    """Modality a minus modality b, averaged over readers; readers and cases random (OR, Hillis ddf).

    With more than two modalities every pair uses the global error term and its ddf, as the Iowa software,
    RJafroc and MRMCaov do; f is t squared and p two-sided.
    """

    modalities: tuple[str, str]
    difference: float
    std_err: float
    df: float
    f: float
    p: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class Interval:
    """One modality's reader-averaged AUC, readers and cases random, from that modality's readings alone."""

    estimate: float
    std_err: float
    df: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class Test:
    """A global test of equal reader-averaged AUCs across all modalities."""

    statistic: float
    df: tuple[float, ...]
    p: float


@dataclass(frozen=True)
class StudyResult:
    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    cases: int
    positives: int
    negatives: int
    auc: dict[str, dict[str, float]]
    """modality -> reader -> AUC."""
    mean_auc: dict[str, float]
    covariances: Covariances
    ms_t: float
    """Modality mean square of the modality x reader ANOVA of the AUCs (NaN with one modality)."""
    ms_tr: float
    """Modality x reader mean square (NaN with one modality)."""
    random_readers: Test | None
    """F test, readers and cases random (RRRC); None with one modality."""
    fixed_readers: Test | None
    """Chi-square test for these readers, cases random (FRRC); None with one modality."""
    comparisons: tuple[Comparison, ...]
    intervals: dict[str, Interval]
    sensitivity: dict[str, dict[str, float]] | None
    """modality -> reader -> sensitivity at the reader's calls; None without a call column."""
    specificity: dict[str, dict[str, float]] | None

    def to_json(self) -> dict:
        """The stable JSON form (`study analyse --json`); a statistic the data leave undefined is null."""
        return {
            "readers": len(self.readers),
            "cases": self.cases,
            "positives": self.positives,
            "negatives": self.negatives,
            "modalities": list(self.modalities),
            "auc": {m: {r: _finite(v) for r, v in by_reader.items()} for m, by_reader in self.auc.items()},
            "mean_auc": {m: _finite(v) for m, v in self.mean_auc.items()},
            "comparisons": [
                {"modalities": list(c.modalities), "difference": _finite(c.difference), "std_err": _finite(c.std_err),
                 "df": _finite(c.df), "f": _finite(c.f), "p": _finite(c.p), "ci": [_finite(v) for v in c.ci]}
                for c in self.comparisons
            ],
        }

    def summary(self) -> str:
        """A few plain sentences: the design, each modality's average AUC, and each comparison's verdict."""
        modalities = f"{len(self.modalities)} modalities" if len(self.modalities) > 1 else "one modality"
        lines = [f"{len(self.readers)} readers read {self.cases} cases ({self.positives} abnormal, "
                 f"{self.negatives} normal) in {modalities}; readers and cases are treated as samples "
                 "(Obuchowski-Rockette analysis, Hillis degrees of freedom)."]
        for modality, interval in self.intervals.items():
            calls = ""
            if self.sensitivity is not None:
                sens = np.mean(list(self.sensitivity[modality].values()))
                spec = np.mean(list(self.specificity[modality].values()))
                calls = f"; at their calls, average sensitivity {sens:.3f} and specificity {spec:.3f}"
            lines.append(f"  {modality}: readers' average AUC {interval.estimate:.3f} "
                         f"({_interval_text(interval.ci)}){calls}")
        if len(self.modalities) > 2 and self.random_readers is not None:
            test = self.random_readers
            if math.isfinite(test.p):
                verdict = ("at least one modality differs from the others beyond chance" if test.p < 1 - CONFIDENCE
                           else "no difference among them beyond chance")
                lines.append(f"All {len(self.modalities)} modalities together (F = {test.statistic:.3f}, "
                             f"df {test.df[0]:g} and {test.df[1]:.2f}, {_p_text(test.p)}): {verdict}. The pairs:")
            else:
                lines.append(f"All {len(self.modalities)} modalities together cannot be tested: the readers' AUCs do "
                             "not vary. The pairs:")
        for c in self.comparisons:
            a, b = c.modalities
            said = (f"Readers' average AUC was {self.mean_auc[a]:.3f} in modality {a} against "
                    f"{self.mean_auc[b]:.3f} in modality {b}; the difference ({a} minus {b}), {c.difference:+.3f}")
            if not math.isfinite(c.p):
                lines.append(f"{said}, cannot be tested: the readers' AUCs do not vary.")
            elif c.p < 1 - CONFIDENCE:
                lines.append(f"{said} ({_interval_text(c.ci, -1.0)}), is unlikely to be chance alone "
                             f"({_p_text(c.p)}).")
            else:
                lines.append(f"{said} ({_interval_text(c.ci, -1.0)}), could be chance ({_p_text(c.p)}).")
        return "\n".join(lines)


def read_readings(path: Path) -> pd.DataFrame:
    """The readings CSV as text columns (analyse() checks and converts them), or a one-line StudyError."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path} is not a file; give a CSV with columns {','.join(COLUMNS)}, one row per reading.")
    try:
        table = pd.read_csv(path, dtype=str, skipinitialspace=True,
                            keep_default_na=False, na_values=[""])  # a reader called "NA" stays "NA", not missing
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(f"{path} is not a readable CSV ({reason}); save it as comma-separated UTF-8 text.") from exc
    table.columns = [str(name).strip().lower() for name in table.columns]
    return table


def analyse(readings: pd.DataFrame) -> StudyResult:
    """The OR analysis of a fully crossed study: one row per reader, case and modality (see COLUMNS)."""
    design = _design(readings)
    modalities, readers, truth, ratings = design["modalities"], design["readers"], design["truth"], design["ratings"]
    n_modalities, n_readers = len(modalities), len(readers)
    aucs = np.array([[auc(truth, ratings[i, j]) for j in range(n_readers)] for i in range(n_modalities)])
    jackknife = np.array([[jackknife_auc(truth, ratings[i, j]) for j in range(n_readers)]
                          for i in range(n_modalities)])
    covariance = pseudovalue_covariance(jackknife)
    covariances = or_covariances(covariance)
    means = aucs.mean(axis=1)

    ms_t = ms_tr = math.nan
    random_readers = fixed_readers = None
    comparisons: list[Comparison] = []
    if n_modalities > 1:
        ms_t = n_readers * float(np.sum((means - means.mean()) ** 2)) / (n_modalities - 1)
        interaction = aucs - means[:, None] - aucs.mean(axis=0)[None, :] + aucs.mean()
        ms_tr = float(np.sum(interaction**2)) / ((n_modalities - 1) * (n_readers - 1))
        # Hillis (2007): error term MS(T*R) + J max(Cov2 - Cov3, 0), and its Satterthwaite-type ddf_H.
        shared = max(covariances.cov2 - covariances.cov3, 0.0)
        error = ms_tr + n_readers * shared
        ddf = _ddf(error, ms_tr, (n_modalities - 1) * (n_readers - 1))
        f = _ratio(ms_t, error)
        random_readers = Test(f, (n_modalities - 1, ddf), _f_sf(f, n_modalities - 1, ddf))
        fixed_error = covariances.var - covariances.cov1 + (n_readers - 1) * shared
        chi2 = _ratio((n_modalities - 1) * ms_t, fixed_error)
        fixed_readers = Test(chi2, (n_modalities - 1,), _sf(stats.chi2, chi2, n_modalities - 1))
        std_err = math.sqrt(2 * error / n_readers)
        for a, b in itertools.combinations(range(n_modalities), 2):
            difference = float(means[a] - means[b])
            t = _ratio(difference, std_err)
            comparisons.append(Comparison((modalities[a], modalities[b]), difference, std_err, ddf, t * t,
                                          2 * _sf(stats.t, abs(t), ddf), _ci(difference, std_err, ddf)))

    intervals = {}
    for i, modality in enumerate(modalities):
        # Hillis (2007) single-modality interval: MS(R) of this modality's AUCs and its own Cov2.
        ms_r = float(np.var(aucs[i], ddof=1))
        own = covariance[i, :, i, :]
        cov2 = float(own[~np.eye(n_readers, dtype=bool)].mean())
        error = ms_r + n_readers * max(cov2, 0.0)
        std_err = math.sqrt(error / n_readers)
        df = _ddf(error, ms_r, n_readers - 1)
        intervals[modality] = Interval(float(means[i]), std_err, df, _ci(float(means[i]), std_err, df))

    sensitivity = specificity = None
    if design["calls"] is not None:
        pairs = {m: {r: sensitivity_specificity(truth, design["calls"][i, j]) for j, r in enumerate(readers)}
                 for i, m in enumerate(modalities)}
        sensitivity = {m: {r: v[0] for r, v in by_reader.items()} for m, by_reader in pairs.items()}
        specificity = {m: {r: v[1] for r, v in by_reader.items()} for m, by_reader in pairs.items()}

    return StudyResult(
        modalities=modalities, readers=readers, cases=len(truth), positives=int(truth.sum()),
        negatives=int((~truth).sum()),
        auc={m: {r: float(aucs[i, j]) for j, r in enumerate(readers)} for i, m in enumerate(modalities)},
        mean_auc={m: float(means[i]) for i, m in enumerate(modalities)}, covariances=covariances, ms_t=ms_t,
        ms_tr=ms_tr, random_readers=random_readers, fixed_readers=fixed_readers, comparisons=tuple(comparisons),
        intervals=intervals, sensitivity=sensitivity, specificity=specificity)


def _design(readings: pd.DataFrame) -> dict:
    """Check the readings form a fully crossed study and lay them out as modality x reader x case arrays."""
    missing = [c for c in COLUMNS if c not in readings.columns]
    if missing:
        raise StudyError(f"the readings lack the column(s) {', '.join(missing)}; give one row per reading with "
                         f"columns {','.join(COLUMNS)}.")
    if readings.empty:
        raise StudyError(f"the readings hold no rows; give one row per reading with columns {','.join(COLUMNS)}.")
    columns = [*COLUMNS, *([CALL_COLUMN] if CALL_COLUMN in readings else [])]
    table = readings[columns].reset_index(drop=True)
    for column in ("reader", "case", "modality"):
        labels = table[column].astype("string").str.strip()
        blank = labels.isna() | (labels == "")
        if blank.any():
            position = int(np.flatnonzero(blank.to_numpy())[0]) + 1
            raise StudyError(f"reading {position} (counting rows after the header) has no {column}; every reading "
                             "needs a reader, a case and a modality.")
        table[column] = labels.astype(str)
    table["truth"] = _numbers(table, "truth", "truth must be 0 (normal) or 1 (abnormal)", allowed={0, 1})
    table["rating"] = _numbers(table, "rating", "rating must be a number")
    if CALL_COLUMN in table:
        table[CALL_COLUMN] = _numbers(table, CALL_COLUMN, "call must be 1 (abnormal) or 0 (normal)", allowed={0, 1})

    per_case = table.groupby("case")["truth"].nunique()
    if (per_case > 1).any():
        case = per_case.index[per_case > 1][0]
        raise StudyError(f"case {case} has truth 0 in some rows and 1 in others; give each case one truth.")
    repeated = table.duplicated(["reader", "case", "modality"])
    if repeated.any():
        row = table[repeated].iloc[0]
        raise StudyError(f"reader {row.reader} rated case {row.case} in modality {row.modality} more than once; "
                         "keep one rating per reader, case and modality.")
    modalities = tuple(sorted(table["modality"].unique()))
    readers = tuple(sorted(table["reader"].unique()))
    cases = tuple(sorted(table["case"].unique()))
    if len(table) < len(modalities) * len(readers) * len(cases):
        present = set(zip(table["modality"], table["reader"], table["case"]))
        absent = [key for key in itertools.product(modalities, readers, cases) if key not in present]
        modality, reader, case = absent[0]
        raise StudyError(f"reader {reader} has no rating of case {case} in modality {modality} ({len(absent)} "
                         "readings missing in all); every reader must rate every case in every modality.")
    if len(readers) < 2:
        raise StudyError(f"only reader {readers[0]} is in the readings; a study of readers needs at least 2.")
    case_truth = table.groupby("case")["truth"].first().reindex(list(cases)).to_numpy().astype(bool)
    _check_classes(case_truth, minimum=2)

    index = (pd.Categorical(table["modality"], modalities).codes, pd.Categorical(table["reader"], readers).codes,
             pd.Categorical(table["case"], cases).codes)
    shape = (len(modalities), len(readers), len(cases))
    ratings = np.empty(shape)
    ratings[index] = table["rating"].to_numpy(dtype=float)
    calls = None
    if CALL_COLUMN in table:
        calls = np.empty(shape)
        calls[index] = table[CALL_COLUMN].to_numpy(dtype=float)
    return {"modalities": modalities, "readers": readers, "truth": case_truth, "ratings": ratings, "calls": calls}


def _numbers(table: pd.DataFrame, column: str, rule: str, allowed: set | None = None) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce").astype(float)
    bad = ~np.isfinite(values)
    if allowed is not None:
        bad |= ~values.isin(allowed)
    if bad.any():
        row = table[bad].iloc[0]
        raise StudyError(f"{rule}; reader {row.reader} has {row[column]!r} for case {row.case} in modality "
                         f"{row.modality}.")
    return values


def _check_classes(truth: np.ndarray, minimum: int) -> None:
    n_abnormal, n_normal = int(truth.sum()), int((~truth).sum())
    if n_abnormal < minimum or n_normal < minimum:
        raise StudyError(f"the cases hold {n_abnormal} abnormal (truth 1) and {n_normal} normal (truth 0); an AUC "
                         f"{'and its jackknife need' if minimum > 1 else 'needs'} at least {minimum} of each.")


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with x/0 infinite and 0/0 NaN rather than an exception."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(numerator) / np.float64(denominator))


def _ddf(error: float, mean_square: float, mean_square_df: int) -> float:
    """Satterthwaite-type degrees of freedom of an error term built on one mean square (Hillis 2007)."""
    return _ratio(error**2 * mean_square_df, mean_square**2)


def _sf(distribution, value: float, *df: float) -> float:
    return math.nan if math.isnan(value) else float(distribution.sf(value, *df))


def _f_sf(f: float, df_num: int, df_den: float) -> float:
    """F upper tail; with infinite denominator df, F x df_num is chi-square (scipy's F gives NaN there)."""
    if df_den == math.inf:
        return _sf(stats.chi2, f * df_num, df_num)
    return _sf(stats.f, f, df_num, df_den)


def _ci(estimate: float, std_err: float, df: float) -> tuple[float, float]:
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * std_err if df > 0 else math.nan
    return estimate - half, estimate + half


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def clipped(ci: tuple[float, float], low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """An interval cut to the range its figure can take: [0, 1] for an AUC, [-1, 1] for a difference of AUCs."""
    return max(low, ci[0]), min(high, ci[1])


def _interval_text(ci: tuple[float, float], low: float = 0.0, high: float = 1.0) -> str:
    """The interval in words, cut to [low, high] and saying so; never "nan to nan"."""
    if not all(math.isfinite(v) for v in ci):
        return "no interval: the readers' AUCs do not vary, so their spread cannot be estimated"
    cut = clipped(ci, low, high)
    note = f", cut at {low:g} and {high:g}, the limits of the figure" if cut != tuple(ci) else ""
    return f"{CONFIDENCE:.0%} interval {cut[0]:.3f} to {cut[1]:.3f}{note}"


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
