"""An explanation readout in plain sentences: how stable LIME is, whether Grad-CAM backs it, and where
the label would flip. For readers who cannot judge a heat map by eye; shared by the app and the PDF report.

The sentence helpers are pure and cheap to import; Keras loads only when an explanation is computed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from pneumonia.config import CLASS_NAMES
from pneumonia.inference import label_at
from pneumonia.formatting import format_probability

if TYPE_CHECKING:
    from pneumonia.explain import LimeExplanation, LimeSettings

TOP_K = 5
"""How many of LIME's strongest PNEUMONIA regions the stability measure compares (the overlay shows as many)."""
STABILITY_SEEDS = 3


def top_k_jaccard(explanations: list[LimeExplanation], top_k: int = TOP_K) -> float:
    """Mean pairwise Jaccard overlap of the explanations' top-k positive superpixel sets.

    Superpixel ids are comparable only over one segmentation; SLIC has no randomness, so runs that
    differ only in LIME's seed share it, and anything else is an error. Two empty sets agree (1.0).
    """
    if len(explanations) < 2:
        raise ValueError(f"need at least two explanations to compare, got {len(explanations)}")
    if any(not np.array_equal(e.segments, explanations[0].segments) for e in explanations[1:]):
        raise ValueError("the explanations use different superpixels, so their regions cannot be compared")
    sets = [set(e.top_segments(top_k).tolist()) for e in explanations]
    overlaps = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in combinations(sets, 2)]
    return float(np.mean(overlaps))


def _explanations(predictor, image: np.ndarray, settings: LimeSettings, seeds) -> list[LimeExplanation]:
    from pneumonia.explain import explain_lime

    return [explain_lime(predictor, image, dataclasses.replace(settings, seed=seed)) for seed in seeds]


def lime_stability(
    predictor, image: np.ndarray, settings: LimeSettings, seeds=(0, 1, 2), top_k: int = TOP_K
) -> float:
    """How much LIME's top regions depend on its random sampling: 1.0 = the same regions for every seed."""
    return top_k_jaccard(_explanations(predictor, image, settings, seeds), top_k)


def stability_sentence(jaccard: float, top_k: int = TOP_K, seeds: int = STABILITY_SEEDS) -> str:
    """Banded on the printed value, so the words never contradict the number beside them."""
    shown = round(jaccard, 2)
    word = "stable" if shown >= 0.8 else "fairly stable" if shown >= 0.5 else "unstable"
    sentence = f"LIME's top {top_k} regions are {word} across {seeds} seeds (mean Jaccard overlap {shown:.2f})"
    if word == "unstable":
        sentence += ": they depend on LIME's random sampling, so read its map with care; more samples steady it"
    return sentence + "."


def agreement_sentence(r: float) -> str:
    """What the Spearman LIME–Grad-CAM agreement means, banded on the printed value."""
    shown = round(r, 2)
    if shown >= 0.5:
        verdict, meaning = "agree strongly", "both methods rank the same regions as evidence"
    elif shown >= 0.2:
        verdict, meaning = "agree somewhat", "they share some of their strongest regions, not all"
    elif shown > -0.2:
        verdict, meaning = "agree hardly at all", "their maps are unrelated, so neither corroborates the other"
    else:
        verdict, meaning = "disagree", "what one method ranks as evidence, the other ranks low"
    return f"LIME and Grad-CAM {verdict} (Spearman {shown:.2f}): {meaning}."


def flip_sentence(probability: float, threshold: float, presets: list[dict] | None = None) -> str:
    """Where this image's label flips: at its own score, since a score at or above the threshold is PNEUMONIA.

    With `presets` (the metadata's list of name/threshold/rule), also how each preset labels it.
    """
    label = label_at(probability, threshold)
    score = format_probability(probability)
    if label == CLASS_NAMES[1]:
        flip = f"it would be labelled {CLASS_NAMES[0]} at any threshold above its score ({score})"
    else:
        flip = f"it would be labelled {CLASS_NAMES[1]} at any threshold at or below its score ({score})"
    sentence = f"Labelled {label} at the threshold {threshold:.3f}; {flip}."
    if presets:
        by_label: dict[str, list[str]] = {name: [] for name in reversed(CLASS_NAMES)}
        for preset in presets:
            by_label[label_at(probability, preset["threshold"])].append(f"{preset['name']} ({preset['threshold']:.3f})")
        sentence += " The presets label it " + "; ".join(
            f"{name} at {', '.join(names)}" for name, names in by_label.items() if names
        ) + "."
    return sentence


@dataclass(frozen=True, eq=False)
class Readout:
    """The numbers behind the sentences, plus the seed-`settings.seed` LIME explanation and the Grad-CAM
    map they were computed from, so a caller can draw the same maps without recomputing them."""

    stability: float
    agreement: float
    sentences: list[str]
    lime: LimeExplanation = field(repr=False)
    cam: np.ndarray = field(repr=False)


def explanation_readout(
    predictor,
    image: np.ndarray,
    settings: LimeSettings,
    probability: float,
    threshold: float,
    presets: list[dict] | None = None,
) -> Readout:
    """Three LIME runs (the settings' seed and the next two) and one Grad-CAM pass for a model-input image."""
    from pneumonia.explain import grad_cam, lime_heatmap, map_agreement

    seeds = [settings.seed + offset for offset in range(STABILITY_SEEDS)]
    explanations = _explanations(predictor, image, settings, seeds)
    stability = top_k_jaccard(explanations)
    cam = grad_cam(predictor, image)
    agreement = map_agreement(lime_heatmap(explanations[0]), cam)
    if cam.max() > 0:
        compared = agreement_sentence(agreement)
    else:
        compared = "Grad-CAM found no evidence for PNEUMONIA in this image, so it cannot corroborate LIME."
    sentences = [
        stability_sentence(stability, TOP_K, len(seeds)),
        compared,
        flip_sentence(probability, threshold, presets),
    ]
    return Readout(stability, agreement, sentences, explanations[0], cam)
