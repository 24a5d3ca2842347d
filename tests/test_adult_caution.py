"""The adult caution without metadata (issue 30): a film with no age that lies far from the training children, first
in the network's own grid features and then in a pretrained backbone's, is scored with a caution that says so; a
DICOM's own age and a refusal take precedence."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pneumonia.io.dataset import discover_split, find_split
from pneumonia.io.images import read_input, to_model_input
from pneumonia.screening.adult_caution import (
    TRUNK_WEIGHTS,
    AdultConfig,
    adult_features,
    fit_adult_caution,
    log_features,
    with_adult_caution,
)
from pneumonia.training.gate_fit import adult_fit_features
from pneumonia.training.stress import stress_shifts
from pneumonia.wording import ADULT_LOOK

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "assets" / "samples").glob("*.jpeg"))


def _blobs(rng, n, centre, width=20):
    return np.abs(rng.normal(centre, 1, (n, width)))


def test_each_stage_thresholds_at_its_validation_quantile_and_far_films_are_flagged():
    rng = np.random.default_rng(0)
    labels = np.arange(400) % 2
    fit = _blobs(rng, 400, 3)
    fit[labels == 1] += 1.0
    validation = _blobs(rng, 200, 3)
    config = AdultConfig(prescreen_components=8, prescreen_quantile=0.8, components=6, quantile=0.95)
    caution = fit_adult_caution((fit, labels, validation), (fit, labels, validation), config)
    assert np.mean(caution.prescreen.far(log_features(validation))) == pytest.approx(0.20, abs=0.006)
    assert np.mean(caution.backbone.far(validation)) == pytest.approx(0.05, abs=0.006)
    far = _blobs(rng, 10, 12)
    assert caution.prescreen.far(log_features(far)).all() and caution.backbone.far(far).all()
    assert caution.config.prescreen_components == 8 and caution.prescreen.components.shape == (8, 20)
    assert caution.config.components == 6 and caution.backbone.components.shape == (6, 20)


def test_the_backbone_reads_only_the_films_past_the_prescreen():
    """The cascade is what keeps the gate's cost: a child the prescreen lets off never reaches the backbone, and a
    film is told it looks adult only when both stages find it far."""
    rng = np.random.default_rng(1)
    labels = np.arange(400) % 2
    near_fit, near_val = _blobs(rng, 400, 3), _blobs(rng, 200, 3)
    caution = fit_adult_caution((near_fit, labels, near_val), (near_fit, labels, near_val),
                                AdultConfig(prescreen_components=8, components=8, quantile=0.99))
    grids = np.concatenate([_blobs(rng, 3, 3), _blobs(rng, 3, 12)])  # three near the children, three far
    backbone = np.concatenate([_blobs(rng, 1, 12), _blobs(rng, 2, 3), _blobs(rng, 1, 3), _blobs(rng, 2, 12)])
    asked = []

    def features(indices):
        asked.append(indices.tolist())
        return backbone[indices]

    flags = caution.cascade(grids, features)
    assert caution.prescreen.far(log_features(grids)).tolist() == [False] * 3 + [True] * 3
    assert asked == [[3, 4, 5]]  # the backbone is asked once, for the far three only
    assert flags.tolist() == [False, False, False, False, True, True]  # film 0 is far to the backbone alone: spared
    asked.clear()
    assert not caution.cascade(_blobs(rng, 4, 3), features).any() and asked == []  # nobody past: no backbone pass


def test_the_fit_sees_each_film_and_its_six_stress_copies_with_its_label(tiny_data_dir):
    samples = discover_split(find_split(tiny_data_dir, "train"))[:5]
    paths, labels = [s.path for s in samples], np.array([s.label for s in samples])
    features, repeated = adult_fit_features(paths, labels, AdultConfig(), chunk=3)
    assert features.shape == (7 * 5, 360)  # 40 channels x 3 x 3 cells, for the clean films and six copies
    # chunk by chunk: the clean films, then each copy, with the chunk's labels each time
    assert repeated.tolist() == [*labels[:3].tolist() * 7, *labels[3:].tolist() * 7]
    clean = adult_features(np.stack([to_model_input(read_input(p).grey, 224) for p in paths[:3]]), AdultConfig())
    np.testing.assert_allclose(features[:3], clean, rtol=1e-4, atol=1e-4)
    assert not np.allclose(features[3:6], clean, atol=1e-3)  # a stress copy is a different film to the backbone


def test_the_shipped_trunk_is_the_converted_imagenet_backbone():
    """The 0.25 MB trunk the package ships holds exactly the converted backbone's stem and blocks 0-4."""
    from tools.adult_trunk import trunk_arrays
    from tools.convert_backbone import DEFAULT_OUT

    if not DEFAULT_OUT.is_file():
        pytest.skip(f"the converted ImageNet weights are not here ({DEFAULT_OUT}); `python -m tools.convert_backbone`")
    expected = trunk_arrays(DEFAULT_OUT, AdultConfig().last_block)
    with np.load(TRUNK_WEIGHTS) as shipped:
        assert sorted(shipped.files) == sorted(expected)
        for name, array in expected.items():
            np.testing.assert_array_equal(shipped[name], array, err_msg=name)


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
def test_noise_blur_and_exposure_do_not_make_a_child_look_adult(committed_predictor):
    """Why the distance is fitted on stress copies too: the backbone's early blocks move with pixel noise and blur as
    far as with age. Fitted on clean films alone, most noisy copies of validation children crossed the same line."""
    adult = committed_predictor.gate.adult
    films = np.stack([to_model_input(read_input(p).grey, adult.config.size) for p in SAMPLES])
    for name, copies in stress_shifts(films[..., None]).items():
        assert not adult.backbone.far(adult_features(copies[..., 0], adult.config)).any(), name


@pytest.mark.integration
def test_most_adult_development_films_are_cautioned_when_present(committed_predictor):
    """Measured, not fitted: the 24 adult films beside the data set (never committed) chose among a few settings;
    the chosen cascade told 19 of them they look like an adult's film (all 24 pass its prescreen); 2 more are refused
    as unlike the training films and the DICOM is cautioned by its own age (docs/gate_benchmark.md). The bounds
    leave two films of slack for other CPUs. Skips where they are absent."""
    data = os.environ.get("PNEUMONIA_DATA")
    folder = Path(data).parent / "adult_dev" if data else None
    if folder is None or not folder.is_dir():
        pytest.skip("the adult development films are not here (../shared/data/adult_dev)")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png", ".dcm"))
    results = committed_predictor.screen([(p.name, p) for p in paths])
    told = [r for r in results if ADULT_LOOK in r.reason]
    assert len(told) >= 17
    assert sum(r.status != "ok" for r in results) >= 20
    assert all(r.status == "caution" and r.probability is not None for r in told)
    dicom = [r for r, p in zip(results, paths) if p.suffix == ".dcm"]
    assert all(ADULT_LOOK not in r.reason and "adult patient" in r.reason for r in dicom)  # its age says so
