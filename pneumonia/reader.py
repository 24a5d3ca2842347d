"""Reading one input, raster or DICOM, into grey levels plus the few facts the gate may use.

Training, the CLI and the app all read images here, so an upload is preprocessed exactly as the
training images were. A DICOM's identifying tags never leave this module: `InputImage.facts`
holds only modality, view, body part and an age band, and pydicom's own warnings (which can quote
tag values) are silenced while a file is read.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pneumonia.config import DICOM_EXTENSIONS, MAX_MEGAPIXELS
from pneumonia.errors import ImageDecodeError

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
GREY_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
DISPLAY_SIDE = 512
"""Cards show the decoded image at most this large: enough to read, small to send."""

Image.MAX_IMAGE_PIXELS = None  # the size check below runs before decoding, with a plain-language message


@dataclass(frozen=True)
class InputImage:
    """Grey levels at full resolution in [0, 255], how the file was read, and non-identifying facts."""

    grey: np.ndarray  # float32 (height, width)
    source_format: str  # "JPEG", "PNG", "DICOM", ...
    saturation: float  # mean HSV-style chroma of the original colours in [0, 1]; 0 for grey files
    facts: dict = field(default_factory=dict)  # DICOM only: modality, view, body_part, age_band

    @property
    def height(self) -> int:
        return int(self.grey.shape[0])

    @property
    def width(self) -> int:
        return int(self.grey.shape[1])


def looks_like_dicom(data: bytes, name: str = "") -> bool:
    """By content first (the 'DICM' preamble), then by a .dcm/.dicom extension for preamble-less files."""
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return True
    return Path(name).suffix.lower() in DICOM_EXTENSIONS


def read_input(source: bytes | Path | str, name: str | None = None) -> InputImage:
    """Any raster Pillow reads (first frame of an animation) or a single-frame greyscale DICOM."""
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), name or ""
    else:
        path = Path(source)
        data, name = path.read_bytes(), name or path.name
    if not data:
        raise ImageDecodeError("the file is empty")
    if looks_like_dicom(data, name):
        return _read_dicom(data)
    return _read_raster(data)


def to_model_input(grey: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to size x size (aspect ratio not kept), float32 in [0, 255], as in training."""
    resized = Image.fromarray(np.asarray(grey, dtype=np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32).clip(0.0, 255.0)


def decode_grayscale(source: bytes | Path | str, size: int) -> np.ndarray:
    """Read any supported file straight to the model's input: the one path training and inference share."""
    return to_model_input(read_input(source).grey, size)


def display_image(grey: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """8-bit grey copy, at most `side` pixels on its long side: what a card shows (never the raw bytes)."""
    image = Image.fromarray(np.asarray(grey, dtype=np.float32), mode="F")
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32).clip(0, 255).round().astype(np.uint8)


# ---------------------------------------------------------------- rasters


def _check_size(width: int, height: int) -> None:
    """Refuse before decoding: a decompression bomb is tiny on disk and enormous in memory."""
    megapixels = width * height / 1e6
    if megapixels > MAX_MEGAPIXELS:
        raise ImageDecodeError(
            f"the image is too large to open safely: {megapixels:,.0f} megapixels, the limit is {MAX_MEGAPIXELS}"
        )
    if min(width, height) < 1:
        raise ImageDecodeError("the image has no pixels")


def _read_raster(data: bytes) -> InputImage:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image file this app can read (not a JPEG, PNG, TIFF, BMP, GIF, WebP or DICOM)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError("the file is damaged: its image header cannot be read") from exc
    _check_size(*image.size)
    try:
        image.seek(0)  # an animation is read as its first frame
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        text = str(exc).lower()
        if "truncated" in text or "not processed" in text or isinstance(exc, EOFError):
            raise ImageDecodeError("the file is cut short (truncated): part of the image is missing") from exc
        raise ImageDecodeError("the file is damaged: its image data cannot be decoded") from exc
    source_format = image.format or "image"
    image = ImageOps.exif_transpose(image)
    return InputImage(_grey_levels(image), source_format, _saturation(image))


def _grey_levels(image: Image.Image) -> np.ndarray:
    """Luminance in [0, 255]: 16-bit scaled by its range, alpha dropped, palette and CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image).astype(np.float32)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return array * (255.0 / peak)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        return array * 255.0 if array.max() <= 1.0 else array
    if image.mode == "1":
        image = image.convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32)


def _saturation(image: Image.Image) -> float:
    """Mean chroma (max - min of R, G, B over 255) on a small copy: 0 for any grey picture."""
    if image.mode in ("1", "L", "LA", "I", "F") or image.mode.startswith("I;16"):
        return 0.0
    small = image.convert("RGBA").convert("RGB")
    small.thumbnail((128, 128))
    rgb = np.asarray(small, dtype=np.float32)
    return float(np.mean(rgb.max(axis=2) - rgb.min(axis=2)) / 255.0)


# ---------------------------------------------------------------- DICOM


def _read_dicom(data: bytes) -> InputImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    _silence_pydicom()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ImageDecodeError("the DICOM file is damaged: its header cannot be read") from exc
        facts = _safe_facts(dataset)
        if "PixelData" not in dataset:
            raise ImageDecodeError("this DICOM file holds no image (no pixel data), for example a report or a plan")
        frames = _int_or(dataset.get("NumberOfFrames"), 1)
        if frames > 1:
            raise ImageDecodeError(f"this DICOM file holds {frames} frames; send a single radiograph")
        photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
        if photometric not in GREY_PHOTOMETRICS:
            shown = photometric or "missing"
            raise ImageDecodeError(f"this DICOM image is in colour ({shown}); a radiograph is greyscale")
        rows, columns = _int_or(dataset.get("Rows"), 0), _int_or(dataset.get("Columns"), 0)
        _check_size(columns, rows)
        grey = _dicom_grey(dataset, photometric)
    return InputImage(grey, "DICOM", 0.0, facts)


def _silence_pydicom() -> None:
    """pydicom logs and warns about malformed values by quoting them, and a value can be a patient's name."""
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def _dicom_grey(dataset, photometric: str) -> np.ndarray:
    """Modality LUT, then the VOI LUT or window (a robust percentile window without one), then MONOCHROME1
    inverted, so bone is bright as in the training images. pydicom masks pixels to BitsStored."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # decoders raise many types; the message names what a user can do
        if syntax == JPEG_EXTENDED and _int_or(dataset.get("BitsStored"), 8) > 8:
            raise ImageDecodeError(
                "this DICOM is compressed as 12-bit JPEG Extended, which needs the optional GPL decoder "
                "pylibjpeg-libjpeg (not installed; see the README's DICOM section)"
            ) from exc
        named = f" ({syntax.name})" if syntax is not None and hasattr(syntax, "name") else ""
        raise ImageDecodeError(f"the DICOM image data cannot be decoded{named}; it may be damaged or cut short") from exc
    values = apply_modality_lut(pixels, dataset).astype(np.float64)
    has_voi = "VOILUTSequence" in dataset or ("WindowCenter" in dataset and "WindowWidth" in dataset)
    if has_voi:
        values = apply_voi_lut(values, dataset, index=0).astype(np.float64)
    else:
        low, high = np.percentile(values, (0.5, 99.5))
        values = np.clip(values, low, high)
    low, high = float(values.min()), float(values.max())
    grey = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        grey = 255.0 - grey
    return grey.astype(np.float32)


def _int_or(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _safe_facts(dataset) -> dict:
    """The only DICOM facts that leave the reader: they bear on the gate and identify no one."""
    facts = {
        "modality": str(dataset.get("Modality", "") or "").strip().upper(),
        "view": str(dataset.get("ViewPosition", "") or "").strip().upper(),
        "body_part": str(dataset.get("BodyPartExamined", "") or "").strip().upper(),
        "age_band": age_band(_age_years(dataset)),
    }
    return {key: value for key, value in facts.items() if value}


def _age_years(dataset) -> float | None:
    """PatientAge ('005Y', '018M', '010W', '003D'); else birth date against the study date. Never stored."""
    age = str(dataset.get("PatientAge", "") or "").strip().upper()
    units = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
    if len(age) >= 2 and age[:-1].isdigit() and age[-1] in units:
        return int(age[:-1]) * units[age[-1]]
    born = str(dataset.get("PatientBirthDate", "") or "")
    taken = str(dataset.get("StudyDate", "") or dataset.get("AcquisitionDate", "") or "")
    if len(born) >= 8 and len(taken) >= 8 and born[:8].isdigit() and taken[:8].isdigit():
        years = (int(taken[:4]) - int(born[:4])) + (int(taken[4:8]) - int(born[4:8])) / 10000.0
        return max(years, 0.0)
    return None


def age_band(years: float | None) -> str:
    """An age band, never the exact age: the model's population is children aged 1 to 5."""
    if years is None:
        return ""
    if years < 1:
        return "under 1 year"
    if years < 6:
        return "1–5 years"
    if years < 18:
        return "6–17 years"
    return "adult (18 or over)"
