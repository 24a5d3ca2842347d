"""Awkward inputs built in memory for the reader, gate, CLI and app tests: every raster mode, DICOMs written
with pydicom (including one full of identifying data), photographs and broken files."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PHI = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "PID-99887766",
    "PatientBirthDate": "20210314",
    "PatientAddress": "12 Quince Lane, Smalltown",
    "AccessionNumber": "ACC-55443322",
    "StudyDate": "20250101",
    "StudyID": "STUDY-7788",
    "InstitutionName": "Saint Example Childrens Hospital",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "PerformingPhysicianName": "QUINN^MICHAELA",
    "OperatorsName": "OPERATOR^OLGA",
    "StationName": "XRAYROOM7",
    "DeviceSerialNumber": "SN-31415926",
}
"""Identifying values planted in a DICOM; none of these strings may appear in any output."""
PHI_UIDS = ("1.2.826.0.1.3680043.8.498.111", "1.2.826.0.1.3680043.8.498.222", "1.2.826.0.1.3680043.8.498.333")
PRIVATE_VALUE = "PRIVATE-SECRET-4242"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def radiograph_grey(path) -> np.ndarray:
    """A real sample radiograph as 8-bit grey levels."""
    return np.asarray(Image.open(path).convert("L"))


def dicom_bytes(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    modality: str = "DX",
    window: tuple[float, float] | None = None,
    frames: int = 1,
    age: str | None = "004Y",
    view: str = "PA",
    body_part: str = "CHEST",
    phi: bool = True,
    pixel_data: bool = True,
    preamble: bool = True,
) -> bytes:
    """A DICOM file written by pydicom: uncompressed, 16 bits allocated, `bits_stored` used."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = PHI_UIDS[2]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = PHI_UIDS[2]
    ds.StudyInstanceUID = PHI_UIDS[0]
    ds.SeriesInstanceUID = PHI_UIDS[1]
    ds.Modality = modality
    if view:
        ds.ViewPosition = view
    if body_part:
        ds.BodyPartExamined = body_part
    if age:
        ds.PatientAge = age
    if phi:
        for key, value in PHI.items():
            setattr(ds, key, value)
        ds.private_block(0x0011, "EXAMPLE PRIVATE", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if pixel_data:
        pixels = np.asarray(pixels, dtype=np.uint16)
        stack = np.repeat(pixels[None], frames, axis=0) if frames > 1 else pixels
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 0
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = stack.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data if preamble else data[132:]


def twelve_bit(grey: np.ndarray) -> np.ndarray:
    """8-bit grey levels spread over 12 bits, as a detector would store them."""
    return grey.astype(np.uint16) * 16 + 8
