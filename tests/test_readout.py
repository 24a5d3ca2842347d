"""The explanation readout: LIME's seed stability, the sentence bands, and where a label flips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import synthetic_xray

from pneumonia.explain.chest_region import ChestRegion, outside_sentence
from pneumonia.explain.maps import LimeExplanation, LimeSettings, explain_lime
from pneumonia.explain.readout import (
    Readout,
    agreement_detail,
    agreement_sentence,
    evidence_sentences,
    explanation_readout,
    flip_sentence,
    lime_stability,
    stability_detail,
    stability_sentence,
    top_k_jaccard,
)
from pneumonia.threshold import Threshold
from pneumonia.wording import preset_name

FAST = LimeSettings(num_samples=80, n_segments=12, batch_size=80, seed=3)
STATISTICS = ("Jaccard", "Spearman", "surrogate", "R²", "correlation")
"""Names that belong in the details, never in the plain sentences."""
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

    monkeypatch.setattr("pneumonia.explain.maps.explain_lime", fake_lime)
    assert lime_stability(None, np.zeros((4, 4)), FAST, seeds=(0, 1, 2)) == 1.0
    assert seeds == [0, 1, 2]


def test_seeds_share_one_segmentation_on_a_real_model(tiny_predictor, tiny_image):
    runs = [explain_lime(tiny_predictor, tiny_image, dataclasses.replace(FAST, seed=s)) for s in (0, 1, 2)]
    assert all(np.array_equal(run.segments, runs[0].segments) for run in runs)
    assert not np.allclose(runs[0].weights, runs[1].weights)
    assert lime_stability(tiny_predictor, tiny_image, FAST) == pytest.approx(top_k_jaccard(runs))


@pytest.mark.parametrize(
    "jaccard, opening",
    [(1.0, "LIME picks much the same"), (0.8, "LIME picks much the same"), (0.7999, "LIME picks much the same"),
     (0.79, "LIME picks partly the same"), (0.5, "LIME picks partly the same"), (0.49, "LIME picks different"),
     (0.0, "LIME picks different")],
)
def test_stability_bands(jaccard, opening):
    sentence = stability_sentence(jaccard)
    assert sentence.startswith(f"{opening} top 5 regions")
    assert ("read it with care" in sentence) == (opening == "LIME picks different")
    assert not any(name in sentence for name in STATISTICS) and f"{jaccard:.2f}" not in sentence
    assert stability_detail(jaccard).startswith(f"LIME's stability: mean pairwise Jaccard overlap of its top 5 "
                                                f"regions over 3 seeds = {jaccard:.2f} ")


def test_stability_sentence_example():
    assert stability_sentence(0.87) == (
        "LIME picks much the same top 5 regions each time it is rerun (3 runs): its map is steady."
    )


@pytest.mark.parametrize(
    "r, opening",
    [(1.0, "point to the same areas"), (0.5, "point to the same areas"), (0.49, "point partly to the same areas"),
     (0.2, "point partly to the same areas"), (0.19, "point to different areas"), (0.0, "point to different areas"),
     (-0.19, "point to different areas"), (-0.2, "point to opposite areas"), (-1.0, "point to opposite areas")],
)
def test_agreement_bands(r, opening):
    sentence = agreement_sentence(r)
    assert sentence.startswith(f"LIME and Grad-CAM {opening}")
    assert ("neither backs up the other; read both with care" in sentence) == (r < 0.2)
    assert not any(name in sentence for name in STATISTICS)
    assert agreement_detail(r).startswith(f"Agreement of LIME and Grad-CAM: Spearman rank correlation of the two "
                                          f"maps over pixels = {r:.2f} ")


def test_agreement_sentence_says_plainly_when_the_maps_disagree():
    assert agreement_sentence(0.05) == (
        "LIME and Grad-CAM point to different areas, so neither backs up the other; read both with care."
    )
    assert agreement_sentence(0.62) == "LIME and Grad-CAM point to the same areas, so each backs up the other."


def test_evidence_sentences_add_the_outside_sentence_only_when_most_evidence_is_outside():
    region = ChestRegion(np.ones((4, 4), dtype=bool), found_lungs=True)
    inside = evidence_sentences(0.9, 0.6, True, region, {"LIME": 0.5, "Grad-CAM": 0.1})
    assert inside == [stability_sentence(0.9), agreement_sentence(0.6)]
    outside = evidence_sentences(0.9, 0.6, True, region, {"LIME": 0.2, "Grad-CAM": 0.51})
    assert outside[:2] == inside and outside[2].startswith("Most of Grad-CAM's evidence lies outside the chest")
    both = evidence_sentences(0.9, 0.6, False, ChestRegion(region.mask, False), {"LIME": 0.9, "Grad-CAM": 0.9})
    assert both[1] == "Grad-CAM found no evidence for PNEUMONIA in this image, so it cannot back up LIME."
    assert both[2].startswith("Most of LIME's and Grad-CAM's evidence lies away from the centre of the film")


def test_flip_sentence_just_above_and_below_the_threshold():
    at = Threshold.by_hand(0.811)
    assert flip_sentence(0.812, at) == (
        "Labelled PNEUMONIA at the threshold 0.811; "
        "it would be labelled NORMAL at any threshold above its score (0.812)."
    )
    assert flip_sentence(0.810, at) == (
        "Labelled NORMAL at the threshold 0.811; "
        "it would be labelled PNEUMONIA at any threshold at or below its score (0.810)."
    )
    assert flip_sentence(0.811, at).startswith("Labelled PNEUMONIA")  # at the threshold is PNEUMONIA
    assert "above its score (> 0.999)" in flip_sentence(0.9995, at)
    assert "at or below its score (< 0.001)" in flip_sentence(0.0004, at)
    # A score that rounds onto the threshold is written with the digits that keep it on its side.
    assert flip_sentence(0.81096, at) == (
        "Labelled NORMAL at the threshold 0.811; "
        "it would be labelled PNEUMONIA at any threshold at or below its score (0.81096)."
    )
    assert "the threshold 0.2441;" in flip_sentence(0.5, Threshold.by_hand(0.2441))  # never 0.244


def test_flip_sentence_names_how_each_preset_labels_the_image():
    presets = [Threshold.from_preset({"name": "default", "threshold": 0.811, "rule": ""}),
               Threshold.from_preset({"name": "max_f1", "threshold": 0.3742, "rule": ""})]
    at = Threshold.by_hand(0.811)
    assert flip_sentence(0.5, at, presets).endswith(
        f"The presets label it PNEUMONIA at {preset_name('max_f1')} (0.3742); NORMAL at {preset_name('default')} "
        "(0.811)."
    )
    assert "max_f1" not in flip_sentence(0.5, at, presets)


def test_readout_reuses_the_settings_seed_explanation(tiny_predictor, tiny_image):
    probability = float(tiny_predictor.predict_arrays(tiny_image[None])[0])
    readout = explanation_readout(tiny_predictor, tiny_image, FAST, probability, tiny_predictor.default_threshold)
    assert isinstance(readout, Readout)
    assert np.array_equal(readout.lime.weights, explain_lime(tiny_predictor, tiny_image, FAST).weights)
    assert readout.cam.shape == tiny_image.shape == readout.region.mask.shape
    assert 0.0 <= readout.stability <= 1.0 and -1.0 <= readout.agreement <= 1.0
    assert readout.sentences[:-1] == evidence_sentences(readout.stability, readout.agreement,
                                                        bool(readout.cam.max() > 0), readout.region, readout.outside)
    assert readout.sentences[-1] == flip_sentence(probability, tiny_predictor.default_threshold)
    assert not any(name in sentence for sentence in readout.sentences for name in STATISTICS)
    assert readout.details[:2] == [stability_detail(readout.stability), agreement_detail(readout.agreement)]
    assert readout.details[2] == (f"LIME surrogate fit R² = {readout.lime.score:.2f}; low values mean the linear "
                                  "story is a rough one.")
    assert readout.details[3].startswith("Chest region: ")


def test_readout_says_when_grad_cam_rests_on_a_corner(monkeypatch, tiny_predictor, tiny_image):
    corner = np.zeros_like(tiny_image)
    corner[:4, :4] = 1.0
    monkeypatch.setattr("pneumonia.explain.maps.grad_cam", lambda predictor, image: corner)
    readout = explanation_readout(tiny_predictor, tiny_image, FAST, 0.5, Threshold.by_hand(0.5))
    assert readout.outside["Grad-CAM"] == 1.0
    methods = ["LIME", "Grad-CAM"] if readout.outside["LIME"] > 0.5 else ["Grad-CAM"]
    assert outside_sentence(methods, readout.region.found_lungs) in readout.sentences
    assert "Grad-CAM 100%" in readout.details[3]


def test_readout_runs_lime_only_for_the_seeds_it_was_not_given(monkeypatch, tiny_predictor, tiny_image):
    """The app shows the settings' seed map first and hands it to the readout: three LIME runs in all, not four."""
    import pneumonia.explain.maps as maps

    first = explain_lime(tiny_predictor, tiny_image, FAST)
    seeds = []
    real = maps.explain_lime
    monkeypatch.setattr(maps, "explain_lime", lambda p, image, settings, **kw: seeds.append(settings.seed)
                        or real(p, image, settings, **kw))
    readout = explanation_readout(tiny_predictor, tiny_image, FAST, 0.5, Threshold.by_hand(0.5), explanations=[first])
    assert seeds == [FAST.seed + 1, FAST.seed + 2]
    assert readout.lime is first
