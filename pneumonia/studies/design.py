"""How a reader study runs: which test cases it holds, in which order each reader sees them, what a reader does
next, and how a call and its confidence become one rating.

The sequential design: each case is first read alone (a call and a confidence of 1 to 5); in an AI-aided study
the reader then sees the model's score and maps and reads the same case again, keeping or changing the call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumonia.io.bundle import Predictions
from pneumonia.studies.pool import study_indices
from pneumonia.studies.store import AIDED, UNAIDED, Reader, Study, StudyCase, StudyError, StudyReading, StudyStore

DEFAULT_CASES = 20
CONFIDENCE_WORDS = {1: "a guess", 2: "unsure", 3: "fairly sure", 4: "sure", 5: "certain"}
MODALITY_WORDS = {UNAIDED: "alone", AIDED: "with the AI"}


KEY_PREFIX = "sha256:"


def image_key(data: bytes) -> str:
    """A case's image as the study stores it: the SHA-256 of the image's bytes, never its file name (the data set's
    names carry patient numbers)."""
    return KEY_PREFIX + hashlib.sha256(data).hexdigest()


def thumbnail_keys(folder: Path) -> dict[str, Path]:
    """image_key -> path for every 224-px test image in `folder` (how a page finds a case's image again)."""
    return {image_key(path.read_bytes()): path for path in sorted(Path(folder).glob("*.jpg"))}


def draw_cases(test: Predictions, count: int, seed: int, thumbnails: Path | None = None) -> list[StudyCase]:
    """`count` films of the study pool (`pneumonia.studies.pool`: never shown with their truth elsewhere in the
    app), drawn by seed and stratified by class: NORMAL and PNEUMONIA in the pool's proportions, within one case.
    The cases' positions (and so their ids in exports) are in a random order, not by class. With `thumbnails`
    (the folder of 224-px copies) each case is named by its image's content hash, not its file name."""
    pool = study_indices(test.files, test.labels)
    labels = np.asarray(test.labels)[pool]
    if count > pool.size:
        raise StudyError(f"A study draws from the {pool.size} test images kept for studies (no other page shows "
                         f"them); ask for at most {pool.size} cases, not {count}.")
    rng = np.random.default_rng(seed)
    positives = _positives(count, int(labels.sum()), int((labels == 0).sum()))
    chosen = np.concatenate([rng.choice(pool[labels == 1], positives, replace=False),
                             rng.choice(pool[labels == 0], count - positives, replace=False)]).astype(int)
    chosen = rng.permutation(chosen)

    def name(file: str) -> str:
        if thumbnails is None:
            return file
        from pneumonia.io.bundle import thumbnail_name

        path = Path(thumbnails) / thumbnail_name(file)
        if not path.is_file():
            raise StudyError(f"The test images are missing ({path.parent}); run `python -m pneumonia evaluate` to "
                             "write them.")
        return image_key(path.read_bytes())

    return [
        StudyCase(position, name(test.files[i]), int(test.labels[i]), str(test.subtypes[i]),
                  float(test.probabilities[i]))
        for position, i in enumerate(chosen)
    ]


def _positives(count: int, positives: int, negatives: int) -> int:
    """PNEUMONIA cases among `count` in the pool's proportion (within one), at least one of each class where the
    count allows, and never more of a class than the pool holds."""
    wanted = round(count * positives / max(1, positives + negatives))
    wanted = max(1, min(wanted, count - 1)) if count > 1 else wanted
    return max(count - negatives, min(wanted, positives))


def case_id(position: int) -> str:
    """A case's name in exports: its place in the study's draw, which says nothing about the image or the child."""
    return f"case{position + 1:03d}"


def rating(call: int, confidence: int) -> int:
    """Call and confidence as one 10-point rating, larger meaning more likely pneumonia: NORMAL and certain is 1,
    NORMAL and a guess 5, PNEUMONIA and a guess 6, PNEUMONIA and certain 10. So `rating >= 6` is the call, and
    the ratings rank the cases as the reader believes them, which is what the readers' AUCs are computed on."""
    if call not in (0, 1) or confidence not in CONFIDENCE_WORDS:
        raise ValueError(f"call is 0 or 1 and confidence 1 to 5, not {call!r} and {confidence!r}")
    return 5 + confidence if call == 1 else 6 - confidence


def reader_positions(cases: list[StudyCase], reader: Reader) -> list[int]:
    """This reader's own order of the study's cases: a uniformly random permutation seeded by the reader's
    `order_seed` (drawn when they joined and stored with them, so the order can be replayed). It is neither
    interleaved nor balanced by class, so the class of one case says nothing about the next one's; and no order
    effect is shared by the class. In an AI-aided study each case is read alone and then at once with the AI, so
    the aided reads follow the same random order."""
    positions = sorted(c.position for c in cases)
    order = np.random.default_rng(reader.order_seed).permutation(len(positions))
    return [positions[i] for i in order]


def order_of(cases: list[StudyCase], reader: Reader) -> dict[int, int]:
    """Case position -> its place (from 1) in this reader's order: the `order` column of the export."""
    return {position: place for place, position in enumerate(reader_positions(cases, reader), start=1)}


@dataclass(frozen=True)
class Step:
    """What the reader does next: read `case` in `modality`, or nothing (`case` None) once every case is done."""

    case: StudyCase | None
    modality: str | None
    done: int
    """Cases finished (read in every modality of the study)."""
    total: int
    unaided: StudyReading | None = None
    """The reader's own first reading of this case, shown while they read it with the AI."""

    @property
    def number(self) -> int:
        """The case's place in the reader's order, from 1."""
        return self.done + 1


def next_step(study: Study, cases: list[StudyCase], reader: Reader, readings: list[StudyReading]) -> Step:
    """The first case in the reader's order that is not finished, and the modality to read it in."""
    by_case = {(r.position, r.modality): r for r in readings}
    by_position = {c.position: c for c in cases}
    for done, position in enumerate(reader_positions(cases, reader)):
        for modality in study.modalities:
            if (position, modality) not in by_case:
                return Step(by_position[position], modality, done, len(cases), by_case.get((position, UNAIDED)))
    return Step(None, None, len(cases), len(cases))


def is_finished(study: Study, cases: list[StudyCase], readings: list[StudyReading]) -> bool:
    """Every case read in every modality of the study."""
    return {(r.position, r.modality) for r in readings} >= {(c.position, m) for c in cases for m in study.modalities}


def commit_reading(
    store: StudyStore, study: Study, cases: list[StudyCase], reader: Reader, position: int, modality: str,
    call: int, confidence: int,
) -> tuple[StudyReading, bool]:
    """Store a reading, committed before this returns, if it is the reader's next one in their order (or the
    same reading again: then the stored one comes back, with False)."""

    def in_turn(earlier: list[StudyReading]) -> bool:
        step = next_step(study, cases, reader, earlier)
        return step.case is not None and (step.case.position, step.modality) == (position, modality)

    return store.record_reading(reader.id, position, modality, call, confidence, allowed=in_turn)
