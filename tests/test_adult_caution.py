"""The adult caution without metadata (issue 30): a film with no age that lies far from the training children in
the network's grid features is scored with a caution that says so; a DICOM's own age and a refusal take precedence."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pneumonia.screening.adult_caution import AdultConfig, fit_adult_caution, with_adult_caution
from pneumonia.wording import ADULT_LOOK

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "assets" / "samples").glob("*.jpeg"))


def test_threshold_is_the_validation_quantile_and_far_films_are_flagged():
    rng = np.random.default_rng(0)
    fit = np.abs(rng.normal(3, 1, (400, 20)))
    labels = np.arange(400) % 2
    fit[labels == 1] += 1.0
    validation = np.abs(rng.normal(3, 1, (200, 20)))
    caution = fit_adult_caution(fit, labels, validation, AdultConfig(components=8, quantile=0.95))
    assert np.mean(caution.looks_adult(validation)) == pytest.approx(0.05, abs=0.006)
    far = np.abs(rng.normal(12, 1, (10, 20)))
    assert caution.looks_adult(far).all()
    assert caution.config.components == 8 and caution.components.shape == (8, 20)


def test_the_caution_goes_first_only_where_it_applies():
    assert with_adult_caution("ok", (), True, {}) == ("caution", (ADULT_LOOK,))
    assert with_adult_caution("caution", ("low resolution",), True, {}) == ("caution", (ADULT_LOOK, "low resolution"))
    assert with_adult_caution("refused", ("blank",), True, {}) == ("refused", ("blank",))  # a refusal stays
    assert with_adult_caution("ok", (), True, {"age_band": "1–5 years"}) == ("ok", ())  # the header's age rules
    assert with_adult_caution("ok", (), False, {}) == ("ok", ())
    assert ADULT_LOOK.startswith("looks like an adult's chest film: the model was trained on children aged 1–5 years;")


@pytest.mark.integration
def test_committed_gate_carries_the_adult_caution_and_spares_the_sample_children(committed_predictor):
    adult = committed_predictor.gate.adult
    assert adult is not None and adult.config == AdultConfig()
    results = committed_predictor.screen([(p.name, p) for p in SAMPLES])
    assert not any(ADULT_LOOK in r.reason for r in results), [r.reason for r in results]


@pytest.mark.integration
def test_most_adult_development_films_are_cautioned_when_present(committed_predictor):
    """Measured, not fitted: the 24 adult films beside the data set (never committed) chose among a few settings;
    the chosen one, its threshold on validation and its stress copies, told 13 of them they look like an adult's film;
    2 more are refused as unlike the training films and the DICOM is cautioned by its own age. Skips where they are
    absent."""
    data = os.environ.get("PNEUMONIA_DATA")
    folder = Path(data).parent / "adult_dev" if data else None
    if folder is None or not folder.is_dir():
        pytest.skip("the adult development films are not here (../shared/data/adult_dev)")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png", ".dcm"))
    results = committed_predictor.screen([(p.name, p) for p in paths])
    told = [r for r in results if ADULT_LOOK in r.reason]
    assert len(told) >= 0.5 * len(paths)
    assert sum(r.status != "ok" for r in results) >= 0.65 * len(paths)
    assert all(r.status == "caution" and r.probability is not None for r in told)
    dicom = [r for r, p in zip(results, paths) if p.suffix == ".dcm"]
    assert all(ADULT_LOOK not in r.reason and "adult patient" in r.reason for r in dicom)  # its age says so
