"""The test films split once into a study pool and a teaching pool, so a reader study never uses a film the app
shows elsewhere with its truth.

Reader mode reveals the truth after each call, the Threshold page's case gallery labels films by confusion-matrix
cell, and the About page's hardest cases name their class. Those pages draw only from the teaching pool; reader
studies draw only from the study pool. The split is a fixed rule on the file names, so it is the same on every
machine and after every `evaluate`, needs no stored list, and does not depend on the model's scores:

    within each class, order the films by SHA-256 of "study-pool:" + the file's base name, and put the first
    third (rounded to the nearest film) in the study pool.

On the shipped test set (234 NORMAL, 390 PNEUMONIA) that is 78 NORMAL and 130 PNEUMONIA films for studies, and
156 and 260 for teaching.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

import numpy as np

STUDY_SHARE = 1 / 3
"""The share of each class's test films kept for reader studies."""
SALT = "study-pool:"


def _key(file: str) -> str:
    name = PurePosixPath(str(file).replace("\\", "/")).name
    return hashlib.sha256((SALT + name).encode()).hexdigest()


def study_pool_mask(files, labels) -> np.ndarray:
    """True for the films kept for reader studies (see the module's rule), False for those the teaching pages use."""
    labels = np.asarray(labels)
    keys = np.array([_key(f) for f in files])
    mask = np.zeros(labels.size, dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranked = members[np.argsort(keys[members], kind="stable")]
        mask[ranked[: round(members.size * STUDY_SHARE)]] = True
    return mask


def study_indices(files, labels) -> np.ndarray:
    """Indices of the study pool's films, in the table's order."""
    return np.flatnonzero(study_pool_mask(files, labels))


def teaching_indices(files, labels) -> np.ndarray:
    """Indices of the films Reader mode, the case gallery and the hardest-cases view may show, in the table's order."""
    return np.flatnonzero(~study_pool_mask(files, labels))


def study_pool_names(files, labels) -> set[str]:
    """Base names of the study pool's films, to leave out of a view that lists films by name (the hardest cases)."""
    return {PurePosixPath(str(f).replace("\\", "/")).name for f, kept in zip(files, study_pool_mask(files, labels))
            if kept}


def teaching_order(files, labels, seed: int) -> list[int]:
    """Reader mode's seeded, class-interleaved order (`pneumonia.studies.reader_mode.reader_order`) over the teaching pool only:
    indices into the whole test table."""
    from pneumonia.studies.reader_mode import reader_order

    teaching = teaching_indices(files, labels)
    return teaching[reader_order(np.asarray(labels)[teaching], seed)].tolist()
