"""Hypothesis strategies for open-ended inputs: random bytes, damaged copies of real files, and DICOM headers
with random tag values. Shared by tests/test_odd_inputs.py (a fixed 2,000+ examples) and
benchmarks/bench_fuzz.py (as many as asked)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from inputs import _dicom_dataset, _saved, dicom_bytes, encode, radiograph_grey, twelve_bit
from PIL import Image

SAMPLE = sorted((Path(__file__).resolve().parents[1] / "assets" / "samples").glob("*.jpeg"))[0]


def seed_files() -> dict[str, bytes]:
    """Small real files of each kind the reader takes, to damage."""
    from pydicom.data import get_testdata_file

    grey = radiograph_grey(SAMPLE)[::4, ::4]
    return {
        "jpeg": encode(Image.fromarray(grey), "JPEG", quality=90),
        "png": encode(Image.fromarray(grey), "PNG"),
        "png16": encode(Image.fromarray(twelve_bit(grey)), "PNG"),
        "tiff": encode(Image.fromarray(grey), "TIFF"),
        "dicom": dicom_bytes(twelve_bit(grey)),
        "dicom-jpeg2000": Path(get_testdata_file("JPEG2000.dcm")).read_bytes(),
        "dicom-rle": Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes(),
    }


def random_bytes() -> st.SearchStrategy[bytes]:
    """Any bytes, some behind a DICOM preamble or a PNG/JPEG signature, so each decoder is reached."""
    prefixes = st.sampled_from([b"", b"\x00" * 128 + b"DICM", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00"])
    return st.builds(lambda prefix, body: prefix + body, prefixes, st.binary(max_size=2048))


@st.composite
def damaged_copies(draw, seeds: dict[str, bytes]) -> bytes:
    """A real file cut short and with a few bits flipped."""
    data = bytearray(draw(st.sampled_from(sorted(seeds.values(), key=len))))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] ^= 1 << draw(st.integers(0, 7))
    return bytes(data[: draw(st.integers(0, len(data)))])


TEXT = st.text(st.characters(codec="ascii", exclude_characters="\\\x00"), max_size=12)


@st.composite
def random_dicom_headers(draw) -> bytes:
    """A DICOM whose image-describing tags hold random values, over pixel data of a random length."""
    import pydicom.config

    rows, columns = draw(st.integers(0, 70)), draw(st.integers(0, 70))
    pixels = np.asarray(draw(st.lists(st.integers(0, 65535), min_size=0, max_size=64)) or [0], dtype=np.uint16)
    ds = _dicom_dataset(np.resize(pixels, (max(rows, 1), max(columns, 1))))
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = draw(st.sampled_from([1, 8, 12, 16, 32, 64]))
    ds.BitsStored = draw(st.integers(0, 40))
    ds.HighBit = draw(st.integers(0, 40))
    ds.PixelRepresentation = draw(st.integers(0, 2))
    ds.SamplesPerPixel = draw(st.integers(0, 4))
    ds.PhotometricInterpretation = draw(st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR",
                                                         "YBR_FULL", ""]) | TEXT)
    numbers = st.floats(allow_nan=True, allow_infinity=True).map(lambda v: f"{v:.6g}") | TEXT
    optional = {
        "NumberOfFrames": st.integers(-2, 3).map(str) | TEXT,
        "WindowCenter": numbers,
        "WindowWidth": numbers,
        "RescaleSlope": numbers,
        "RescaleIntercept": numbers,
        "PatientAge": TEXT,
        "Modality": TEXT,
        "ViewPosition": TEXT,
    }
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    chosen = {}
    for index, (keyword, values) in enumerate(optional.items()):
        if draw(st.booleans()):
            placeholder = f"{index + 1}{'0' * 13}"  # 14 digits: valid for every VR here, replaced after writing
            setattr(ds, keyword, placeholder)
            chosen[placeholder.encode()] = draw(values)[:14].ljust(14).encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = _saved(ds)
    for placeholder, value in chosen.items():  # raw bytes: pydicom itself would not write invalid numbers
        data = data.replace(placeholder, value)
    return data


def any_input(seeds: dict[str, bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(random_bytes(), damaged_copies(seeds), random_dicom_headers())

