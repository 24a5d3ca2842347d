"""The input gate: ok, caution (scored, with a reason) or refused (not scored, with a reason).

It never looks at the classifier's own probability, which rates photographs as confident pneumonia.
It combines fixed rules (shape, DICOM modality, view, body part, age band), cheap image statistics
(colour, flatness, noise, few-level documents) and a learned out-of-distribution score: the
class-conditional Mahalanobis distance (Lee et al., 2018) of the CNN's pooled features at two depths,
fitted on the training images of the fit split only. Every learned threshold is set on the
validation split and its stress-shifted copies, so that few real radiographs are refused. This module
only judges; `pneumonia.training.gate_fit` fits, so scoring never imports training code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pneumonia.config import GATE_COMMAND, GateConfig
from pneumonia.errors import ModelError
from pneumonia.io.images import InputImage
from pneumonia.screening.refusals import border_reason
from pneumonia.wording import REASONS, age_caution

if TYPE_CHECKING:
    from pneumonia.screening.adult_caution import AdultCaution

OK, CAUTION, REFUSED = "ok", "caution", "refused"
STATISTICS = ("std", "neighbour_correlation", "peak_share", "saturation")


@dataclass(frozen=True)
class Verdict:
    status: str  # OK, CAUTION or REFUSED
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def image_statistics(image: InputImage, side: int = GateConfig.stats_side) -> dict[str, float]:
    """Cheap numbers that separate radiographs from blanks, noise, documents and colour pictures.

    Computed on a strided copy at most `side` pixels long, so the cost does not grow with the file.
    """
    step = max(1, int(np.ceil(max(image.grey.shape) / side)))  # the decoded copy, already reduced
    grey = image.grey[::step, ::step].astype(np.float64)
    std = float(grey.std())
    correlations = []
    for a, b in ((grey[:, :-1], grey[:, 1:]), (grey[:-1, :], grey[1:, :])):
        if a.size > 1 and a.std() > 0 and b.std() > 0:
            correlations.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    counts = np.bincount(np.clip(np.rint(grey), 0, 255).astype(np.int64).ravel(), minlength=256)
    return {
        "std": std,
        "neighbour_correlation": float(np.mean(correlations)) if correlations else 1.0,
        "peak_share": float(np.sort(counts)[-2:].sum() / counts.sum()),
        "saturation": float(image.saturation),
    }


def rule_verdict(image: InputImage, config: GateConfig = GateConfig()) -> tuple[list[str], list[str]]:
    """(refusals, cautions) from shape and DICOM facts alone: no statistics, no model."""
    refusals: list[str] = []
    cautions: list[str] = []
    short, long = sorted((image.height, image.width))
    if long > config.max_aspect * short:
        refusals.append(
            f"the image has an extreme shape for a radiograph: {image.width}x{image.height} pixels, "
            f"{long / max(short, 1):.0f} times longer than wide (the limit is {config.max_aspect:.0f})"
        )
    elif short < config.min_side:
        refusals.append(
            f"the image is too small to be a radiograph: {image.width}x{image.height} pixels "
            f"(at least {config.min_side} a side)"
        )
    cautions.extend(image.cautions)  # what the reader had to work around in the file
    facts = image.facts
    modality = facts.get("modality", "")
    if modality and modality not in config.modalities:
        refusals.append(
            f"wrong kind of image: DICOM modality {modality}, but this model reads chest radiographs "
            f"({', '.join(config.modalities)})"
        )
    if refusals:
        return refusals, cautions
    if short < config.caution_side:
        cautions.append(
            f"low resolution: {image.width}x{image.height} pixels, smaller than the {config.caution_side}-pixel "
            "training images; send the original file rather than a thumbnail if there is one"
        )
    if facts.get("view", "") not in config.frontal_views:
        cautions.append(f"view {facts['view']}: the model was trained on frontal (AP/PA) views only; send the frontal film")
    if facts.get("body_part", "") not in config.body_parts:
        cautions.append(f"body part {facts['body_part']}: the model was trained on chest X-rays only; check that this "
                        "is a chest film")
    if facts.get("age_band") and facts["age_band"] != config.trained_age_band:
        cautions.append(age_caution(facts["age_band"], config.trained_age_band))
    return refusals, cautions


STATISTIC_REASONS = {
    "saturation": REASONS["colour"],
    "std": REASONS["blank"],
    "neighbour_correlation": REASONS["noise"],
    "peak_share": REASONS["document"],
}


@dataclass
class Gate:
    """Fitted thresholds and Mahalanobis parameters; `judge` turns an image into a Verdict."""

    config: GateConfig
    thresholds: dict[str, float]  # std_min, neighbour_correlation_min, peak_share_max, saturation_max, unusual_*
    means: list[np.ndarray]  # per feature layer: (2 classes, features)
    precisions: list[np.ndarray]  # per feature layer: inverse of the shared (class-centred) covariance
    scales: list[float]  # per feature layer: median distance on validation, so the depths weigh alike
    adult: "AdultCaution | None" = None  # the adult caution for films without an age (pneumonia.screening.adult_caution)

    def unusualness(self, features: list[np.ndarray]) -> np.ndarray:
        """Mean over depths of the distance to the nearer class, in units of its validation median (1 = typical)."""
        total = np.zeros(len(features[0]))
        for values, means, precision, scale in zip(features, self.means, self.precisions, self.scales):
            centred = np.asarray(values, dtype=np.float64)[:, None, :] - means[None]
            distances = np.einsum("ncd,de,nce->nc", centred, precision, centred)
            total += distances.min(axis=1) / scale
        return total / len(features)

    def precheck(self, image: InputImage, statistics: dict[str, float]) -> tuple[list[str], list[str]]:
        """Everything decided before the model runs: rules and image statistics."""
        refusals, cautions = rule_verdict(image, self.config)
        if refusals:
            return refusals, cautions
        t = self.thresholds
        failed = {
            "saturation": statistics["saturation"] > t["saturation_max"],
            "std": statistics["std"] < t["std_min"],
            "neighbour_correlation": statistics["neighbour_correlation"] < t["neighbour_correlation_min"],
            "peak_share": statistics["peak_share"] > t["peak_share_max"],
        }
        refusals = [STATISTIC_REASONS[name] for name in STATISTIC_REASONS if failed[name]][:1]
        if refusals == [REASONS["document"]]:  # a grey, smooth film with a wide black border is no document
            refusals = [border_reason(image.grey, 0.5 * statistics["peak_share"]) or REASONS["document"]]
        return refusals, cautions

    def judge(self, image: InputImage, statistics: dict[str, float], unusualness: float | None) -> Verdict:
        return self.verdict(*self.precheck(image, statistics), unusualness)

    def refuses_as_unusual(self, unusualness: float) -> bool:
        return not np.isfinite(unusualness) or unusualness > self.thresholds["unusual_refuse"]

    def verdict(
        self, refusals: list[str], cautions: list[str], unusualness: float | None, inverted: float | None = None,
        model_input: np.ndarray | None = None,
    ) -> Verdict:
        """The verdict from the precheck's findings and the model's unusualness (None: not measured), so a
        batch keeps only these few strings per image, not the image, while it waits for the model.
        `inverted` is the unusualness of the image's negative: when that looks like a training film, the
        file is most likely a negative (a MONOCHROME1 tag on MONOCHROME2 data), and the reason says so."""
        refusals, cautions = list(refusals), list(cautions)
        if not refusals and unusualness is not None:
            if self.refuses_as_unusual(unusualness):
                negative = inverted is not None and inverted <= self.thresholds["unusual_caution"]
                border = None if negative or model_input is None else border_reason(model_input, 0.0, "not_chest_border")
                refusals.append(border or REASONS["negative" if negative else "not_chest"])
            elif unusualness > self.thresholds["unusual_caution"]:
                cautions.append(REASONS["unusual"])
        if refusals:
            return Verdict(REFUSED, tuple(refusals))
        return Verdict(CAUTION, tuple(cautions)) if cautions else Verdict(OK)


# ---------------------------------------------------------------- loading


def load_gate(model_dir: Path, entry: dict | None) -> Gate:
    """The gate saved beside a model, checked against the hash in its metadata."""
    from pneumonia.io.dataset import sha256_file

    fix = f"refit it with `{GATE_COMMAND}`"
    if not entry:
        raise ModelError(f"The model in {model_dir} has no input gate in its metadata; {fix}.")
    path = Path(model_dir) / entry["file"]
    if not path.is_file():
        raise ModelError(f"The input gate file {path} is missing; {fix} or restore it with `git checkout {path}`.")
    if sha256_file(path) != entry["sha256"]:
        raise ModelError(f"The input gate file {path} does not match its metadata hash; {fix}.")
    saved = entry["config"]
    config = GateConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    with np.load(path) as arrays:
        count = len(config.feature_layers)
        means = [arrays[f"mean_{i}"] for i in range(count)]
        precisions = [arrays[f"precision_{i}"] for i in range(count)]
        scales = [float(s) for s in arrays["scales"]]
    from pneumonia.screening.adult_caution import load_adult_caution

    return Gate(config, dict(entry["thresholds"]), means, precisions, scales, load_adult_caution(model_dir, entry.get("adult")))
