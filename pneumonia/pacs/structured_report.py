"""The objects written back to the PACS: a Comprehensive SR per screened instance, and optionally a Secondary
Capture of its Grad-CAM map, both built with highdicom in the screened instance's study.

Their UIDs are derived from the screened instance's SOP Instance UID and the model's SHA-256, so a result stored
twice (a retry, a rerun after a crash) is the same instance, never a second copy, and the scanner finds what is
done by looking for those UIDs in the study.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from pneumonia.io.bundle import ModelMetadata
from pneumonia.screening.gate import REFUSED
from pneumonia.threshold import Threshold

PROJECT = "Pneumonia screening demo"
DISCLAIMER = "research demo — not for diagnosis"
MANUFACTURER = "pneumonia-screening-demo (not a medical device)"
SR_SERIES_DESCRIPTION = f"{PROJECT}: {DISCLAIMER}"
MAP_SERIES_DESCRIPTION = f"Pneumonia demo Grad-CAM: {DISCLAIMER}"
SR_SERIES_NUMBER = 9901
MAP_SERIES_NUMBER = 9902
SCHEME = "99PNEUDEMO"
"""A private coding scheme (the 99 prefix): these concepts have no standard code."""
UTF8 = "ISO_IR 192"
MAP_SIDE = 512
"""The Grad-CAM capture's side in pixels: the model's map upscaled so the burned-in words can be read."""


@dataclass(frozen=True)
class Concept:
    code: str
    meaning: str

    def coded(self):
        from highdicom.sr import CodedConcept

        return CodedConcept(self.code, SCHEME, self.meaning)


REPORT = Concept("PNEU-REPORT", f"Pneumonia screening result ({DISCLAIMER})")
PROBABILITY = Concept("PNEU-PROB", "Probability of pneumonia")
THRESHOLD = Concept("PNEU-THRESHOLD", "Decision threshold for pneumonia, as applied")
LABEL = Concept("PNEU-LABEL", "Label at the decision threshold")
THRESHOLD_SOURCE = Concept("PNEU-THR-SOURCE", "Where the decision threshold came from")
GATE_STATUS = Concept("PNEU-GATE", "Input gate status")
GATE_REASON = Concept("PNEU-GATE-REASON", "Input gate reason")
NOT_SCORED = Concept("PNEU-NOT-SCORED", "Not scored")
MODEL_SHA = Concept("PNEU-MODEL-SHA", "Model SHA-256")
MODEL_NAME = Concept("PNEU-MODEL", "Model name and version")
NOTE = Concept("PNEU-NOTE", "Disclaimer")
SOURCE = ("260753009", "SCT", "Source")


def derived_uid(*parts: str) -> str:
    """A UID under 2.25 (ISO/IEC 9834-8) from a hash of `parts`: the same parts give the same UID."""
    digest = hashlib.sha256("|".join(("pneumonia-screening-demo", *parts)).encode()).hexdigest()
    return f"2.25.{int(digest[:32], 16)}"


def sr_uid(source_uid: str, model_sha: str) -> str:
    return derived_uid("sr", source_uid, model_sha)


def map_uid(source_uid: str, model_sha: str) -> str:
    return derived_uid("map", source_uid, model_sha)


def sr_series_uid(study_uid: str, model_sha: str) -> str:
    return derived_uid("sr-series", study_uid, model_sha)


def map_series_uid(study_uid: str, model_sha: str) -> str:
    return derived_uid("map-series", study_uid, model_sha)


def _unitless():
    from highdicom.sr import CodedConcept

    return CodedConcept("1", "UCUM", "no units")


def structured_report(source, screening, threshold: Threshold, metadata: ModelMetadata):
    """A Comprehensive SR in `source`'s study (a pydicom Dataset, the screened instance): gate status and reason,
    the probability, the threshold and the label (none of these three when refused), and the model's identity."""
    import highdicom as hd
    from highdicom.sr import (
        CodedConcept,
        ContainerContentItem,
        ImageContentItem,
        NumContentItem,
        RelationshipTypeValues,
        TextContentItem,
    )

    contains = RelationshipTypeValues.CONTAINS
    model_sha = metadata.model_sha256
    items = [
        ImageContentItem(CodedConcept(*SOURCE), str(source.SOPClassUID), str(source.SOPInstanceUID),
                         relationship_type=contains),
        TextContentItem(GATE_STATUS.coded(), screening.status, relationship_type=contains),
    ]
    if screening.reason:
        items.append(TextContentItem(GATE_REASON.coded(), screening.reason[:1000], relationship_type=contains))
    if screening.status == REFUSED or screening.probability is None:
        items.append(TextContentItem(NOT_SCORED.coded(), "not scored: the input gate refused this image"
                                     + (f" ({screening.reason[:900]})" if screening.reason else ""),
                                     relationship_type=contains))
    else:
        items += [
            NumContentItem(PROBABILITY.coded(), float(screening.probability), _unitless(), relationship_type=contains),
            NumContentItem(THRESHOLD.coded(), threshold.value, _unitless(), relationship_type=contains),
            TextContentItem(THRESHOLD_SOURCE.coded(), threshold.provenance[:1000], relationship_type=contains),
            TextContentItem(LABEL.coded(), screening.label(threshold), relationship_type=contains),
        ]
    items += [
        TextContentItem(MODEL_SHA.coded(), model_sha, relationship_type=contains),
        TextContentItem(MODEL_NAME.coded(), f"{metadata.name} (package {metadata.package_version})",
                        relationship_type=contains),
        TextContentItem(NOTE.coded(), f"{PROJECT}: {DISCLAIMER}. Not a medical device.", relationship_type=contains),
    ]
    root = ContainerContentItem(REPORT.coded())
    root.ContentSequence = items
    report = hd.sr.ComprehensiveSR(
        evidence=[study_header(source)],
        content=root,
        series_instance_uid=sr_series_uid(str(source.StudyInstanceUID), model_sha),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sr_uid(str(source.SOPInstanceUID), model_sha),
        instance_number=_instance_number(source),
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
    )
    _describe_equipment(report, metadata)
    return report


def map_capture(source, screening, cam: np.ndarray, metadata: ModelMetadata):
    """A Secondary Capture of the Grad-CAM map over the image the model saw, with the disclaimer burned in."""
    import highdicom as hd

    from pneumonia.explain.maps import heatmap_overlay

    model_sha = metadata.model_sha256
    pixels = burned_in(heatmap_overlay(screening.model_input, cam),
                       f"Grad-CAM, {DISCLAIMER}", f"{PROJECT}, model {model_sha[:12]}")
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=study_header(source),
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=map_series_uid(str(source.StudyInstanceUID), model_sha),
        series_number=MAP_SERIES_NUMBER,
        sop_instance_uid=map_uid(str(source.SOPInstanceUID), model_sha),
        instance_number=_instance_number(source),
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        series_description=MAP_SERIES_DESCRIPTION,
    )
    capture.BurnedInAnnotation = "YES"
    capture.ImageComments = f"{PROJECT}: Grad-CAM map, {DISCLAIMER}. Not a medical device."
    capture.SourceImageSequence = _reference(source)
    _describe_equipment(capture, metadata)
    return capture


def burned_in(rgb: np.ndarray, top: str, bottom: str, side: int = MAP_SIDE) -> np.ndarray:
    """`rgb` upscaled to `side` pixels with a black band above and below holding the two lines of text."""
    from PIL import Image, ImageDraw, ImageFont

    band = max(24, side // 14)
    picture = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).resize((side, side - 2 * band), Image.BILINEAR)
    canvas = Image.new("RGB", (side, side), (0, 0, 0))
    canvas.paste(picture, (0, band))
    draw = ImageDraw.Draw(canvas)
    for text, y in ((top, 0), (bottom, side - band)):
        size = band * 2 // 3
        font = _font(size)
        while size > 8 and font.getlength(text) > side - 8:  # the whole line fits, at any side
            size -= 1
            font = _font(size)
        if not isinstance(font, ImageFont.FreeTypeFont) or font.getlength("—") == 0:
            text = text.replace("—", "-")
        draw.text((side // 2, y + band // 2), text, fill=(255, 255, 255), font=font, anchor="mm")
    return np.asarray(canvas)


HEADER_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SpecificCharacterSet",
                   "InstanceNumber", "PatientAge")
STUDY_KEYWORDS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                  "StudyDate", "StudyTime", "ReferringPhysicianName")
"""The patient and study identifiers the objects written back must carry to belong to the study (type 2: present,
perhaps empty). They are copied from the screened instance into those objects and go nowhere else."""

SEXES = ("M", "F", "O")


def study_header(source):
    """The screened instance's identifying header without its pixels, with every study-level attribute present."""
    from pydicom.dataset import Dataset

    header = Dataset()
    for keyword in HEADER_KEYWORDS + STUDY_KEYWORDS:
        value = source.get(keyword)
        if keyword == "PatientSex" and str(value or "").strip().upper() not in SEXES:
            value = None  # real files hold "UNKNOWN", "U", "female"...: left empty (type 2) rather than refused
        if value is not None or keyword in STUDY_KEYWORDS:
            setattr(header, keyword, value)
    return header


def _font(size: int):
    """DejaVu Sans, which matplotlib ships (it has the em dash); Pillow's own font where that is missing."""
    from PIL import ImageFont

    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=False), size)
    except Exception:  # any font problem falls back to Pillow's built-in font
        return ImageFont.load_default(size=size)


def _instance_number(source) -> int:
    try:
        return max(1, int(source.get("InstanceNumber") or 1))
    except (TypeError, ValueError):
        return 1


def _reference(source):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return Sequence([item])


def _describe_equipment(dataset, metadata: ModelMetadata) -> None:
    dataset.SpecificCharacterSet = UTF8
    dataset.ManufacturerModelName = metadata.name[:64]
    dataset.SoftwareVersions = [metadata.package_version[:64], metadata.model_sha256[:64]]


# --- reading a stored SR back (tests, and the scanner's question "was this one refused?") -----------------------


def report_facts(report) -> dict:
    """What an SR written here says, keyed by concept code: numbers as floats, text as str, and the referenced
    SOP Instance UID under "source". Reads a pydicom Dataset or a DICOM JSON dict (WADO-RS metadata)."""
    from pydicom.dataset import Dataset

    if isinstance(report, dict):
        report = Dataset.from_json(report)
    facts: dict = {}
    for item in report.get("ContentSequence", []):
        code = item.ConceptNameCodeSequence[0].CodeValue
        if item.ValueType == "NUM":
            facts[code] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "TEXT":
            facts[code] = str(item.TextValue)
        elif item.ValueType == "IMAGE":
            facts["source"] = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    return facts
