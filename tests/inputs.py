"""Awkward inputs built in memory for the reader, gate, CLI and app tests: every raster mode, DICOMs written
with pydicom (including one full of identifying data), photographs and broken files."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin

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


# ---------------------------------------------------------------- the odd-input matrix (issue 15)


def _dicom_dataset(pixels: np.ndarray, **tags):
    """A minimal DICOM dataset around `pixels` (16 bits allocated), tags overriding the defaults."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = PHI_UIDS[2]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined, ds.PatientAge = "DX", "PA", "CHEST", "004Y"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def _saved(ds, implicit: bool = False) -> bytes:
    from pydicom.uid import ImplicitVRLittleEndian

    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _float_dicom(values: np.ndarray) -> bytes:
    ds = _dicom_dataset(np.zeros((2, 2), np.uint16))
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.astype(np.float32).tobytes()
    return _saved(ds)


def _raster(image: Image.Image, fmt: str, **options) -> bytes:
    return encode(image, fmt, **options)


def odd_inputs(grey: np.ndarray) -> dict[str, tuple[bytes, str]]:
    """Legal or half-legal files built around one radiograph (8-bit `grey`): name -> (bytes, what must happen).

    What must happen is "scored" (ok or caution), "caution", or "refused"; every one needs a one-line reason
    when it is not ok, and none may stop a batch."""
    twelve = twelve_bit(grey)
    rgb = Image.fromarray(grey).convert("RGB")
    unit = grey.astype(np.float32) / 255.0
    nan, inf = unit.copy(), unit.copy()
    nan[10:20, 10:20] = np.nan
    inf[5, 5] = np.inf
    neg_inf = unit.copy()
    neg_inf[7, 9] = -np.inf
    sbit = PngImagePlugin.PngInfo()
    sbit.add(b"sBIT", bytes([12]))
    signed = _dicom_dataset(twelve.astype(np.int16) - 2048, PixelRepresentation=1)
    three = _dicom_dataset(np.repeat(twelve[..., None], 3, axis=2), SamplesPerPixel=3, PlanarConfiguration=0)
    palette = _dicom_dataset(twelve, PhotometricInterpretation="PALETTE COLOR")
    ybr = _dicom_dataset(np.repeat(twelve[..., None], 3, axis=2), PhotometricInterpretation="YBR_FULL",
                         SamplesPerPixel=3, PlanarConfiguration=0)
    commas = _saved(_dicom_dataset(twelve, WindowCenter="2048.0", WindowWidth="4096.0", RescaleSlope="1.0",
                                   RescaleIntercept="0.0"))
    commas = commas.replace(b"2048.0", b"2048,0").replace(b"4096.0", b"4096,0").replace(b"1.0 ", b"1,0 ")
    return {
        "dicom window width 0": (_saved(_dicom_dataset(twelve, WindowCenter=2048, WindowWidth=0)), "caution"),
        "dicom window width negative": (_saved(_dicom_dataset(twelve, WindowCenter=2048, WindowWidth=-100)), "caution"),
        "dicom rescale slope 0": (_saved(_dicom_dataset(twelve, RescaleSlope=0, RescaleIntercept=0)), "caution"),
        "dicom 3 samples under MONOCHROME2": (_saved(three), "refused"),
        "dicom PALETTE COLOR": (_saved(palette), "refused"),
        "dicom YBR_FULL": (_saved(ybr), "refused"),
        "dicom float pixel data": (_float_dicom(unit * 1000.0), "scored"),
        "dicom signed pixel data": (_saved(signed), "scored"),
        "dicom NaN pixels": (_float_dicom(nan), "refused"),
        "dicom +inf pixel": (_float_dicom(inf), "refused"),
        "dicom -inf pixel": (_float_dicom(neg_inf), "refused"),
        "dicom PatientAge 62": (_saved(_dicom_dataset(twelve, PatientAge="62")), "caution"),
        "dicom PatientAge 62 Y": (_saved(_dicom_dataset(twelve, PatientAge="62 Y")), "caution"),
        "dicom PatientAge 062y": (_saved(_dicom_dataset(twelve, PatientAge="062y")), "caution"),
        "dicom PatientAge 5 months": (_saved(_dicom_dataset(twelve, PatientAge="5 months")), "caution"),
        "dicom decimal commas": (commas, "scored"),
        "dicom without VRs (implicit VR)": (_saved(_dicom_dataset(twelve), implicit=True), "scored"),
        "tiff Lab": (_raster(rgb.convert("LAB"), "TIFF"), "scored"),
        "tiff YCbCr": (_raster(rgb.convert("YCbCr"), "TIFF"), "scored"),
        "tiff float 0-1": (_raster(Image.fromarray(unit, mode="F"), "TIFF"), "scored"),
        "tiff float with NaN": (_raster(Image.fromarray(nan, mode="F"), "TIFF"), "refused"),
        "tiff float with one +inf": (_raster(Image.fromarray(inf, mode="F"), "TIFF"), "refused"),
        "png 16-bit holding 12-bit, sBIT 12": (_raster(Image.fromarray(twelve), "PNG", pnginfo=sbit), "scored"),
        "png 16-bit holding 12-bit, no sBIT": (_raster(Image.fromarray(twelve), "PNG"), "scored"),
    }
