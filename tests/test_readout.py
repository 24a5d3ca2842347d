"""The explanation readout: LIME's seed stability, the sentence bands, and where a label flips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import synthetic_xray

from pneumonia.explain import LimeExplanation, LimeSettings, explain_lime
from pneumonia.readout import (
    Readout,
    agreement_sentence,
    explanation_readout,
    flip_sentence,
    lime_stability,
    stability_sentence,
    top_k_jaccard,
)

FAST = LimeSettings(num_samples=80, n_segments=12, batch_size=80, seed=3)
SEGMENTS = np.arange(16).reshape(4, 4)


def explanation(weights, segments=SEGMENTS) -> LimeExplanation:
    return LimeExplanation(segments, np.asarray(weights, dtype=float), probability=0.5, score=0.9)


@pytest.fixture(scope="module")
def tiny_image(tiny_predictor) -> np.ndarray:
    return synthetic_xray(1, seed=7, size=tiny_predictor.image_size).astype(np.float32)


def test_jaccard_compares_the_top_k_positive_regions():
    first = explanation([5, 4, 3, 0, -1] + [0] * 11)  # top 2: {0, 1}
    second = explanation([0, 4, 5, 0, 9] + [0] * 11)  # top 2: {4, 2}
    third = explanation([4, 5, 0, 0, 0] + [0] * 11)  # top 2: {1, 0}
    assert top_k_jaccard([first, third], top_k=2) == 1.0
    assert top_k_jaccard([first, second], top_k=2) == 0.0
    assert top_k_jaccard([first, second, third], top_k=2) == pytest.approx(1 / 3)
    assert top_k_jaccard([first, second], top_k=3) == pytest.approx(2 / 4)  # {0, 1, 2} vs {4, 2, 1}
    nothing = explanation([-1.0] * 16)
    assert top_k_jaccard([nothing, nothing]) == 1.0  # no region for PNEUMONIA in either: they agree


def test_jaccard_refuses_explanations_over_different_superpixels():
    with pytest.raises(ValueError, match="different superpixels"):
        top_k_jaccard([explanation([1] * 16), explanation([1] * 16, SEGMENTS.T)])
    with pytest.raises(ValueError, match="at least two"):
        top_k_jaccard([explanation([1] * 16)])


def test_identical_explanations_are_perfectly_stable(monkeypatch):
    seeds = []

    def fake_lime(predictor, image, settings):
        seeds.append(settings.seed)
        return explanation(np.linspace(1, -1, 16))

    monkeypatch.setattr("pneumonia.explain.explain_lime", fake_lime)
    assert lime_stability(None, np.zeros((4, 4)), FAST, seeds=(0, 1, 2)) == 1.0
    assert seeds == [0, 1, 2]


def test_seeds_share_one_segmentation_on_a_real_model(tiny_predictor, tiny_image):
    runs = [explain_lime(tiny_predictor, tiny_image, dataclasses.replace(FAST, seed=s)) for s in (0, 1, 2)]
    assert all(np.array_equal(run.segments, runs[0].segments) for run in runs)
    assert not np.allclose(runs[0].weights, runs[1].weights)
    assert lime_stability(tiny_predictor, tiny_image, FAST) == pytest.approx(top_k_jaccard(runs))


@pytest.mark.parametrize(
    "jaccard, word",
    [(1.0, "stable"), (0.8, "stable"), (0.7999, "stable"), (0.79, "fairly stable"), (0.5, "fairly stable"),
     (0.49, "unstable"), (0.0, "unstable")],
)
def test_stability_bands(jaccard, word):
    sentence = stability_sentence(jaccard)
    assert sentence.startswith(f"LIME's top 5 regions are {word} across 3 seeds (mean Jaccard overlap {jaccard:.2f})")
    assert ("read its map with care" in sentence) == (word == "unstable")


def test_stability_sentence_example():
    assert stability_sentence(0.87) == "LIME's top 5 regions are stable across 3 seeds (mean Jaccard overlap 0.87)."


@pytest.mark.parametrize(
    "r, verdict",
    [(1.0, "agree strongly"), (0.5, "agree strongly"), (0.49, "agree somewhat"), (0.2, "agree somewhat"),
     (0.19, "agree hardly at all"), (0.0, "agree hardly at all"), (-0.19, "agree hardly at all"),
     (-0.2, "disagree"), (-1.0, "disagree")],
)
def test_agreement_bands(r, verdict):
    assert agreement_sentence(r).startswith(f"LIME and Grad-CAM {verdict} (Spearman {r:.2f}): ")


def test_agreement_sentence_example():
    assert agreement_sentence(0.62) == (
        "LIME and Grad-CAM agree strongly (Spearman 0.62): both methods rank the same regions as evidence."
    )


def test_flip_sentence_just_above_and_below_the_threshold():
    assert flip_sentence(0.812, 0.811) == (
        "Labelled PNEUMONIA at the threshold 0.811; "
        "it would be labelled NORMAL at any threshold above its score (0.812)."
    )
    assert flip_sentence(0.810, 0.811) == (
        "Labelled NORMAL at the threshold 0.811; "
        "it would be labelled PNEUMONIA at any threshold at or below its score (0.810)."
    )
    assert flip_sentence(0.811, 0.811).startswith("Labelled PNEUMONIA")  # at the threshold is PNEUMONIA
    assert "above its score (> 0.999)" in flip_sentence(0.9995, 0.811)
    assert "at or below its score (< 0.001)" in flip_sentence(0.0004, 0.811)


def test_flip_sentence_names_how_each_preset_labels_the_image():
    presets = [{"name": "default", "threshold": 0.811, "rule": ""}, {"name": "max_f1", "threshold": 0.374, "rule": ""}]
    assert flip_sentence(0.5, 0.811, presets).endswith(
        "The presets label it PNEUMONIA at max_f1 (0.374); NORMAL at default (0.811)."
    )


def test_readout_reuses_the_settings_seed_explanation(tiny_predictor, tiny_image):
    probability = float(tiny_predictor.predict_arrays(tiny_image[None])[0])
    readout = explanation_readout(tiny_predictor, tiny_image, FAST, probability, tiny_predictor.threshold)
    assert isinstance(readout, Readout)
    assert np.array_equal(readout.lime.weights, explain_lime(tiny_predictor, tiny_image, FAST).weights)
    assert readout.cam.shape == tiny_image.shape
    assert 0.0 <= readout.stability <= 1.0 and -1.0 <= readout.agreement <= 1.0
    assert readout.sentences[0] == stability_sentence(readout.stability)
    assert readout.sentences[2] == flip_sentence(probability, tiny_predictor.threshold)
    if readout.cam.max() > 0:
        assert readout.sentences[1] == agreement_sentence(readout.agreement)
    else:
        assert readout.sentences[1].startswith("Grad-CAM found no evidence for PNEUMONIA")
