"""Names that do not identify: what a report, its file, its title and a ZIP entry call an input.

Hospitals export files as `DOE_JANE_chest.dcm` or as the image's SOP Instance UID, so a file name is
treated as an identifier. By default an input is called by a pseudonym: the first 8 hex digits of its
SHA-256 and its position in the upload (`3fa2b9c1_2`; an underscore, so it never wraps on a phone), unique within a batch. A user who needs the names
can turn them back on, but a name that is a DICOM UID, or that contains the DICOM's own PatientName or
PatientID, stays a pseudonym whatever the setting. The patient's name and ID are read only to make that
check and are never returned, stored or logged.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path

PSEUDONYM_DIGITS = 8
UID = re.compile(r"^[0-9]+(\.[0-9]+){3,}$")
"""A DICOM UID: digits in dot-separated components (1.2.840.113619.2.55...); at least four components."""
MIN_TOKEN = 3
"""Parts of a patient's name or ID shorter than this (initials, "Jr") are not searched for in a file name."""


def pseudonym(digest: str, position: int) -> str:
    """`<first 8 hex digits of the SHA-256>_<position>`, position counted from 1."""
    return f"{digest[:PSEUDONYM_DIGITS]}_{position}"


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", text.casefold()) if len(t) >= MIN_TOKEN]


def patient_tokens(data: bytes | None) -> tuple[str, ...]:
    """The parts of a DICOM's PatientName and PatientID, case-folded, for `names_patient` only; () for any other
    file or a DICOM that cannot be read. Never shown, stored or logged."""
    if not data or len(data) < 132:
        return ()
    if data[128:132] != b"DICM" and data[:2] not in (b"\x08\x00", b"\x02\x00"):
        return ()
    try:
        import pydicom

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True,
                                      specific_tags=["PatientName", "PatientID"])
            values = [str(dataset.get("PatientName", "") or ""), str(dataset.get("PatientID", "") or "")]
    except Exception:  # a damaged header: the name check falls back to the UID rule and the setting
        return ()
    tokens = [t for value in values for t in _tokens(value.replace("^", " "))]
    whole_id = re.sub(r"[^0-9a-z]", "", values[1].casefold())
    return tuple(dict.fromkeys(tokens + ([whole_id] if len(whole_id) >= MIN_TOKEN else [])))


def is_uid(name: str) -> bool:
    """Whether a file name (without its extension, if any) is a DICOM UID."""
    stem = Path(name).name
    for suffix in (".dcm", ".dicom", ".dic", ".ima"):
        if stem.casefold().endswith(suffix):
            stem = stem[: -len(suffix)]
    return bool(UID.match(stem))


def names_patient(name: str, tokens: tuple[str, ...]) -> bool:
    """Whether a file name contains any part of the patient's name or ID (case and separators ignored)."""
    folded = Path(name).name.casefold()
    squashed = re.sub(r"[^0-9a-z]", "", folded)
    parts = set(_tokens(folded))
    return any(token in parts or (len(token) >= 5 and token in squashed) for token in tokens)


def identifying(name: str, data: bytes | None = None) -> bool:
    """A file name treated as identifying whatever the setting: a DICOM UID, or one that contains the DICOM's own
    PatientName or PatientID."""
    return is_uid(name) or names_patient(name, patient_tokens(data))


def shown_name(name: str, digest: str, position: int, show_names: bool = False, data: bytes | None = None) -> str:
    """What a report, the results table, the CSV and a ZIP call one input: its pseudonym unless names are asked for
    and the name does not identify the patient."""
    if show_names and name and not identifying(name, data):
        return Path(name).name
    return pseudonym(digest, position)


def shown_names(names: list[str], datas: list[bytes], show_names: bool = False) -> list[str]:
    """`shown_name` for a batch, positions counted from 1 in upload order."""
    return [shown_name(name, digest_of(data), position, show_names, data)
            for position, (name, data) in enumerate(zip(names, datas), start=1)]


def report_file_name(shown: str) -> str:
    """A single report's download name."""
    return f"{Path(shown).stem or 'image'}_report.pdf"
