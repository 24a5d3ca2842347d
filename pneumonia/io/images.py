"""Reading one input, raster or DICOM, into grey levels plus the few facts the gate may use.

Training, the CLI and the app all read images here, so an upload is preprocessed exactly as the
training images were. A DICOM's identifying tags never leave this module: `InputImage.facts`
holds only modality, view, body part and an age band, and pydicom's own warnings (which can quote
tag values) are silenced while a file is read.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pneumonia.config import DICOM_EXTENSIONS, MAX_MEGAPIXELS, WORKING_SIDE
from pneumonia.errors import ImageDecodeError
from pneumonia.wording import EXPORT_AGAIN

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
GREY_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
DISPLAY_SIDE = 512
"""Cards show the decoded image at most this large: enough to read, small to send."""



@dataclass(frozen=True)
class InputImage:
    """Grey levels in [0, 255] (reduced to at most WORKING_SIDE a side), how the file was read, its size on
    disk, non-identifying facts, and anything odd the reader had to work around (the gate cautions on it)."""

    grey: np.ndarray  # float32 (height, width), at most WORKING_SIDE pixels on its long side
    source_format: str  # "JPEG", "PNG", "DICOM", ...
    saturation: float  # mean HSV-style chroma of the original colours in [0, 1]; 0 for grey files
    facts: dict = field(default_factory=dict)  # DICOM only: modality, view, body_part, age_band
    size: tuple[int, int] | None = None  # (width, height) in the file; None: the size of `grey`
    cautions: tuple[str, ...] = ()  # e.g. an invalid display window that was replaced by one from the pixels

    @property
    def height(self) -> int:
        return int(self.size[1] if self.size else self.grey.shape[0])

    @property
    def width(self) -> int:
        return int(self.size[0] if self.size else self.grey.shape[1])


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


# ---------------------------------------------------------------- shared by rasters and DICOMs


def _check_size(width: int, height: int) -> None:
    """Refuse before decoding: a decompression bomb is tiny on disk and enormous in memory."""
    megapixels = width * height / 1e6
    if megapixels > MAX_MEGAPIXELS:
        raise ImageDecodeError(
            f"the image is too large: {megapixels:,.0f} megapixels, the limit is {MAX_MEGAPIXELS}; "
            "send a copy of at most 4,096 pixels a side"
        )
    if min(width, height) < 1:
        raise ImageDecodeError("the image has no pixels")


def _reduce(array: np.ndarray) -> np.ndarray:
    """Block means down to at most WORKING_SIDE a side, right after decoding (no full-size float copy)."""
    from skimage.measure import block_reduce

    factor = int(np.ceil(max(array.shape[:2]) / WORKING_SIDE))
    if factor <= 1:
        return array
    height, width = (array.shape[0] // factor) * factor, (array.shape[1] // factor) * factor
    if height == 0 or width == 0:  # a very thin strip: keep every factor-th pixel instead
        return array[::factor, ::factor]
    block = (factor, factor) + (1,) * (array.ndim - 2)
    return block_reduce(array[:height, :width], block, np.mean)


def _check_finite(values: np.ndarray) -> None:
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        pixels = "1 pixel holds" if bad == 1 else f"{bad:,} pixels hold"
        raise ImageDecodeError(
            f"{pixels} no valid value (not a number, or infinite): the file is damaged or was exported wrongly; "
            f"{EXPORT_AGAIN}"
        )


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)


# ---------------------------------------------------------------- rasters


COLOUR_MODES = ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "HSV", "LAB")


def _read_raster(data: bytes) -> InputImage:
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: _check_size refuses such images, in plain words
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # too large even to open; Pillow's own guard is left as it is
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        _check_size(int(pixels.group(1)) if pixels else 10**12, 1)  # the same plain refusal as for any large image
        raise ImageDecodeError("the image is too large; send a copy of at most 4,096 pixels a side") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image file this app can read (not a JPEG, PNG, TIFF, BMP, GIF, WebP or DICOM)") from exc
    except (OSError, ValueError, SyntaxError, struct.error, IndexError, TypeError, KeyError) as exc:
        raise ImageDecodeError(f"the file is damaged: its image header cannot be read; {EXPORT_AGAIN}") from exc
    _check_size(*image.size)
    try:
        image.seek(0)  # an animation is read as its first frame
        image.load()
        source_format = image.format or "image"
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, TypeError, KeyError) as exc:
        text = str(exc).lower()
        if "truncated" in text or "not processed" in text or isinstance(exc, EOFError):
            raise ImageDecodeError(f"the file is cut short (truncated): part of the image is missing; {EXPORT_AGAIN}") from exc
        raise ImageDecodeError(f"the file is damaged: its image data cannot be decoded; {EXPORT_AGAIN}") from exc
    size = image.size
    grey = _grey_levels(image, _png_significant_bits(data) if source_format == "PNG" else None)
    return InputImage(grey, source_format, _saturation(image), size=size)


def _grey_levels(image: Image.Image, significant_bits: int | None = None) -> np.ndarray:
    """Luminance in [0, 255], reduced to WORKING_SIDE: high bit depths scaled by the bits they use, float data
    by its range, alpha dropped, every colour model converted through RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image)
        peak = _integer_peak(array, significant_bits)
        grey = _reduce(array).astype(np.float32) * np.float32(255.0 / peak)
        return np.clip(grey, 0.0, 255.0)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        _check_finite(array)
        low, high = float(array.min()), float(array.max())
        grey = _reduce(array).astype(np.float32)
        if low >= 0.0 and high <= 1.0:
            return grey * np.float32(255.0)
        return grey if low >= 0.0 and high <= 255.0 else _stretch(grey).astype(np.float32)
    return _reduce(np.asarray(_as_rgb_or_grey(image).convert("L"), dtype=np.uint8)).astype(np.float32)


def _integer_peak(array: np.ndarray, significant_bits: int | None) -> float:
    """The largest value the data can hold: from the PNG's sBIT chunk when it has one, else from the bits the
    values actually use (12-bit data in a 16-bit file is not 16 times too dark), never below 8 bits."""
    if significant_bits and 8 <= significant_bits <= 16:
        return float(2**significant_bits - 1)
    top = int(array.max()) if array.size else 0
    return float(2 ** max(8, top.bit_length()) - 1)


def _png_significant_bits(data: bytes) -> int | None:
    """The grey sample's significant bits from a PNG's sBIT chunk (Pillow keeps the chunk but not its value)."""
    from PIL.PngImagePlugin import ChunkStream

    stream = ChunkStream(io.BytesIO(data[8:]))
    try:
        for _ in range(64):  # sBIT comes before the image data, among the first few chunks
            cid, position, length = stream.read()
            if cid == b"sBIT":
                return stream.fp.read(1)[0]
            if cid in (b"IDAT", b"IEND"):
                return None
            stream.fp.seek(position + length + 4)
    except (SyntaxError, ValueError, IndexError, struct.error, OSError):
        return None
    return None


def _as_rgb_or_grey(image: Image.Image) -> Image.Image:
    """An 8-bit L or RGB picture from any Pillow mode: Lab through a colour profile (Pillow has no direct
    conversion), everything else by Pillow's own conversions."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "LAB":
        from PIL import ImageCms

        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(image, transform)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageDecodeError(
            f"the picture is stored in a colour mode this app cannot convert ({image.mode}); "
            "save it as a greyscale PNG or JPEG"
        ) from exc


def _saturation(image: Image.Image) -> float:
    """Mean chroma (max - min of R, G, B over 255) on a small copy: 0 for any grey picture."""
    if image.mode not in COLOUR_MODES:
        return 0.0
    small = image.copy()
    small.thumbnail((128, 128))
    rgb = np.asarray(_as_rgb_or_grey(small).convert("RGB"), dtype=np.float32)
    return float(np.mean(rgb.max(axis=2) - rgb.min(axis=2)) / 255.0)


# ---------------------------------------------------------------- DICOM

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _read_dicom(data: bytes) -> InputImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    with _quiet_pydicom(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError,
                IndexError, struct.error, OverflowError, UnicodeError, NotImplementedError) as exc:
            raise ImageDecodeError(f"the DICOM file is damaged: its header cannot be read; {EXPORT_AGAIN}") from exc
        try:
            return _dicom_image(dataset)
        except ImageDecodeError:
            raise
        except Exception as exc:  # a header field of the wrong type or size can surface anywhere below
            raise ImageDecodeError(
                "the DICOM file is damaged or breaks the standard in a way this app cannot read "
                f"(its header or pixel data is malformed); {EXPORT_AGAIN}"
            ) from exc


def _dicom_image(dataset) -> InputImage:
    facts = _safe_facts(dataset)
    if not any(keyword in dataset for keyword in PIXEL_KEYWORDS):
        raise ImageDecodeError("this DICOM file holds no image (no pixel data), for example a report or a plan")
    frames = _int_or(dataset.get("NumberOfFrames"), 1)
    if frames > 1:
        raise ImageDecodeError(f"this DICOM file holds {frames} frames; send a single radiograph")
    photometric = _text(dataset, "PhotometricInterpretation")
    if photometric not in GREY_PHOTOMETRICS:
        shown = photometric or "missing"
        raise ImageDecodeError(f"this DICOM image is in colour ({shown}); a radiograph is greyscale")
    samples = _int_or(dataset.get("SamplesPerPixel"), 1)
    if samples != 1:
        raise ImageDecodeError(
            f"this DICOM file contradicts itself: it says greyscale ({photometric}) but stores {samples} values "
            f"per pixel; {EXPORT_AGAIN}"
        )
    rows, columns = _int_or(dataset.get("Rows"), 0), _int_or(dataset.get("Columns"), 0)
    _check_size(columns, rows)
    cautions = _repair_numbers(dataset)
    grey = _dicom_grey(dataset, photometric)
    return InputImage(grey, "DICOM", 0.0, facts, size=(columns, rows), cautions=tuple(cautions))


_PYDICOM_QUIET = threading.Lock()
_pydicom_readers = 0
_pydicom_saved: tuple = ()


@contextmanager
def _quiet_pydicom():
    """pydicom logs and warns about malformed values by quoting them, and a value can be a patient's name. While
    any thread reads a DICOM here, its validation is off and its logger silent; when the last one is done, both
    are back as the process had them (pydicom has no per-call switch; the count makes overlapping reads safe)."""
    global _pydicom_readers, _pydicom_saved
    import pydicom.config

    logger = logging.getLogger("pydicom")
    with _PYDICOM_QUIET:
        if _pydicom_readers == 0:
            _pydicom_saved = (pydicom.config.settings.reading_validation_mode, logger.level)
            pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
            logger.setLevel(logging.CRITICAL)
        _pydicom_readers += 1
    try:
        yield
    finally:
        with _PYDICOM_QUIET:
            _pydicom_readers -= 1
            if _pydicom_readers == 0:
                pydicom.config.settings.reading_validation_mode, level = _pydicom_saved
                logger.setLevel(level)


def _decimals(value) -> list[float] | None:
    """A decimal string's values, tolerating what real files hold ('40,5', ' 1.0 ', several values); None when
    absent or unreadable."""
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    numbers = []
    for item in items:
        text = item.decode("latin-1") if isinstance(item, bytes) else str(item)
        for part in text.split("\\"):
            part = part.strip().replace(",", ".")
            try:
                numbers.append(float(part))
            except ValueError:
                return None
    return numbers or None


def _repair_numbers(dataset) -> list[str]:
    """Rescale and window values as numbers pydicom can apply. An invalid rescale slope (0) or window width
    (0 or negative) is dropped, with a caution, rather than sinking the file."""
    cautions = []
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword in dataset:
            numbers = _decimals(dataset.get(keyword))
            del dataset[keyword]
            if numbers is not None and all(np.isfinite(numbers)):
                setattr(dataset, keyword, numbers[0] if len(numbers) == 1 else numbers)
    slope = dataset.get("RescaleSlope")
    if slope is not None and float(slope) == 0.0:
        del dataset["RescaleSlope"]
        dataset.pop("RescaleIntercept", None)
        cautions.append("the file's rescale slope is 0, which is invalid; its stored pixel values were used as they are")
    centres, widths = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if (centres is None) != (widths is None) or (widths is not None and min(_decimals(widths) or [0.0]) < 1.0):
        dataset.pop("WindowCenter", None)
        dataset.pop("WindowWidth", None)
        cautions.append("the file's display window is invalid; the contrast was set from the image itself")
    return cautions


def _dicom_grey(dataset, photometric: str) -> np.ndarray:
    """Reduced to WORKING_SIDE, then the modality LUT, the VOI LUT or window (a robust percentile window without
    one), then MONOCHROME1 inverted, so bone is bright as in the training images. pydicom masks pixels to
    BitsStored."""
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
        raise ImageDecodeError(f"the DICOM image data cannot be decoded{named}; it may be damaged or cut short: {EXPORT_AGAIN}") from exc
    if pixels.ndim != 2:
        raise ImageDecodeError(f"the DICOM pixel data has an unexpected shape {pixels.shape}; send a single radiograph")
    if pixels.dtype.kind == "f":
        _check_finite(pixels)
        pixels = _reduce(pixels)
    else:  # block means rounded back to the stored type, so a lookup-table modality LUT can still index them
        pixels = np.rint(_reduce(pixels)).astype(pixels.dtype)
    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    _check_finite(values)
    has_voi = "VOILUTSequence" in dataset or ("WindowCenter" in dataset and "WindowWidth" in dataset)
    if has_voi:
        values = np.asarray(apply_voi_lut(values, dataset, index=0), dtype=np.float64)
    else:
        low, high = np.percentile(values, (0.5, 99.5))
        values = np.clip(values, low, high)
    grey = _stretch(values)
    if photometric == "MONOCHROME1":
        grey = 255.0 - grey
    return grey.astype(np.float32)


def _int_or(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _text(dataset, keyword: str) -> str:
    """A coded tag's value as upper-case text fit to quote in one line (printable, at most 32 characters), or ""
    when absent or unreadable: a wrong VR or a broken file can hold anything, line breaks included."""
    try:
        value = dataset.get(keyword, "")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        text = "".join(c if c.isprintable() else " " for c in str(value or ""))
    except Exception:  # a malformed element raises on access; its value is then simply unknown
        return ""
    return " ".join(text.split()).upper()[:32]


def _safe_facts(dataset) -> dict:
    """The only DICOM facts that leave the reader: they bear on the gate and identify no one."""
    facts = {
        "modality": _text(dataset, "Modality"),
        "view": _text(dataset, "ViewPosition"),
        "body_part": _text(dataset, "BodyPartExamined"),
        "age_band": age_band(_age_years(dataset)),
    }
    return {key: value for key, value in facts.items() if value}


AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
AGE_PATTERN = re.compile(r"^(\d{1,3}(?:[.,]\d+)?)\s*(Y|YR|YRS|YEARS?|M|MO|MOS|MONTHS?|W|WK|WKS|WEEKS?|D|DAYS?)?$")


def parse_age(text: str) -> float | None:
    """Years from a PatientAge as the standard writes it ('005Y', '018M', '010W', '003D') and as real files
    bend it ('62', '62 Y', '062y', '5 months'); a bare number is taken as years. None when unreadable."""
    match = AGE_PATTERN.match(str(text or "").strip().upper())
    if not match:
        return None
    number = float(match.group(1).replace(",", "."))
    return number * AGE_UNITS[(match.group(2) or "Y")[0]]


def _age_years(dataset) -> float | None:
    """PatientAge, else birth date against the study date. Never stored."""
    years = parse_age(_text(dataset, "PatientAge"))
    if years is not None:
        return years
    born = _text(dataset, "PatientBirthDate")
    taken = _text(dataset, "StudyDate") or _text(dataset, "AcquisitionDate")
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
