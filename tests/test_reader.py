"""Reading rasters and DICOMs into grey levels plus safe facts, on small files built here."""

from __future__ import annotations

import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_xray
from inputs import PHI, PHI_UIDS, PRIVATE_VALUE, dicom_bytes, encode, twelve_bit
from PIL import Image

from pneumonia.errors import ImageDecodeError
from pneumonia.io.images import age_band, decode_grayscale, display_image, looks_like_dicom, read_input

GREY = synthetic_xray(1, 7, size=96)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    for jargon in ("decompression bomb", "bytes not processed", "BytesIO", "Traceback", "PIL", "pydicom"):
        assert jargon.lower() not in text.lower(), text
    return text


# ---------------------------------------------------------------- rasters


def test_every_raster_mode_and_format_gives_the_same_grey_levels():
    reference = decode_grayscale(encode(Image.fromarray(GREY), "PNG"), 32)
    grey = Image.fromarray(GREY)
    animated = encode(grey, "GIF", save_all=True, append_images=[Image.fromarray(255 - GREY)])
    cases = {
        "rgb png": (encode(grey.convert("RGB"), "PNG"), 1e-4),
        "rgba png": (encode(grey.convert("RGBA"), "PNG"), 1e-4),
        "16-bit png": (encode(Image.fromarray(GREY.astype(np.uint16) * 257), "PNG"), 1e-4),
        "palette png": (encode(grey.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"), 2.0),
        "cmyk tiff": (encode(grey.convert("CMYK"), "TIFF"), 2.0),
        "tiff": (encode(grey, "TIFF"), 1e-4),
        "bmp": (encode(grey, "BMP"), 1e-4),
        "lossless webp": (encode(grey, "WEBP", lossless=True), 1e-4),
        "animated gif, first frame": (animated, 2.0),
    }
    for name, (data, tolerance) in cases.items():
        decoded = decode_grayscale(data, 32)
        assert decoded.shape == (32, 32) and decoded.dtype == np.float32, name
        assert np.abs(decoded - reference).max() <= tolerance, name


def test_sixteen_bit_keeps_its_full_range_and_displays_as_8_bit():
    image = read_input(encode(Image.fromarray(GREY.astype(np.uint16) * 257), "PNG"))
    assert image.source_format == "PNG"
    assert np.allclose(image.grey, GREY, atol=1e-3)
    shown = display_image(image.grey)
    assert shown.dtype == np.uint8 and shown.shape == GREY.shape
    assert np.abs(shown.astype(int) - GREY).max() <= 1


def test_display_copy_is_bounded_and_keeps_the_aspect_ratio():
    wide = np.tile(np.linspace(0, 255, 2000, dtype=np.float32), (1000, 1))
    shown = display_image(wide, side=512)
    assert shown.shape == (256, 512)


def test_saturation_is_zero_for_grey_pictures_and_high_for_colour_ones():
    assert read_input(encode(Image.fromarray(GREY), "PNG")).saturation == 0.0
    assert read_input(encode(Image.fromarray(GREY).convert("RGB"), "JPEG")).saturation < 0.01
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[..., 0] = 220
    colour[:, 32:, 2] = 200
    assert read_input(encode(Image.fromarray(colour), "PNG")).saturation > 0.5


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image over a few bytes of data: a decompression bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    )


def test_a_decompression_bomb_is_refused_before_decoding_in_plain_words():
    with pytest.raises(ImageDecodeError) as refused:
        read_input(_png_header_claiming(30000, 30000))
    assert one_line(refused) == (
        "the image is too large: 900 megapixels, the limit is 50; send a copy of at most 4,096 pixels a side"
    )


def test_bad_files_get_plain_one_line_reasons():
    with pytest.raises(ImageDecodeError) as empty:
        read_input(b"")
    assert one_line(empty) == "the file is empty"
    with pytest.raises(ImageDecodeError) as text:
        read_input(b"%PDF-1.4 definitely not an X-ray")
    assert one_line(text).startswith("not an image file this app can read")
    jpeg = encode(Image.fromarray(GREY), "JPEG")
    with pytest.raises(ImageDecodeError) as truncated:
        read_input(jpeg[: len(jpeg) // 2])
    assert one_line(truncated) == ("the file is cut short (truncated): part of the image is missing; export the file "
                                   "again from the viewer or PACS")


def test_extreme_and_tiny_images_are_read_so_that_the_gate_can_explain_them():
    assert read_input(encode(Image.new("L", (10, 10), 90), "PNG")).grey.shape == (10, 10)
    strip = read_input(encode(Image.new("L", (2000, 20), 90), "PNG"))
    assert (strip.width, strip.height) == (2000, 20)  # the gate judges the shape in the file
    assert strip.grey.shape == (10, 1000)  # reduced to WORKING_SIDE right after decoding


# ---------------------------------------------------------------- DICOM


def test_monochrome1_is_inverted_so_bone_is_bright_as_in_monochrome2():
    m2 = read_input(dicom_bytes(twelve_bit(GREY)))
    m1 = read_input(dicom_bytes(4095 - twelve_bit(GREY), photometric="MONOCHROME1"))
    assert m2.source_format == m1.source_format == "DICOM"
    assert np.abs(m1.grey - m2.grey).max() < 1e-3
    assert np.corrcoef(m2.grey.ravel(), GREY.ravel())[0, 1] > 0.999  # not inverted relative to the picture


def test_bits_stored_is_honoured_when_unused_high_bits_are_set():
    clean = read_input(dicom_bytes(twelve_bit(GREY)))
    dirty = read_input(dicom_bytes(twelve_bit(GREY) | 0xF000))
    assert np.array_equal(clean.grey, dirty.grey)


def test_the_window_in_the_file_is_applied_and_a_percentile_window_without_one():
    values = twelve_bit(GREY)
    windowed = read_input(dicom_bytes(values, window=(2048, 1024))).grey
    below, above = values < 1536, values > 2560
    assert below.any() and above.any()
    assert np.all(windowed[below] == windowed.min()) and np.all(windowed[above] == windowed.max())
    plain = read_input(dicom_bytes(values)).grey
    low, high = np.percentile(values, (0.5, 99.5))
    assert np.all(plain[values <= low] == 0.0) and np.all(plain[values >= high] == 255.0)


def test_dicom_is_recognised_by_content_or_extension():
    data = dicom_bytes(twelve_bit(GREY))
    assert looks_like_dicom(data) and looks_like_dicom(data, "no_extension")
    headless = dicom_bytes(twelve_bit(GREY), preamble=False)
    assert not looks_like_dicom(headless, "scan") and looks_like_dicom(headless, "scan.DCM")
    assert looks_like_dicom(headless, "scan.dicom")
    assert read_input(headless, name="scan.dcm").facts["modality"] == "DX"
    assert read_input(data, name="scan").source_format == "DICOM"


@pytest.mark.parametrize(
    "options, reason",
    [
        ({"frames": 3}, "this DICOM file holds 3 frames; send a single radiograph"),
        ({"pixel_data": False}, "this DICOM file holds no image (no pixel data), for example a report or a plan"),
        ({"photometric": "RGB"}, "this DICOM image is in colour (RGB); a radiograph is greyscale"),
    ],
)
def test_unsupported_dicoms_are_refused_with_one_line(options, reason):
    with pytest.raises(ImageDecodeError) as refused:
        read_input(dicom_bytes(twelve_bit(GREY), **options))
    assert one_line(refused) == reason


def test_compressed_dicoms_decode_with_the_installed_decoders():
    from pydicom.data import get_testdata_file

    reference = read_input(Path(get_testdata_file("MR_small.dcm"))).grey
    for lossless in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        decoded = read_input(Path(get_testdata_file(lossless)))
        assert np.abs(decoded.grey - reference).max() < 1e-3, lossless
        assert decoded.facts == {"modality": "MR"}
    assert read_input(Path(get_testdata_file("JPEG2000.dcm"))).grey.shape == (1024, 256)
    with pytest.raises(ImageDecodeError) as gpl_only:
        read_input(Path(get_testdata_file("JPEG-lossy.dcm")))
    assert "pylibjpeg-libjpeg" in one_line(gpl_only)


def test_only_safe_facts_leave_the_reader_and_nothing_identifying_is_logged(caplog):
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_input(dicom_bytes(twelve_bit(GREY), age="004Y", view="AP", body_part="CHEST"))
    assert image.facts == {"modality": "DX", "view": "AP", "body_part": "CHEST", "age_band": "1–5 years"}
    surfaced = repr(image.facts) + caplog.text + " ".join(str(w.message) for w in caught)
    for secret in [*PHI.values(), *PHI_UIDS, PRIVATE_VALUE, "20210314", "004Y"]:
        assert secret not in surfaced


def test_age_band_from_patient_age_or_from_birth_and_study_dates():
    assert read_input(dicom_bytes(twelve_bit(GREY), age="045Y")).facts["age_band"] == "adult (18 or over)"
    assert read_input(dicom_bytes(twelve_bit(GREY), age="018M")).facts["age_band"] == "1–5 years"
    assert read_input(dicom_bytes(twelve_bit(GREY), age="010W")).facts["age_band"] == "under 1 year"
    # No PatientAge: born 2021-03-14, studied 2025-01-01 (both planted by the PHI fixture) is 3 years old.
    assert read_input(dicom_bytes(twelve_bit(GREY), age=None)).facts["age_band"] == "1–5 years"
    assert "age_band" not in read_input(dicom_bytes(twelve_bit(GREY), age=None, phi=False)).facts
    assert [age_band(y) for y in (0.5, 1, 5.9, 6, 17.9, 18)] == [
        "under 1 year", "1–5 years", "1–5 years", "6–17 years", "6–17 years", "adult (18 or over)"
    ]
