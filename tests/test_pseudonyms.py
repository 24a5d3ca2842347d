"""Names that do not identify (issue 30): pseudonyms from the content and the position, UIDs and the DICOM's own
patient name or ID treated as identifying whatever the setting."""

from __future__ import annotations

import hashlib

import numpy as np
from inputs import PHI, dicom_bytes

from pneumonia.io.pseudonyms import (
    identifying,
    is_uid,
    patient_tokens,
    pseudonym,
    report_file_name,
    shown_name,
    shown_names,
)

DICOM = dicom_bytes(np.full((64, 64), 900, dtype=np.uint16))


def test_pseudonym_is_hash_prefix_and_position_and_unique_within_a_batch():
    data = [b"same", b"same", b"other"]
    names = shown_names(["a.png", "a.png", "b.png"], data)
    digest = hashlib.sha256(b"same").hexdigest()
    assert names[:2] == [f"{digest[:8]}_1", f"{digest[:8]}_2"]  # equal files, still two names
    assert len(set(names)) == 3 and not any("a.png" in n or "b.png" in n for n in names)
    assert pseudonym("0123456789abcdef", 7) == "01234567_7"
    assert report_file_name("01234567_7") == "01234567_7_report.pdf"


def test_names_come_back_only_when_asked_and_not_identifying():
    assert shown_names(["ward/a.png", "b.png"], [b"1", b"2"], show_names=True) == ["a.png", "b.png"]
    uid = "1.2.840.113619.2.55.3.604688119.868.1234567890.123"
    assert is_uid(uid) and is_uid(uid + ".dcm") and not is_uid("IM-0001-0001.jpeg") and not is_uid("1.2.png")
    assert shown_name(uid + ".dcm", "ab" * 32, 3, show_names=True) == "abababab_3"


def test_a_file_name_holding_the_dicoms_own_patient_name_or_id_is_replaced():
    tokens = patient_tokens(DICOM)
    assert "doe" in tokens and "jane" in tokens and "99887766" in tokens
    family = PHI["PatientName"].split("^")[0]
    for name in (f"{family}_chest.dcm", "jane-doe.dcm", "xray_PID-99887766.dcm", "pid99887766.dcm"):
        assert identifying(name, DICOM), name
        assert shown_name(name, "cd" * 32, 1, show_names=True, data=DICOM) == "cdcdcdcd_1"
    assert not identifying("chest_pa.dcm", DICOM)  # nothing of the patient's in it: kept when names are asked for
    assert shown_name("chest_pa.dcm", "cd" * 32, 1, show_names=True, data=DICOM) == "chest_pa.dcm"
    assert patient_tokens(b"\x89PNG not a dicom" * 20) == () and patient_tokens(b"") == ()
    anonymous = dicom_bytes(np.full((64, 64), 900, dtype=np.uint16), phi=False)
    assert patient_tokens(anonymous) == ()
