"""A reader study over the teacher's own films: a folder or ZIP of images (JPEG, PNG, DICOM, ...) and a CSV of
file,truth (1 = PNEUMONIA, 0 = NORMAL).

Every film goes through the app's input gate and is scored by the model, as on the Screen page; a refused film is
listed with its reason and left out. A kept film is stored inside the study as a 224-px grey PNG named by the
SHA-256 of that PNG: no file name and nothing of a DICOM header (patient name, ids, dates) is kept anywhere, only
the pixels. The truth CSV is read with keep_default_na=False, so no file name turns into a missing value.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from pneumonia.studies.design import image_key
from pneumonia.studies.store import MAX_CASES, StudyCase, StudyError

OWN_SUBTYPE = "own"
IMAGE_SIDE = 224
"""The test images' own size: the teacher's films are shown and explained at the same size."""
MAX_FILMS = 2 * MAX_CASES
MAX_FILM_BYTES = 50 * 1024 * 1024
"""The app's upload limit for one file."""


@dataclass(frozen=True)
class OwnCases:
    cases: list[StudyCase]
    images: dict[str, bytes]
    """image key -> 224-px grey PNG, stored with the study."""
    refused: list[tuple[str, str]]
    """(file, reason) for every film left out, and every truth row without a film."""


def read_truth(text: str | bytes) -> dict[str, int]:
    """file -> truth from a CSV with columns file and truth (0 or 1); a file is named by its base name."""
    import pandas as pd

    if isinstance(text, bytes):
        text = text.decode("utf-8-sig", errors="replace")
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise StudyError(f"The truth file is not a readable CSV ({str(exc).splitlines()[0]}); give columns "
                         "file,truth, one row per film.") from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    if not {"file", "truth"} <= set(table.columns):
        raise StudyError("The truth file needs the columns file and truth (1 = PNEUMONIA, 0 = NORMAL), one row per "
                         f"film; it has {', '.join(table.columns) or 'none'}.")
    truth: dict[str, int] = {}
    for row, (file, value) in enumerate(zip(table["file"], table["truth"]), start=2):
        name = PurePosixPath(str(file).strip().replace("\\", "/")).name
        if not name:
            raise StudyError(f"Row {row} of the truth file has no file name.")
        if str(value).strip() not in ("0", "1"):
            raise StudyError(f"Row {row} of the truth file ({name}): truth is 1 (PNEUMONIA) or 0 (NORMAL), not "
                             f"{str(value)!r}.")
        if name in truth:
            raise StudyError(f"{name} is in the truth file twice; give each film one row.")
        truth[name] = int(str(value).strip())
    if not truth:
        raise StudyError("The truth file has no rows; give one row per film with columns file,truth.")
    return truth


def films_from_zip(data: bytes) -> list[tuple[str, bytes]]:
    """(base name, bytes) of every file in a ZIP, folders and hidden files (e.g. __MACOSX) left out."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise StudyError("The films are not a readable ZIP file; zip the folder of images and try again.") from exc
    films = []
    with archive:
        for info in archive.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.is_dir() or any(p.startswith((".", "__MACOSX")) for p in parts):
                continue
            if info.file_size > MAX_FILM_BYTES:
                films.append((parts[-1], b""))  # refused below as unreadable, with its name
                continue
            films.append((parts[-1], archive.read(info)))
            if len(films) > MAX_FILMS:
                raise StudyError(f"The ZIP holds more than {MAX_FILMS} files; a study has at most {MAX_CASES} cases.")
    return films


def films_from(path: Path) -> list[tuple[str, bytes]]:
    """(base name, bytes) of every file in a folder (recursively, hidden files left out) or in a ZIP file."""
    path = Path(path)
    if path.is_file():
        return films_from_zip(path.read_bytes())
    if not path.is_dir():
        raise StudyError(f"{path} is neither a folder nor a ZIP file of images.")
    files = sorted(p for p in path.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(path).parts))
    if len(files) > MAX_FILMS:
        raise StudyError(f"{path} holds more than {MAX_FILMS} files; a study has at most {MAX_CASES} cases.")
    return [(p.name, p.read_bytes()) for p in files]


def _png(grey: np.ndarray) -> bytes:
    from PIL import Image

    grey = np.asarray(grey)
    if grey.ndim == 3:
        grey = grey[..., 0]
    if grey.dtype != np.uint8:
        grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
    image = Image.fromarray(grey, mode="L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)  # pixels only: no text chunks, no metadata
    return buffer.getvalue()


def own_cases(films: list[tuple[str, bytes]], truth: dict[str, int], predictor, seed: int) -> OwnCases:
    """The teacher's films as study cases: gated and scored by `predictor` (a pneumonia.screening.predictor.Predictor),
    refused ones listed with their reasons, kept ones named by content hash, in an order drawn by `seed`."""
    from pneumonia.screening.gate import REFUSED

    names = [name for name, _ in films]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StudyError(f"Two films are called {repeated[0]}; the truth file names films by file name, so give "
                         "each film its own name.")
    refused: list[tuple[str, str]] = []
    wanted = [(name, data) for name, data in films if name in truth]
    refused += [(name, "not in the truth file") for name, _ in films if name not in truth]
    screenings = predictor.screen(wanted, keep_images=True) if wanted else []
    kept: list[tuple[str, int, float]] = []
    images: dict[str, bytes] = {}
    for (name, _), screening in zip(wanted, screenings):
        if screening.status == REFUSED or screening.probability is None or screening.image is None:
            refused.append((name, screening.reason or "could not be read"))
            continue
        png = _png(screening.image)
        key = image_key(png)
        if key in images:
            refused.append((name, "the same image as another film"))
            continue
        images[key] = png
        kept.append((key, truth[name], float(screening.probability)))
    found = set(names)
    refused += [(name, "in the truth file, but no such film") for name in truth if name not in found]
    order = np.random.default_rng(seed).permutation(len(kept))
    cases = [StudyCase(position, kept[i][0], kept[i][1], OWN_SUBTYPE, kept[i][2]) for position, i in enumerate(order)]
    return OwnCases(cases, images, refused)


def create_own_study(store, name: str, films: list[tuple[str, bytes]], truth_text: str | bytes, predictor, *,
                     aided: bool = True, seed: int = 0):
    """A study over the teacher's own films (see `own_cases`); returns the study, its teacher code and the films
    left out with their reasons. The AI's threshold is the model's default."""
    made = own_cases(films, read_truth(truth_text), predictor, seed)
    if not made.cases:
        reasons = "; ".join(f"{n}: {r}" for n, r in made.refused[:5])
        raise StudyError(f"None of the films can be used ({reasons}).")
    study, teacher_code = store.create_study(name, made.cases, aided=aided, seed=seed, threshold=predictor.default_threshold.value,
                                             images=made.images)
    return study, teacher_code, made.refused
