"""A set of inputs that are not chest radiographs, built from images that ship in installed packages
(scikit-image, scikit-learn, pydicom) and from generated ones, as encoded files.

Sources are split once, by source, into `dev` (the only part looked at while designing the gate) and
`heldout` (reported only). Crops, resizes and grey conversions of a source stay on its side.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SPLITS = ("dev", "heldout")
SKIMAGE_SOURCES = {
    "dev": ["astronaut", "coffee", "camera", "coins", "page", "checkerboard", "brick", "microaneurysms"],
    "heldout": ["chelsea", "rocket", "moon", "text", "horse", "clock", "hubble_deep_field", "immunohistochemistry",
                "retina", "grass", "gravel", "logo", "colorwheel", "shepp_logan_phantom", "binary_blobs", "cell",
                "stereo_motorcycle"],
}
SKLEARN_SOURCES = {"dev": ["china.jpg"], "heldout": ["flower.jpg"]}
PYDICOM_SOURCES = {
    "dev": ["CT_small.dcm", "JPEG-lossy.dcm", "SC_rgb_jpeg.dcm", "rtdose.dcm"],
    "heldout": ["MR_small.dcm", "JPEG2000.dcm", "693_J2KI.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                "examples_overlay.dcm", "examples_rgb_color.dcm", "examples_palette.dcm", "image_dfl.dcm",
                "SC_rgb_rle_2frame.dcm", "ExplVR_BigEnd.dcm"],
}
GENERATED_SEED = {"dev": 1, "heldout": 2}
PHOTOS = {"astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "stereo_motorcycle", "camera", "coins", "moon", "brick", "grass", "gravel", "clock", "cell", "microaneurysms",
          "china.jpg", "flower.jpg"}
"""Photographs (and micrographs); their grey versions are the hard case, reported on their own."""


@dataclass(frozen=True)
class Item:
    category: str  # colour photo, grey natural photo, document or text, blank or uniform, noise, pattern, ...
    name: str
    data: bytes


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    if fmt == "JPEG" and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        return ((array - low) * (255.0 / (high - low or 1.0))).astype(np.uint8)
    return array


def variants(name: str, array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The source, its grey conversion, a centre crop, a 224 px square resize and an enlargement."""
    array = _as_uint8(array)
    if array.ndim == 3 and array.shape[2] == 4:
        array = np.asarray(Image.fromarray(array).convert("RGB"))
    out = [(name, array)]
    if array.ndim == 3:
        out.append((f"{name} grey", np.asarray(Image.fromarray(array).convert("L"))))
    h, w = array.shape[:2]
    out.append((f"{name} crop", array[h // 5 : h - h // 5, w // 5 : w - w // 5]))
    out.append((f"{name} 224", np.asarray(Image.fromarray(array).resize((224, 224), Image.Resampling.BILINEAR))))
    scale = 1024 / max(h, w)
    big = Image.fromarray(array).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
    out.append((f"{name} 1024", np.asarray(big)))
    return out


def _category(source: str, variant: np.ndarray) -> str:
    if variant.ndim == 3:
        return "colour photo or picture"
    if source in ("page", "text"):
        return "document or text"
    return "grey natural photo" if source in PHOTOS else "other grey picture"


def skimage_items(split: str) -> list[Item]:
    import skimage.data

    items = []
    for source in SKIMAGE_SOURCES[split]:
        array = getattr(skimage.data, source)()
        if isinstance(array, tuple):
            array = array[0]
        for name, variant in variants(source, array):
            fmt = "JPEG" if variant.ndim == 3 else "PNG"
            items.append(Item(_category(source, variant), f"skimage {name}", encode(variant, fmt)))
    return items


def sklearn_items(split: str) -> list[Item]:
    from sklearn.datasets import load_sample_image

    items = []
    for source in SKLEARN_SOURCES[split]:
        for name, variant in variants(source, load_sample_image(source)):
            items.append(Item(_category(source, variant), f"sklearn {name}", encode(variant, "JPEG")))
    return items


def pydicom_items(split: str) -> list[Item]:
    """Each file as DICOM bytes (other modalities, colour, multi-frame) and its first frame as a grey PNG."""
    import warnings

    import pydicom
    from pydicom.data import get_testdata_file

    items = []
    for source in PYDICOM_SOURCES[split]:
        path = Path(get_testdata_file(source))
        items.append(Item("other medical image (DICOM)", f"pydicom {source}", path.read_bytes()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, force=True)
            try:
                pixels = np.asarray(dataset.pixel_array, dtype=np.float64)
            except RuntimeError:  # 12-bit JPEG Extended needs a GPL decoder this project does not install
                continue
        frame = pixels[0] if pixels.ndim == 4 or (pixels.ndim == 3 and pixels.shape[-1] not in (3, 4)) else pixels
        grey = frame.mean(axis=2) if frame.ndim == 3 else frame
        if min(grey.shape) >= 32:
            items.append(Item("other medical image (as PNG)", f"pydicom {source} png", encode(_as_uint8(grey))))
    return items


def generated_items(split: str) -> list[Item]:
    rng = np.random.default_rng(GENERATED_SEED[split])
    size = (int(rng.integers(300, 700)), int(rng.integers(300, 700)))
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    level = int(rng.integers(30, 220))
    colour = rng.integers(0, 256, 3).astype(np.uint8)
    items = [
        Item("blank or uniform", "black", encode(np.zeros(size, np.uint8))),
        Item("blank or uniform", "white", encode(np.full(size, 255, np.uint8))),
        Item("blank or uniform", f"grey {level}", encode(np.full(size, level, np.uint8))),
        Item("blank or uniform", "uniform colour", encode(np.broadcast_to(colour, (h, w, 3)).copy())),
        Item("blank or uniform", "faint noise", encode(np.clip(rng.normal(level, 1.5, size), 0, 255).astype(np.uint8))),
        Item("noise", "gaussian noise", encode(np.clip(rng.normal(128, 50, size), 0, 255).astype(np.uint8))),
        Item("noise", "uniform noise", encode(rng.integers(0, 256, size).astype(np.uint8))),
        Item("noise", "salt and pepper", encode((rng.random(size) < 0.5).astype(np.uint8) * 255)),
        Item("noise", "colour noise", encode(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), "JPEG")),
        Item("pattern", "horizontal gradient", encode((255 * xx / (w - 1)).astype(np.uint8))),
        Item("pattern", "vertical gradient", encode((255 * yy / (h - 1)).astype(np.uint8), "JPEG")),
        Item("pattern", "radial gradient", encode((255 * np.hypot(yy - h / 2, xx - w / 2) / np.hypot(h, w) * 2).clip(0, 255).astype(np.uint8))),
        Item("pattern", "checkerboard", encode((((yy // 40) + (xx // 40)) % 2 * 255).astype(np.uint8))),
        Item("pattern", "colour blocks", encode(_colour_blocks(rng, size), "JPEG")),
        Item("document or text", "rendered text", encode(_text_image(rng, size, dark_on_light=True))),
        Item("document or text", "rendered text, inverted", encode(_text_image(rng, size, dark_on_light=False), "JPEG")),
        Item("document or text", "screenshot-like", encode(_screenshot(rng, size))),
    ]
    return items


def _colour_blocks(rng, size) -> np.ndarray:
    h, w = size
    blocks = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(blocks).resize((w, h), Image.Resampling.NEAREST))


def _text_image(rng, size, dark_on_light: bool) -> np.ndarray:
    h, w = size
    background, ink = (245, 20) if dark_on_light else (15, 235)
    image = Image.new("L", (w, h), background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(rng.integers(14, 24)))
    words = "chest radiograph report findings lungs clear no consolidation heart size normal impression".split()
    for y in range(10, h - 20, 28):
        draw.text((10, y), " ".join(rng.choice(words, 8)), fill=ink, font=font)
    return np.asarray(image)


def _screenshot(rng, size) -> np.ndarray:
    h, w = size
    image = Image.new("L", (w, h), 240)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, w, 40), fill=60)
    for _ in range(6):
        x, y = int(rng.integers(10, w - 120)), int(rng.integers(50, h - 60))
        draw.rectangle((x, y, x + 110, y + 40), fill=int(rng.integers(150, 220)), outline=30)
        draw.text((x + 8, y + 12), "Button", fill=10, font=ImageFont.load_default(size=14))
    return np.asarray(image)


def build(split: str) -> list[Item]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    return skimage_items(split) + sklearn_items(split) + pydicom_items(split) + generated_items(split)
