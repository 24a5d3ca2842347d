"""An explanation readout in plain sentences: how stable LIME is, whether Grad-CAM backs it, whether the
evidence lies outside the chest, and where the label would flip; the statistics' names and values go apart,
into `details`. For readers who cannot judge a heat map by eye; shared by the app and the PDF report.

The sentence helpers are pure and cheap to import; Keras loads only when an explanation is computed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Sequence

import numpy as np

from pneumonia.config import CLASS_NAMES
from pneumonia.explain.chest_region import (
    OUTSIDE_MAJORITY,
    ChestRegion,
    chest_region,
    mostly_outside,
    outside_sentence,
    share_outside,
)
from pneumonia.formatting import format_percent, format_probability
from pneumonia.threshold import Threshold
from pneumonia.wording import AGREEMENT_SENTENCES, NO_GRAD_CAM_EVIDENCE, STABILITY_SENTENCES, preset_name

if TYPE_CHECKING:
    from pneumonia.explain.maps import LimeExplanation, LimeSettings

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
    from pneumonia.explain.maps import explain_lime

    return [explain_lime(predictor, image, dataclasses.replace(settings, seed=seed)) for seed in seeds]


def lime_stability(
    predictor, image: np.ndarray, settings: LimeSettings, seeds=(0, 1, 2), top_k: int = TOP_K
) -> float:
    """How much LIME's top regions depend on its random sampling: 1.0 = the same regions for every seed."""
    return top_k_jaccard(_explanations(predictor, image, settings, seeds), top_k)


def _stability_word(jaccard: float) -> str:
    """Banded on the value `stability_detail` prints, so the words never contradict the number."""
    shown = round(jaccard, 2)
    return "stable" if shown >= 0.8 else "fairly stable" if shown >= 0.5 else "unstable"


def stability_sentence(jaccard: float, top_k: int = TOP_K, seeds: int = STABILITY_SEEDS) -> str:
    """How much LIME's picture depends on chance, in plain words; the number is in `stability_detail`."""
    return STABILITY_SENTENCES[_stability_word(jaccard)].format(top_k=top_k, seeds=seeds)


def stability_detail(jaccard: float, top_k: int = TOP_K, seeds: int = STABILITY_SEEDS) -> str:
    """The number behind `stability_sentence`, with its name, for a "How this is computed" section."""
    return (f"LIME's stability: mean pairwise Jaccard overlap of its top {top_k} regions over {seeds} seeds = "
            f"{jaccard:.2f} (1 = the same regions every time; read as steady from 0.80, fairly steady from 0.50).")


def agreement_sentence(r: float) -> str:
    """Whether LIME and Grad-CAM point to the same areas, in plain words, banded on the printed value."""
    shown = round(r, 2)
    band = "same" if shown >= 0.5 else "partly" if shown >= 0.2 else "different" if shown > -0.2 else "opposite"
    return AGREEMENT_SENTENCES[band]


def agreement_detail(r: float) -> str:
    """The number behind `agreement_sentence`, with its name."""
    return (f"Agreement of LIME and Grad-CAM: Spearman rank correlation of the two maps over pixels = {r:.2f} "
            "(the same areas from 0.50, partly from 0.20, different below that, opposite at -0.20 or less).")


def fit_detail(score: float) -> str:
    """How well LIME's linear surrogate fits the model around this image."""
    return f"LIME surrogate fit R² = {score:.2f}; low values mean the linear story is a rough one."


def region_detail(region: ChestRegion, outside: dict[str, float]) -> str:
    """How the chest region was found, and the share of each method's positive weight outside it."""
    how = ("the convex hull of the two lung fields found from the grey levels (mirrored, slightly grown)"
           if region.found_lungs else "the centre of the film (the lung fields could not be found)")
    shares = ", ".join(f"{method} {format_percent(share, 0)}" for method, share in outside.items())
    return (f"Chest region: {how}, {region.mask.mean():.0%} of the film. Share of the positive weight outside it: "
            f"{shares}; the readout speaks above {OUTSIDE_MAJORITY:.0%}.")


def outside_shares(region: ChestRegion, lime_map: np.ndarray, cam: np.ndarray) -> dict[str, float]:
    """The share of LIME's push towards PNEUMONIA, and of Grad-CAM's map, that lies outside the chest."""
    return {"LIME": share_outside(lime_map, region.mask), "Grad-CAM": share_outside(cam, region.mask)}


def evidence_sentences(stability: float, agreement: float, cam_found: bool, region: ChestRegion,
                       outside: dict[str, float]) -> list[str]:
    """The plain sentences about the two maps: LIME's steadiness, whether they agree, and (only when it
    applies) that most of a method's evidence lies outside the chest."""
    if cam_found:
        compared = agreement_sentence(agreement)
    else:
        compared = NO_GRAD_CAM_EVIDENCE
    sentences = [stability_sentence(stability), compared]
    outside_words = outside_sentence([m for m, share in outside.items() if mostly_outside(share)], region.found_lungs)
    return sentences + ([outside_words] if outside_words else [])


def flip_sentence(probability: float, threshold: Threshold, presets: Sequence[Threshold] = ()) -> str:
    """Where this image's label flips: at its own score, since a score at or above the threshold is PNEUMONIA.

    With `presets` (the model's named thresholds), also how each preset labels it.
    """
    label = threshold.label(probability)
    score = format_probability(probability, threshold)
    if label == CLASS_NAMES[1]:
        flip = f"it would be labelled {CLASS_NAMES[0]} at any threshold above its score ({score})"
    else:
        flip = f"it would be labelled {CLASS_NAMES[1]} at any threshold at or below its score ({score})"
    sentence = f"Labelled {label} at the threshold {threshold.text}; {flip}."
    if presets:
        by_label: dict[str, list[str]] = {name: [] for name in reversed(CLASS_NAMES)}
        for preset in presets:
            by_label[preset.label(probability)].append(f"{preset_name(preset.name)} ({preset.text})")
        sentence += " The presets label it " + "; ".join(
            f"{name} at {', '.join(names)}" for name, names in by_label.items() if names
        ) + "."
    return sentence


@dataclass(frozen=True, eq=False)
class Readout:
    """The numbers behind the sentences, plus the seed-`settings.seed` LIME explanation, the Grad-CAM map and
    the chest region they were computed from, so a caller can draw the same maps without recomputing them.

    `sentences` are plain words for anyone; `details` name the statistics and give their values, for a
    "How this is computed" section."""

    stability: float
    agreement: float
    sentences: list[str]
    lime: LimeExplanation = field(repr=False)
    cam: np.ndarray = field(repr=False)
    region: ChestRegion | None = field(default=None, repr=False)
    outside: dict[str, float] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)


def explanation_readout(
    predictor,
    image: np.ndarray,
    settings: LimeSettings,
    probability: float,
    threshold: Threshold,
    presets: Sequence[Threshold] = (),
    explanations: Sequence[LimeExplanation] | None = None,
    cam: np.ndarray | None = None,
) -> Readout:
    """Three LIME runs (the settings' seed and the next two) and one Grad-CAM pass for a model-input image, and
    the sentences they support. A caller that already holds some of them (the app, which shows the first map
    before the others exist) passes them in: `explanations` in seed order, each computed once."""
    from pneumonia.explain.maps import grad_cam, lime_heatmap, map_agreement

    seeds = [settings.seed + offset for offset in range(STABILITY_SEEDS)]
    explanations = list(explanations or [])
    explanations += _explanations(predictor, image, settings, seeds[len(explanations):])
    stability = top_k_jaccard(explanations)
    cam = grad_cam(predictor, image) if cam is None else cam
    lime_map = lime_heatmap(explanations[0])
    agreement = map_agreement(lime_map, cam)
    region = chest_region(image)
    outside = outside_shares(region, lime_map, cam)
    sentences = evidence_sentences(stability, agreement, bool(cam.max() > 0), region, outside)
    sentences.append(flip_sentence(probability, threshold, presets))
    details = [
        stability_detail(stability, TOP_K, len(seeds)),
        agreement_detail(agreement),
        fit_detail(explanations[0].score),
        region_detail(region, outside),
    ]
    return Readout(stability, agreement, sentences, explanations[0], cam, region, outside, details)
