"""A one-image PDF report: the gate's verdict, the score and label with where the threshold came from,
LIME and Grad-CAM with a plain-sentence readout, and the model, date, disclaimer and data source.

Built in memory with matplotlib's PDF backend on `Figure` objects (not pyplot, so the app's threads do
not share state); an upload never touches the disk. Every word is real PDF text, so it can be searched,
copied and tested. No DICOM identifier can appear: a Screening carries only the reader's safe facts.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

from pneumonia.explain.maps import LimeSettings, heatmap_overlay, lime_overlay
from pneumonia.explain.readout import STABILITY_SEEDS, TOP_K, explanation_readout
from pneumonia.formatting import format_probability
from pneumonia.io.bundle import ModelMetadata
from pneumonia.reports.tables import facts_text
from pneumonia.screening.gate import REFUSED
from pneumonia.threshold import Threshold
from pneumonia.wording import STATUS_WORDS, score_honesty

CREATOR = "pneumonia screening demo"
DISCLAIMER = (
    "Not a medical device. This report comes from a research and teaching demo; do not use it for diagnosis, "
    "treatment or triage. The model was trained on children's chest X-rays from one hospital, and its "
    "explanations show what moved the score, not why any disease is present."
)
ATTRIBUTION = (
    "Data: Kermany, Zhang, Goldbaum (2018), Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images "
    "for Classification, Mendeley Data v2, doi:10.17632/rscbjbr9sj.2, CC BY 4.0."
)

PAGE_WIDTH, PAGE_HEIGHT = 8.27, 11.69  # A4 portrait, inches
MARGIN = 0.75
TEXT_WIDTH = PAGE_WIDTH - 2 * MARGIN
LEADING = 1.3  # line height as a multiple of the font size
DARK_RED = "#8b0000"
GREY = "#444444"
TECHNICAL_HEADING = "How this is computed"
"""The report's last section: the statistics' names and numbers, kept apart from the plain words above it."""


def report_file_names(paths: list[Path]) -> list[str]:
    """`<stem>.pdf` per input; the full name where stems clash (a.png.pdf, a.jpg.pdf), then a counter, so no
    input's report overwrites another's, even on a case-insensitive disk."""
    stems = Counter(Path(p).stem.casefold() for p in paths)
    used: set[str] = set()
    names = []
    for path in map(Path, paths):
        base = path.stem if stems[path.stem.casefold()] == 1 else path.name
        name, count = base, 1
        while name.casefold() in used:
            count += 1
            name = f"{base}-{count}"
        used.add(name.casefold())
        names.append(f"{name}.pdf")
    return names


def reports_zip(names: list[str], reports: list[bytes]) -> bytes:
    """One ZIP of the batch's PDFs, built in memory, one `<stem>.pdf` per input (names made unique as on disk)."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, report in zip(report_file_names([Path(n) for n in names]), reports):
            archive.writestr(name, report)
    return buffer.getvalue()


def _wrap(text: str, size: float, width: float, weight: str = "normal", family: str = "sans-serif") -> list[str]:
    """Greedy word wrap to `width` inches, measured with the font itself rather than guessed per character."""
    font = FontProperties(family=family, size=size, weight=weight)
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if line and text_to_path.get_text_width_height_descent(candidate, font, ismath=False)[0] > width * 72:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line] if line else lines


class _Page:
    """An A4 figure filled top-down; `y` is the distance in inches from the top edge to the last baseline."""

    def __init__(self):
        self.figure = Figure(figsize=(PAGE_WIDTH, PAGE_HEIGHT))
        self.y = MARGIN - 0.1

    def text(self, text: str, size: float = 9, after: float = 0.06, x: float = MARGIN, width: float = TEXT_WIDTH,
             **style) -> None:
        for line in _wrap(text, size, width, style.get("weight", "normal"), style.get("family", "sans-serif")):
            self.y += size * LEADING / 72
            self.figure.text(x / PAGE_WIDTH, 1 - self.y / PAGE_HEIGHT, line, fontsize=size, va="baseline", **style)
        self.y += after

    def heading(self, text: str) -> None:
        self.y += 0.12
        self.text(text, size=11, weight="bold", after=0.04)

    def panels(self, panels: list[tuple[np.ndarray | None, str]], side: float) -> None:
        """Images in a row of `side`-inch slots, each fitted to its own aspect and captioned right below it;
        None draws an empty frame saying so."""
        gap = (TEXT_WIDTH - len(panels) * side) / (len(panels) - 1) if len(panels) > 1 else 0.0
        left = MARGIN if len(panels) > 1 else (PAGE_WIDTH - side) / 2
        top = self.y + 0.15
        bottom = top
        for index, (image, caption) in enumerate(panels):
            slot = left + index * (side + gap)
            height, width = (side, side) if image is None else np.shape(image)[:2]
            scale = side / max(height, width)
            box_width, box_height = width * scale, height * scale
            x = slot + (side - box_width) / 2
            axes = self.figure.add_axes(
                (x / PAGE_WIDTH, 1 - (top + box_height) / PAGE_HEIGHT, box_width / PAGE_WIDTH, box_height / PAGE_HEIGHT)
            )
            axes.set_xticks([])
            axes.set_yticks([])
            if image is None:
                axes.text(0.5, 0.5, "no image could be read", ha="center", va="center", fontsize=9, color=GREY)
            else:
                axes.imshow(image, cmap="gray", vmin=0, vmax=255, aspect="auto")
                axes.set_axis_off()
            self.y = top + box_height + 0.02
            self.text(caption, size=8, x=slot, width=side, color=GREY)
            bottom = max(bottom, self.y)
        self.y = bottom + 0.05


def _header(page: _Page, name: str) -> None:
    page.text("Pneumonia screening report", size=16, weight="bold", after=0.05)
    page.text("Not a medical device. Research and teaching demo, not for diagnosis.", size=10, weight="bold",
              color=DARK_RED, after=0.12)
    page.text(f"File: {Path(name).name}", size=10, after=0.02)


def _footer(page: _Page, metadata: ModelMetadata, created: dt.datetime) -> None:
    page.heading("Model, date and data")
    page.text(f"Model: {metadata.name}, package version {metadata.package_version}, created {metadata.created}")
    page.text("Model SHA-256:", after=0.0)
    page.text(metadata.model_sha256, size=8, family="monospace")
    page.text(f"Report created (UTC): {created.isoformat(timespec='seconds')}")
    page.text(ATTRIBUTION)
    page.text(DISCLAIMER, weight="bold", color=DARK_RED)


def _facts(page: _Page, screening) -> None:
    read = f"Read as {screening.source_format}" if screening.source_format else "The file could not be read"
    page.text(read + (f": {facts_text(screening.facts).removeprefix('DICOM: ')}" if screening.facts else "") + ".")


def _scored(page: _Page, predictor, screening, threshold: Threshold, settings: LimeSettings) -> None:
    if screening.model_input is None:
        raise ValueError(f"{screening.name} has no model input to explain; screen it with keep_images=True")
    _facts(page, screening)
    reason = screening.reason or "nothing unusual found"
    page.text(f"Input check: {STATUS_WORDS.get(screening.status, screening.status)} ({reason})")
    page.text(f"P(pneumonia): {format_probability(screening.probability, threshold)}", size=11, weight="bold",
              after=0.02)
    page.text(f"Label: {screening.label(threshold)} at threshold {threshold.text}", size=11, weight="bold", after=0.02)
    page.text(f"Threshold {threshold.text}: {threshold.provenance}. A score at or above it is labelled PNEUMONIA.")
    test_report = predictor.metadata.test_metrics
    if test_report:
        page.text(score_honesty(test_report["ece"]), color=GREY)
    readout = explanation_readout(predictor, screening.model_input, settings, screening.probability, threshold,
                                  predictor.metadata.presets)
    page.panels(
        [
            (screening.image, "The X-ray as read (grey levels)."),
            (lime_overlay(screening.model_input, readout.lime, TOP_K),
             f"LIME: the top {TOP_K} regions towards PNEUMONIA in red, towards NORMAL in blue."),
            (heatmap_overlay(screening.model_input, readout.cam),
             "Grad-CAM: where the model's last layers found evidence for PNEUMONIA (red strongest)."),
        ],
        side=(TEXT_WIDTH - 0.4) / 3,
    )
    page.heading("Explanation readout")
    for sentence in readout.sentences:
        page.text(f"- {sentence}", size=9.5)
    _technical(page, predictor, threshold, readout, settings)


def _technical(page: _Page, predictor, threshold: Threshold, readout, settings: LimeSettings) -> None:
    """The statistics behind the plain words, by name, for a reader who wants them."""
    metadata = predictor.metadata
    page.heading(TECHNICAL_HEADING)
    lines = []
    if threshold.recorded_rule:
        lines.append(f"Threshold rule as recorded: {threshold.recorded_rule}.")
    lines.append(f"Score: {metadata.calibration['method']}.")
    test_report = metadata.test_metrics
    if test_report:
        lines.append(f"Expected calibration error (ECE) on the official test split: {test_report['ece']:.3f}.")
    lines.extend(getattr(readout, "details", []))
    seeds = ", ".join(str(settings.seed + k) for k in range(STABILITY_SEEDS))
    lines.append(f"LIME settings: {settings.num_samples} perturbed samples, {settings.n_segments} superpixels "
                 f"(SLIC), seeds {seeds}; the maps show seed {settings.seed}, drawn on the model's "
                 f"{predictor.image_size}x{predictor.image_size} input (aspect ratio not kept).")
    for line in lines:
        page.text(line, size=8, color=GREY)


def _refused(page: _Page, screening) -> None:
    _facts(page, screening)
    page.text("Not scored: the input gate refused this image.", size=11, weight="bold", color=DARK_RED, after=0.02)
    page.text(f"Reason: {screening.reason}.", size=10)
    page.text("A refused image gets no score, no label and no explanation.", color=GREY)
    caption = "" if screening.image is None else "The image as read (grey levels)."
    page.panels([(screening.image, caption)], side=3.2)


def image_report(
    predictor,
    screening,
    threshold: Threshold,
    settings: LimeSettings = LimeSettings(),
    created: dt.datetime | None = None,
) -> bytes:
    """The PDF as bytes for one screened image (screen it with keep_images=True); one page, scored or refused.

    `created` is the report's time (now by default; a naive time is taken as UTC), printed in UTC.
    """
    created = dt.datetime.now(dt.timezone.utc) if created is None else created
    created = (created if created.tzinfo else created.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)
    page = _Page()
    _header(page, screening.name)
    if screening.status == REFUSED:
        _refused(page, screening)
    else:
        _scored(page, predictor, screening, threshold, settings)
    _footer(page, predictor.metadata, created)
    buffer = io.BytesIO()
    metadata = {"Title": f"Pneumonia screening report: {Path(screening.name).name}", "Creator": CREATOR,
                "CreationDate": created}
    with PdfPages(buffer, metadata=metadata) as pdf:
        pdf.savefig(page.figure)
    return buffer.getvalue()
