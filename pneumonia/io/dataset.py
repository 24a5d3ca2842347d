"""Finding, labelling, splitting and decoding chest X-rays in the Kaggle folder layout."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from pneumonia.config import CLASS_NAMES, IMAGE_EXTENSIONS
from pneumonia.errors import DataError
from pneumonia.io.images import decode_grayscale

_PNEUMONIA_PATIENT = re.compile(r"^(person\d+)_", re.IGNORECASE)
_NORMAL_PATIENT = re.compile(r"^((?:NORMAL\d*-)?IM-\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into CLASS_NAMES
    subtype: str  # "normal", "bacteria", "virus" or "unknown"
    patient: str


def subtype_from_name(name: str, label: int) -> str:
    """Kermany file names say whether a pneumonia is bacterial or viral."""
    if label == 0:
        return "normal"
    lowered = name.lower()
    for subtype in ("bacteria", "virus"):
        if subtype in lowered:
            return subtype
    return "unknown"


def patient_from_name(name: str, label: int) -> str:
    """The patient id in a file name; files we cannot parse count as their own patient."""
    stem = Path(name).stem
    match = (_PNEUMONIA_PATIENT if label == 1 else _NORMAL_PATIENT).match(stem)
    patient = match.group(1) if match else stem
    return f"{CLASS_NAMES[label]}/{patient.lower()}"


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _class_dir(split_dir: Path, class_name: str) -> Path | None:
    """Class folders matched case-insensitively (`normal/` and `NORMAL/` both work)."""
    for child in split_dir.iterdir():
        if child.is_dir() and child.name.upper() == class_name:
            return child
    return None


def discover_split(split_dir: Path) -> list[Sample]:
    """All labelled images under one split folder such as `train/` or `test/`."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} is not a folder; expected one with NORMAL/ and PNEUMONIA/ inside.")
    samples: list[Sample] = []
    for label, class_name in enumerate(CLASS_NAMES):
        class_dir = _class_dir(split_dir, class_name)
        if class_dir is None:
            raise DataError(f"{split_dir} has no {class_name}/ folder; expected NORMAL/ and PNEUMONIA/.")
        files = sorted(p for p in class_dir.rglob("*") if is_image_file(p))
        if not files:
            raise DataError(f"{class_dir} holds no .jpeg/.jpg/.png images.")
        samples.extend(
            Sample(p, label, subtype_from_name(p.name, label), patient_from_name(p.name, label)) for p in files
        )
    return samples


def find_split(data_dir: Path, split: str) -> Path:
    """`data_dir/split`, also accepting the Kaggle zip's doubled `chest_xray/chest_xray/` nesting."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"Data folder {data_dir} does not exist; pass the folder that holds train/ and test/.")
    for candidate in (data_dir / split, data_dir / "chest_xray" / split):
        if candidate.is_dir():
            return candidate
    raise DataError(f"{data_dir} has no {split}/ folder; pass the folder that holds train/ and test/.")


def split_seed(config) -> int:
    """The patient split's seed: its own setting, else the run's seed (as every run before split_seed)."""
    if isinstance(config, Mapping):
        return config.get("split_seed") if config.get("split_seed") is not None else config["seed"]
    return config.split_seed if config.split_seed is not None else config.seed


def patient_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A seeded (train, validation) split, stratified by class and grouped by patient."""
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < fraction < 0.5:
        raise ValueError("validation fraction must lie in (0, 0.5)")
    labels = np.array([s.label for s in samples])
    groups = np.array([s.patient for s in samples])
    folds = StratifiedGroupKFold(n_splits=round(1 / fraction), shuffle=True, random_state=seed)
    train_idx, val_idx = next(folds.split(np.zeros(len(samples)), labels, groups))
    return [samples[i] for i in train_idx], [samples[i] for i in val_idx]


def load_images(paths: list[Path], size: int) -> np.ndarray:
    """Decode many files into a (n, size, size, 1) float32 batch."""
    batch = np.empty((len(paths), size, size, 1), dtype=np.float32)
    for i, path in enumerate(paths):
        batch[i, ..., 0] = decode_grayscale(Path(path), size)
    return batch


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_hash(samples: list[Sample], root: Path) -> str:
    """One SHA-256 over (relative path, label, file hash) of every sample: names the exact data read."""
    digest = hashlib.sha256()
    for sample in sorted(samples, key=lambda s: str(s.path)):
        rel = Path(sample.path).relative_to(root).as_posix()
        digest.update(f"{rel}\t{sample.label}\t{sha256_file(sample.path)}\n".encode())
    return digest.hexdigest()
