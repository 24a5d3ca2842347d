"""Site calibration: the threshold from a site's normal films, its price, cross-fitting, and the CLI."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumonia.cli import EXIT_SOME_REFUSED, main
from pneumonia.decision.site import SiteCalibrationError, calibrate_site, cross_fit, site_threshold

pytestmark = pytest.mark.score_sensitive


def test_threshold_flags_exactly_the_allowed_share_of_distinct_scores():
    scores = np.linspace(0.01, 1.0, 100)
    threshold = site_threshold(scores, 0.10)
    assert np.sum(scores >= threshold) == 10
    assert scores[-11] < threshold <= scores[-10]


def test_ties_at_the_cut_are_not_flagged_beyond_the_share():
    scores = np.array([0.2] * 30 + [0.9] * 5 + [0.95] * 5)
    threshold = site_threshold(scores, 0.10)  # 4 allowed; the five 0.95s cannot all be flagged
    assert np.sum(scores >= threshold) == 0
    assert threshold > 0.95


@pytest.mark.parametrize(
    ("scores", "share", "message"),
    [
        (np.linspace(0, 1, 19), 0.1, "19 normal films were scored; at least 20"),
        (np.ones(40), 0.1, "does not separate this site's normal films"),
        (np.linspace(0, 1, 40), 0.0, "must lie between 0 and 1"),
        (np.linspace(0, 1, 40), 1.0, "must lie between 0 and 1"),
    ],
)
def test_impossible_requests_say_why(scores, share, message):
    with pytest.raises(SiteCalibrationError, match=re.escape(message)):
        site_threshold(scores, share)


def test_calibration_prices_the_threshold_on_validation_pneumonias():
    normals = np.linspace(0.0, 0.5, 50)  # 5 allowed above the threshold: 0.449.. and up
    labels = np.array([1, 1, 1, 1, 0, 0])
    probabilities = np.array([0.3, 0.46, 0.9, 0.99, 0.1, 0.8])
    site = calibrate_site(normals, 0.10, labels, probabilities, default_threshold=0.2, n_refused=3)
    assert site.n_scored == 50 and site.n_flagged == 5 and site.n_refused == 3
    assert 0.448 < site.threshold <= 0.45
    assert site.validation_sensitivity == pytest.approx(3 / 4)
    assert site.default_validation_sensitivity == pytest.approx(1.0)
    assert "flags 5 of 50 normal films (10.0%)" in site.summary()
    assert "3 refused by the input gate" in site.summary()
    assert site.rule.startswith("site-derived: flags 5 of 50")


def test_a_threshold_just_below_one_is_never_printed_as_one_and_is_flagged_as_poor_separation():
    from pneumonia.formatting import format_threshold

    assert format_threshold(0.999) == "0.999" and format_threshold(0.99963) == "0.99963"
    normals = np.concatenate([np.linspace(0.9, 0.9999, 30), [0.99995] * 3])
    site = calibrate_site(normals, 0.10, np.array([1, 1]), np.array([0.5, 0.99999]), default_threshold=0.8)
    assert site.threshold > 0.999
    assert "site threshold 0.99" in site.summary() and "site threshold 1.000" not in site.summary()
    assert "tells them apart from pneumonia poorly" in site.summary()


def test_cross_fit_keeps_patients_apart_and_fits_on_one_half_only():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(40)], 2)
    normals = rng.uniform(0, 1, groups.size)
    positives = rng.uniform(0.5, 1, 30)
    rows = cross_fit(normals, groups, positives, 0.10, seed=3)
    assert [r["fold"] for r in rows] == [1, 2]
    assert rows[0]["n_fit"] == rows[1]["n_held_out"] == 40 and rows[0]["n_fit"] + rows[0]["n_held_out"] == 80
    # Reconstruct the halves: the fit half's own scores give the threshold; the other half is only measured.
    shuffled = np.random.default_rng(3).permutation(np.unique(groups))
    first = np.isin(groups, shuffled[:20])
    assert rows[0]["threshold"] == site_threshold(normals[first], 0.10)
    assert rows[0]["specificity"] == pytest.approx(np.mean(normals[~first] < rows[0]["threshold"]))
    assert rows[1]["sensitivity"] == pytest.approx(np.mean(positives >= rows[1]["threshold"]))
    moved = normals.copy()
    moved[~first] = 0.0  # changing the held-out half leaves fold 1's threshold alone
    assert cross_fit(moved, groups, positives, 0.10, seed=3)[0]["threshold"] == rows[0]["threshold"]


def test_cli_site_threshold_flags_exactly_what_it_reported_when_applied_back(committed_predictor, real_data_dir, tmp_path, capsys):
    """The round trip a site makes: calibrate-site prints a threshold and a count; predict --threshold on the same
    films flags exactly that many. Both runs score the films themselves, so no stored score is compared."""
    normals = sorted((real_data_dir / "test" / "NORMAL").iterdir())[:30]
    folder = tmp_path / "site"
    folder.mkdir()
    for path in normals:
        (folder / path.name).write_bytes(path.read_bytes())
    Image.new("RGB", (300, 300), (200, 30, 30)).save(folder / "photo.png")  # refused, so not used
    assert main(["calibrate-site", str(folder), "--max-flagged", "0.1"]) == 0
    out = capsys.readouterr().out
    flagged, scored = map(int, re.search(r"flags (\d+) of (\d+) normal films", out).groups())
    assert scored == 30 and flagged <= 3  # at most 10% of 30
    assert "1 refused by the input gate, not used" in out
    printed = re.search(r"--threshold (\S+)", out).group(1)
    assert re.fullmatch(r"0\.\d{3,9}", printed)  # a short decimal, the number that is applied
    rows = tmp_path / "rows.csv"
    assert main(["predict", str(folder), "--threshold", printed, "--csv", str(rows)]) == EXIT_SOME_REFUSED
    table = pd.read_csv(rows)
    assert (table.status != "refused").sum() == 30
    assert (table.label == "PNEUMONIA").sum() == flagged
    assert set(table.threshold) == {float(printed)}