"""Site calibration: a threshold from a hospital's own films known to be normal.

A threshold set on this data set's validation split flags many more healthy children on films from
another machine (docs/experiments.md). A site that brings its own normal films can instead choose the
share of them it is willing to flag; the threshold follows from their scores, and its price is read
off the validation pneumonias. Only the threshold and how it was derived are returned: the films and
their scores are not kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from pneumonia.decision.metrics import threshold_metrics
from pneumonia.errors import PneumoniaError
from pneumonia.formatting import adopt_threshold, format_percent, format_threshold
from pneumonia.threshold import Threshold, ThresholdSource

MIN_NORMALS = 20
"""Fewer scored normal films than this cannot place a 10% quantile with any confidence."""


class SiteCalibrationError(PneumoniaError):
    """The site's films cannot give a threshold (too few scored, or the model cannot separate them)."""


@dataclass(frozen=True)
class SiteCalibration:
    """A site-derived threshold, what it flags of the site's normals, and its price on validation pneumonias."""

    threshold: float
    max_flagged: float
    n_scored: int
    n_flagged: int
    n_refused: int
    validation_sensitivity: float
    default_threshold: float
    default_validation_sensitivity: float

    @property
    def rule(self) -> str:
        """How the threshold was derived, for the preset's label and any report."""
        return (
            f"site-derived: flags {self.n_flagged} of {self.n_scored} of the site's normal films "
            f"({format_percent(self.n_flagged / self.n_scored)}, at most {self.max_flagged:.0%} asked)"
        )

    def as_threshold(self) -> Threshold:
        """The site threshold as applied, with its source and rule, for the pages, the CSV and the PDF."""
        return Threshold.from_preset({"name": "site", "threshold": self.threshold, "rule": self.rule,
                                      "n_films": self.n_scored, "n_flagged": self.n_flagged,
                                      "max_flagged": self.max_flagged}, ThresholdSource.SITE)

    def summary(self) -> str:
        """One plain line: the threshold, what it flags, and what it costs in sensitivity."""
        refused = f"; {self.n_refused} refused by the input gate, not used" if self.n_refused else ""
        top = (
            ". These normal films score at the very top of the model's scale, so it tells them apart from "
            "pneumonia poorly"
            if self.threshold > 0.999
            else ""
        )
        return (
            f"site threshold {format_threshold(self.threshold)}: flags {self.n_flagged} of {self.n_scored} normal films "
            f"({format_percent(self.n_flagged / self.n_scored)}); sensitivity on the validation pneumonias "
            f"{self.validation_sensitivity:.3f} (at the model's default {format_threshold(self.default_threshold)}: "
            f"{self.default_validation_sensitivity:.3f}){refused}{top}."
        )


def site_threshold(normal_probabilities: np.ndarray, max_flagged: float) -> float:
    """A threshold that flags at most `max_flagged` of these normals (a score >= threshold is flagged): just above
    the highest score it must not flag, rounded up to a short decimal that keeps every score on its side, so
    the printed threshold flags exactly the films counted."""
    if not 0.0 < max_flagged < 1.0:
        raise SiteCalibrationError(f"the share of normal films to flag must lie between 0 and 1, got {max_flagged}.")
    scores = np.sort(np.asarray(normal_probabilities, dtype=np.float64))[::-1]
    if scores.size < MIN_NORMALS:
        raise SiteCalibrationError(
            f"{scores.size} normal films were scored; at least {MIN_NORMALS} are needed to set a site threshold."
        )
    allowed = int(np.floor(max_flagged * scores.size + 1e-9))
    threshold = float(np.nextafter(scores[allowed], np.inf))
    if threshold >= 1.0:
        raise SiteCalibrationError(
            "too many of these normal films score at the very top of the scale: no threshold flags only "
            f"{max_flagged:.0%} of them. The model does not separate this site's normal films; do not use it there."
        )
    return adopt_threshold(threshold, scores)


def calibrate_site(
    normal_probabilities: Iterable[float],
    max_flagged: float,
    validation_labels: np.ndarray,
    validation_probabilities: np.ndarray,
    default_threshold: float,
    n_refused: int = 0,
) -> SiteCalibration:
    """The site threshold for these normals' scores, priced on the validation pneumonias."""
    scores = np.asarray(list(normal_probabilities), dtype=np.float64)
    threshold = site_threshold(scores, max_flagged)
    return SiteCalibration(
        threshold=threshold,
        max_flagged=float(max_flagged),
        n_scored=int(scores.size),
        n_flagged=int(np.sum(scores >= threshold)),
        n_refused=int(n_refused),
        validation_sensitivity=threshold_metrics(validation_labels, validation_probabilities, threshold)["sensitivity"],
        default_threshold=float(default_threshold),
        default_validation_sensitivity=threshold_metrics(
            validation_labels, validation_probabilities, default_threshold
        )["sensitivity"],
    )


def calibrate_site_from_sources(predictor, named_sources, max_flagged: float, model_slot=None) -> SiteCalibration:
    """Read, gate and score the site's normal films, then derive the threshold; refused films are counted, not used.
    `model_slot` (the app's shared slot) is held for the model call only, as for any screening."""
    from pneumonia.io.bundle import read_validation_predictions

    results = predictor.screen(named_sources, model_slot=model_slot)
    scored = [r.probability for r in results if r.probability is not None]
    validation = read_validation_predictions(predictor.model_dir)
    return calibrate_site(
        scored,
        max_flagged,
        validation.labels,
        validation.probabilities,
        predictor.default_threshold.value,
        n_refused=len(results) - len(scored),
    )


def cross_fit(
    normal_probabilities: np.ndarray,
    normal_groups: np.ndarray,
    positive_probabilities: np.ndarray,
    max_flagged: float,
    seed: int = 0,
) -> list[dict]:
    """Two-fold cross-fitting on a labelled set: calibrate on one half of the normals (split by patient),
    report specificity on the other half and sensitivity on every positive, then swap."""
    groups = np.unique(normal_groups)
    shuffled = np.random.default_rng(seed).permutation(groups)
    halves = [np.isin(normal_groups, shuffled[: len(shuffled) // 2]), np.isin(normal_groups, shuffled[len(shuffled) // 2 :])]
    rows = []
    for fold, (fit, held) in enumerate([(halves[0], halves[1]), (halves[1], halves[0])], start=1):
        threshold = site_threshold(normal_probabilities[fit], max_flagged)
        rows.append(
            {
                "fold": fold,
                "n_fit": int(fit.sum()),
                "n_held_out": int(held.sum()),
                "threshold": threshold,
                "specificity": float(np.mean(normal_probabilities[held] < threshold)),
                "sensitivity": float(np.mean(np.asarray(positive_probabilities) >= threshold)),
            }
        )
    return rows
