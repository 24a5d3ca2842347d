"""MRMC reader-study analysis: the published Van Dyke analysis to every printed digit, a study worked by hand,
properties of the AUC and its jackknife, one-line errors, and `study analyse` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pneumonia.cli import main
from pneumonia.studies.mrmc import (
    StudyError,
    analyse,
    auc,
    jackknife_auc,
    or_covariances,
    pseudovalue_covariance,
    read_readings,
    sensitivity_specificity,
)

VAN_DYKE = Path(__file__).parent / "data" / "vandyke.csv"
"""Van Dyke et al. (1993): 5 readers, 114 cases, cine (1) vs spin-echo (2) MRI; source in tests/data/README.md."""


def printed(value: float, text: str) -> bool:
    """True when `value` rounds to the number printed as `text` (within half a unit of its last digit)."""
    decimals = len(text.partition(".")[2])
    return abs(value - float(text)) <= 0.5 * 10.0**-decimals * (1 + 1e-9)


@pytest.fixture(scope="module")
def van_dyke():
    return analyse(read_readings(VAN_DYKE))


# --- the published analysis of the Van Dyke data ------------------------------------------------------------------
# IOWA: OR-DBM MRMC 2.51 (Build 20181028, Schartz, Hillis, Pesce & Berbaum), "VanDyke trap area jackknife anova",
#   as stored in RJafroc: github.com/dpc10ster/RJafroc, tests/testthat/goodValues361/Iowa/VanDyke.txt
#   (commit 826eddc10d91464299a49bb8af4372007a74bc13).
# RJAFROC: StSignificanceTesting(dataset02, FOM = "Wilcoxon", method = "OR") as printed in Chakraborty's book,
#   github.com/dpc10ster/RJafrocBook, docs/10C-OR-AnalysisApplications.md ("Hand calculation using dataset02").
# MRMCAOV: mrmc(empirical_auc(truth, rating), treatment, reader, case, data = VanDyke) in the MRMCaov README
#   (github.com/brian-j-smith/MRMCaov, version 0.1.x) and docs/jss/MRMCaov.tex.

IOWA_AUC = {  # TREATMENT x READER AUC ESTIMATES
    "1": {"1": "0.91964573", "2": "0.85877617", "3": "0.90386473", "4": "0.97310789", "5": "0.82979066"},
    "2": {"1": "0.94782609", "2": "0.90531401", "3": "0.92173913", "4": "0.99935588", "5": "0.92995169"},
}


def test_reader_aucs_and_means_match_the_iowa_software_to_8_decimals(van_dyke):
    assert (van_dyke.cases, van_dyke.positives, van_dyke.negatives) == (114, 45, 69)
    assert van_dyke.readers == ("1", "2", "3", "4", "5") and van_dyke.modalities == ("1", "2")
    for modality, by_reader in IOWA_AUC.items():
        for reader, text in by_reader.items():
            assert printed(van_dyke.auc[modality][reader], text), (modality, reader)
    assert printed(van_dyke.mean_auc["1"], "0.89703704")
    assert printed(van_dyke.mean_auc["2"], "0.94083736")
    assert printed(van_dyke.comparisons[0].difference, "-0.04380032")


def test_or_mean_squares_and_jackknife_covariances_match_published_values(van_dyke):
    c = van_dyke.covariances
    # RJAFROC $ANOVA$TRanova and $ANOVA$VarCom
    assert printed(van_dyke.ms_t, "0.0047961705")
    assert printed(van_dyke.ms_tr, "0.00055103062")
    assert printed(c.var, "0.00080228827")
    assert printed(c.cov1, "0.00034661371")
    assert printed(c.cov2, "0.00034407483")
    assert printed(c.cov3, "0.00023902837")
    # IOWA, 8 decimals
    for value, text in ((c.var, "0.00080229"), (c.cov1, "0.00034661"), (c.cov2, "0.00034407"),
                        (c.cov3, "0.00023903"), (van_dyke.ms_tr, "0.00055103")):
        assert printed(value, text)


def test_random_reader_random_case_test_and_interval_match_published_values(van_dyke):
    test = van_dyke.random_readers
    (comparison,) = van_dyke.comparisons
    assert comparison.modalities == ("1", "2")
    # RJAFROC $RRRC$FTests and $RRRC$ciDiffTrt
    assert printed(test.statistic, "4.4563187") and printed(comparison.f, "4.4563187")
    assert printed(test.df[1], "15.259675") and printed(comparison.df, "15.259675")
    assert printed(test.p, "0.051665686") and printed(comparison.p, "0.051665686")
    assert printed(comparison.ci[0], "-0.087959499")
    assert printed(comparison.ci[1], "0.00035885444")
    # MRMCAOV: StdErr and t
    assert printed(comparison.std_err, "0.02074862")
    assert printed(comparison.difference / comparison.std_err, "-2.110999")
    # IOWA: F 4.46, Pr > F 0.0517, df(error term) 15.26, CI (-0.08796, 0.00036)
    assert printed(test.statistic, "4.46") and printed(test.p, "0.0517") and printed(test.df[1], "15.26")
    assert printed(comparison.ci[0], "-0.08796") and printed(comparison.ci[1], "0.00036")


def test_single_modality_intervals_match_the_iowa_software(van_dyke):
    published = {"1": ("0.03317360", "12.74", "0.82522360", "0.96885048"),
                 "2": ("0.02156637", "12.71", "0.89413783", "0.98753689")}
    for modality, (std_err, df, low, high) in published.items():
        interval = van_dyke.intervals[modality]
        assert printed(interval.std_err, std_err) and printed(interval.df, df)
        assert printed(interval.ci[0], low) and printed(interval.ci[1], high)
        assert interval.estimate == van_dyke.mean_auc[modality]


def test_fixed_reader_chi_square_test_matches_published_values(van_dyke):
    test = van_dyke.fixed_readers
    assert test.df == (1,)
    assert printed(test.statistic, "5.4759532") and printed(test.p, "0.019279843")  # RJAFROC $FRRC$FTests
    assert printed(test.statistic, "5.47595") and printed(test.p, "0.0193")  # IOWA


def test_sensitivity_and_specificity_at_calls_match_mrmcaov():
    """MRMCaov's binary_sens with binary_rating = rating >= 3 (docs/jss/MRMCaov.tex), to its 3 printed decimals."""
    readings = pd.read_csv(VAN_DYKE, dtype=str)
    readings["call"] = (readings["rating"].astype(int) >= 3).astype(int).astype(str)
    result = analyse(readings)
    published = {"1": ["0.889", "0.778", "0.822", "0.933", "0.689"], "2": ["0.978", "0.822", "0.911", "1", "0.889"]}
    for modality, values in published.items():
        assert all(printed(result.sensitivity[modality][r], v) for r, v in zip(result.readers, values))
    assert printed(np.mean(list(result.sensitivity["1"].values())), "0.8222222")
    assert printed(np.mean(list(result.sensitivity["2"].values())), "0.9200000")
    reader_1 = readings[(readings.reader == "1") & (readings.modality == "1") & (readings.truth == "0")]
    assert result.specificity["1"]["1"] == (reader_1["rating"].astype(int) < 3).mean()
    assert "average sensitivity 0.822 and specificity" in result.summary()


def test_the_order_of_the_rows_does_not_matter(van_dyke):
    shuffled = pd.read_csv(VAN_DYKE, dtype=str).sample(frac=1, random_state=7)
    assert analyse(shuffled).to_json() == van_dyke.to_json()


# --- a study worked by hand ---------------------------------------------------------------------------------------
# Readers A and B rate six cases (c1-c3 abnormal, c4-c6 normal) in modalities X and Y.
HAND = {("X", "A"): [5, 4, 2, 3, 1, 1], ("Y", "A"): [4, 4, 2, 2, 1, 3],
        ("X", "B"): [3, 5, 4, 1, 2, 4], ("Y", "B"): [5, 5, 5, 1, 1, 1]}
HAND_TRUTH = [1, 1, 1, 0, 0, 0]
F = Fraction


def hand_readings() -> pd.DataFrame:
    rows = [(reader, f"c{k + 1}", HAND_TRUTH[k], modality, rating)
            for (modality, reader), ratings in HAND.items() for k, rating in enumerate(ratings)]
    return pd.DataFrame(rows, columns=["reader", "case", "truth", "modality", "rating"])


def test_aucs_of_the_hand_worked_study():
    # AUC = pairs (abnormal, normal) ranked right, ties half, over 3 x 3 = 9 pairs.
    # X,A: 5 beats 3,1,1 (3); 4 beats all (3); 2 beats 1,1 (2): 8/9.
    # Y,A: 4 and 4 beat 2,1,3 (3 + 3); 2 ties 2, beats 1 (1.5): 7.5/9 = 5/6.
    # X,B: 3 beats 1,2 (2); 5 beats all (3); 4 beats 1,2, ties 4 (2.5): 7.5/9 = 5/6.   Y,B: 1.
    expected = {"X": {"A": F(8, 9), "B": F(5, 6)}, "Y": {"A": F(5, 6), "B": F(1)}}
    result = analyse(hand_readings())
    for modality, by_reader in expected.items():
        assert result.auc[modality] == pytest.approx({r: float(v) for r, v in by_reader.items()})
    assert result.mean_auc == pytest.approx({"X": float(F(31, 36)), "Y": float(F(33, 36))})
    assert result.comparisons[0].difference == pytest.approx(float(F(-1, 18)))


# Each AUC with one case left out, in case order c1..c6 (e.g. X,A without c3, the abnormal 2: 6/6 = 1;
# without c4, the normal 3: 6/6 = 1; without c5: 5 and 4 beat 1 only (2 + 2), 2 beats 1 (1): 5/6).
HAND_JACKKNIFE = {
    ("X", "A"): [F(5, 6), F(5, 6), F(1), F(1), F(5, 6), F(5, 6)],
    ("Y", "A"): [F(3, 4), F(3, 4), F(1), F(5, 6), F(3, 4), F(11, 12)],
    ("X", "B"): [F(11, 12), F(3, 4), F(5, 6), F(3, 4), F(3, 4), F(1)],
    ("Y", "B"): [F(1)] * 6,
}


def jackknife_cov(a: list[Fraction], b: list[Fraction]) -> Fraction:
    """(K - 1)/K * sum (a_k - mean a)(b_k - mean b): the jackknife covariance, exactly."""
    k = len(a)
    mean_a, mean_b = sum(a) / k, sum(b) / k
    return F(k - 1, k) * sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))


def test_jackknife_and_or_covariances_of_the_hand_worked_study():
    for key, expected in HAND_JACKKNIFE.items():
        assert jackknife_auc(HAND_TRUTH, HAND[key]) == pytest.approx([float(v) for v in expected]), key
    j = HAND_JACKKNIFE
    # Cov1 by hand: X,A deviates from its mean 8/9 by (-1,-1,2,2,-1,-1)/18 and Y,A from 5/6 by (-1,-1,2,0,-1,1)/12;
    # the products sum to 6/216, times 5/6: 5/216. Reader B's Y AUC never moves, so its Cov1 is 0: mean 5/432.
    assert jackknife_cov(j["X", "A"], j["Y", "A"]) == F(5, 216)
    cov1 = F(5, 432)
    var = sum(jackknife_cov(v, v) for v in j.values()) / 4
    cov2 = (jackknife_cov(j["X", "A"], j["X", "B"]) + jackknife_cov(j["Y", "A"], j["Y", "B"])) / 2
    cov3 = (jackknife_cov(j["X", "A"], j["Y", "B"]) + jackknife_cov(j["Y", "A"], j["X", "B"])) / 2
    result = analyse(hand_readings())
    c = result.covariances
    assert (c.var, c.cov1, c.cov2, c.cov3) == pytest.approx((float(var), float(cov1), float(cov2), float(cov3)))

    # The OR test by its formulas: reader-averaged AUCs 31/36 and 33/36, interaction residuals +-2/36.
    ms_t, ms_tr = F(1, 324), F(1, 81)
    error = ms_tr + 2 * max(cov2 - cov3, 0)
    ddf = float(error**2 / ms_tr**2)  # (I - 1)(J - 1) = 1
    (comparison,) = result.comparisons
    assert (result.ms_t, result.ms_tr) == pytest.approx((float(ms_t), float(ms_tr)))
    assert comparison.f == pytest.approx(float(ms_t / error))
    assert comparison.df == pytest.approx(ddf)
    assert comparison.p == pytest.approx(stats.f.sf(float(ms_t / error), 1, ddf))
    assert comparison.std_err == pytest.approx(float(error) ** 0.5)  # sqrt(2/J * error), J = 2


def test_pseudovalues_give_the_jackknife_covariance():
    rng = np.random.default_rng(3)
    jackknife = rng.random((2, 3, 10))
    deviations = (jackknife - jackknife.mean(axis=2, keepdims=True)).reshape(6, 10)
    expected = 9 / 10 * deviations @ deviations.T
    assert pseudovalue_covariance(jackknife).reshape(6, 6) == pytest.approx(expected)
    one_modality = or_covariances(pseudovalue_covariance(jackknife[:1]))
    assert np.isnan(one_modality.cov1) and np.isnan(one_modality.cov3) and np.isfinite(one_modality.cov2)


# --- properties ---------------------------------------------------------------------------------------------------
@st.composite
def rated_cases(draw, min_each: int = 1):
    """Truth with at least `min_each` abnormal and normal cases, and integer ratings (ties likely)."""
    n_abnormal = draw(st.integers(min_each, 8))
    n_normal = draw(st.integers(min_each, 8))
    truth = [1] * n_abnormal + [0] * n_normal
    ratings = draw(st.lists(st.integers(-5, 5), min_size=len(truth), max_size=len(truth)))
    order = draw(st.permutations(range(len(truth))))
    return [truth[i] for i in order], [ratings[i] for i in order]


@settings(max_examples=60, deadline=None)
@given(rated_cases())
def test_auc_is_mann_whitney_u_over_pairs_and_flips_with_negated_ratings(case):
    truth, ratings = case
    truth_array, ratings_array = np.array(truth, bool), np.array(ratings, float)
    u = stats.mannwhitneyu(ratings_array[truth_array], ratings_array[~truth_array]).statistic
    assert auc(truth, ratings) == pytest.approx(u / (truth_array.sum() * (~truth_array).sum()))
    assert auc(truth, [-r for r in ratings]) == pytest.approx(1 - auc(truth, ratings))


@settings(max_examples=60, deadline=None)
@given(rated_cases(), st.floats(0.1, 10), st.floats(-100, 100))
def test_auc_ignores_strictly_increasing_transforms_of_the_ratings(case, scale, shift):
    truth, ratings = case
    assert auc(truth, np.exp(np.array(ratings) / 3)) == pytest.approx(auc(truth, ratings))
    assert auc(truth, scale * np.array(ratings) + shift) == pytest.approx(auc(truth, ratings))


@settings(max_examples=60, deadline=None)
@given(rated_cases(min_each=2))
def test_jackknife_auc_equals_recomputing_without_each_case(case):
    truth, ratings = case
    brute = [auc(np.delete(truth, k), np.delete(ratings, k)) for k in range(len(truth))]
    assert jackknife_auc(truth, ratings) == pytest.approx(brute)


def test_sensitivity_and_specificity_from_calls():
    assert sensitivity_specificity([1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 1]) == (0.75, 0.5)
    with pytest.raises(StudyError, match="0 normal"):
        sensitivity_specificity([1, 1], [1, 0])


# --- bad input: one line that says what to fix --------------------------------------------------------------------
def _van_dyke_rows() -> pd.DataFrame:
    return pd.read_csv(VAN_DYKE, dtype=str)


def _without_first_row(table: pd.DataFrame) -> pd.DataFrame:
    return table.iloc[1:]


def _truth_flipped_in_one_row(table: pd.DataFrame) -> pd.DataFrame:
    table.loc[0, "truth"] = "1"
    return table


def _one_class(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.truth == "1"]


def _duplicated(table: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([table, table.iloc[:1]])


def _set(column: str, value):
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[5, column] = value
        return table

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop(columns=["modality"]), "lack the column\\(s\\) modality"),
        (lambda t: t.iloc[:0], "no rows"),
        (_truth_flipped_in_one_row, "case 1 has truth 0 in some rows and 1 in others"),
        (_without_first_row, "reader 1 has no rating of case 1 in modality 1 \\(1 readings missing"),
        (_one_class, "0 normal \\(truth 0\\)"),
        (_duplicated, "reader 1 rated case 1 in modality 1 more than once"),
        (_set("rating", "high"), "rating must be a number; reader 3 has 'high' for case 1 in modality 2"),
        (_set("truth", "2"), "truth must be 0 \\(normal\\) or 1 \\(abnormal\\)"),
        (_set("reader", " "), "reading 6 \\(counting rows after the header\\) has no reader"),
        (lambda t: t[t.reader == "1"], "only reader 1"),
        (lambda t: t.assign(call="yes"), "call must be 1 \\(abnormal\\) or 0"),
    ],
)
def test_bad_readings_get_one_actionable_line(edit, message):
    with pytest.raises(StudyError, match=message) as error:
        analyse(edit(_van_dyke_rows()))
    assert "\n" not in str(error.value)


def test_one_abnormal_case_is_too_few_for_the_jackknife():
    table = _van_dyke_rows()
    table = table[(table.truth == "0") | (table.case == "70")]
    with pytest.raises(StudyError, match="1 abnormal .* at least 2 of each"):
        analyse(table)


def test_unreadable_files_get_one_line(tmp_path):
    with pytest.raises(StudyError, match="is not a file"):
        read_readings(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(StudyError, match="is not a readable CSV"):
        read_readings(tmp_path / "empty.csv")


def test_one_modality_gets_its_interval_and_no_comparison():
    result = analyse(_van_dyke_rows().query("modality == '2'"))
    assert result.to_json()["comparisons"] == [] and result.random_readers is None
    assert result.intervals["2"].ci == pytest.approx((0.8941378312, 0.9875368870))  # IOWA (c), treatment 2
    assert "in one modality" in result.summary()


def test_readers_who_agree_exactly_leave_the_test_undefined_and_the_json_strict():
    rows = [(r, f"c{k}", int(k < 3), m, float(k < 3)) for r in "AB" for m in "XY" for k in range(6)]
    result = analyse(pd.DataFrame(rows, columns=["reader", "case", "truth", "modality", "rating"]))
    (comparison,) = result.to_json()["comparisons"]
    assert comparison["difference"] == 0 and comparison["p"] is None and comparison["f"] is None
    json.dumps(result.to_json(), allow_nan=False)
    assert "cannot be tested" in result.summary()


def test_three_modalities_show_the_global_test_before_the_pairs():
    rng = np.random.default_rng(3)
    rows = [(r, f"c{k}", int(k < 6), m, float(rng.normal(k < 6, 1.0 + i))) for r in "ABCD"
            for i, m in enumerate("XYZ") for k in range(12)]
    result = analyse(pd.DataFrame(rows, columns=["reader", "case", "truth", "modality", "rating"]))
    summary = result.summary()
    test = result.random_readers
    glob = summary.index(f"All 3 modalities together (F = {test.statistic:.3f}")
    assert glob < summary.index("Readers' average AUC was") and len(result.comparisons) == 3
    assert "nan" not in summary.lower()


def test_intervals_are_cut_to_the_figures_limits_and_never_read_nan():
    from pneumonia.studies.mrmc import _interval_text

    assert _interval_text((0.93, 1.04)) == "95% interval 0.930 to 1.000, cut at 0 and 1, the limits of the figure"
    assert _interval_text((-1.2, 0.3), -1.0) == "95% interval -1.000 to 0.300, cut at -1 and 1, the limits of the figure"
    assert _interval_text((0.2, 0.4)) == "95% interval 0.200 to 0.400"
    assert "nan" not in _interval_text((float("nan"), float("nan")))
    # Readers who agree exactly: the summary says why there is no interval, in words.
    rows = [(r, f"c{k}", int(k < 3), m, float(k < 3)) for r in "AB" for m in "XY" for k in range(6)]
    summary = analyse(pd.DataFrame(rows, columns=["reader", "case", "truth", "modality", "rating"])).summary()
    assert "nan" not in summary.lower() and "no interval" in summary


# --- the command line ---------------------------------------------------------------------------------------------
def test_study_analyse_writes_exactly_the_documented_json(tmp_path, capsys, van_dyke):
    out = tmp_path / "out.json"
    assert main(["study", "analyse", str(VAN_DYKE), "--json", str(out)]) == 0
    printed_lines = capsys.readouterr().out
    assert "readers' average AUC 0.897" in printed_lines
    assert "the difference (1 minus 2), -0.044 (95% interval -0.088 to 0.000), could be chance (p = 0.052)" in (
        printed_lines)
    data = json.loads(out.read_text())
    assert list(data) == ["readers", "cases", "positives", "negatives", "modalities", "auc", "mean_auc",
                          "comparisons"]
    assert (data["readers"], data["cases"], data["positives"], data["negatives"]) == (5, 114, 45, 69)
    assert data["modalities"] == ["1", "2"]
    assert data["auc"] == van_dyke.auc and data["mean_auc"] == van_dyke.mean_auc
    (comparison,) = data["comparisons"]
    assert list(comparison) == ["modalities", "difference", "std_err", "df", "f", "p", "ci"]
    c = van_dyke.comparisons[0]
    assert comparison == {"modalities": ["1", "2"], "difference": c.difference, "std_err": c.std_err, "df": c.df,
                          "f": c.f, "p": c.p, "ci": list(c.ci)}
    assert comparison["difference"] == data["mean_auc"]["1"] - data["mean_auc"]["2"]


def test_three_modalities_give_one_comparison_per_sorted_pair(tmp_path, capsys):
    table = _van_dyke_rows()
    third = table[table.modality == "2"].assign(modality="0")
    third["rating"] = (third["rating"].astype(int) + third["case"].astype(int) % 3 - 1).astype(str)
    path = tmp_path / "three.csv"
    pd.concat([table, third]).to_csv(path, index=False)
    out = tmp_path / "out.json"
    assert main(["study", "analyse", str(path), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["modalities"] == ["0", "1", "2"]
    assert [c["modalities"] for c in data["comparisons"]] == [["0", "1"], ["0", "2"], ["1", "2"]]
    for c in data["comparisons"]:
        a, b = c["modalities"]
        assert c["difference"] == pytest.approx(data["mean_auc"][a] - data["mean_auc"][b])
        assert c["f"] == pytest.approx((c["difference"] / c["std_err"]) ** 2)
        assert c["p"] == pytest.approx(2 * stats.t.sf(abs(c["difference"]) / c["std_err"], c["df"]))
        assert c["ci"][0] < c["difference"] < c["ci"][1]
    assert capsys.readouterr().out.count("Readers' average AUC was") == 3


def test_bad_readings_exit_2_with_one_error_line(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    _van_dyke_rows().drop(columns=["truth"]).to_csv(path, index=False)
    assert main(["study", "analyse", str(path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["error: the readings lack the column(s) truth; give one row per reading with columns "
                   "reader,case,truth,modality,rating."]


def test_python_m_pneumonia_study_analyse_end_to_end(tmp_path, van_dyke):
    out = tmp_path / "out.json"
    result = subprocess.run([sys.executable, "-m", "pneumonia", "study", "analyse", str(VAN_DYKE), "--json", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "could be chance (p = 0.052)" in result.stdout
    assert json.loads(out.read_text()) == json.loads(json.dumps(van_dyke.to_json()))
