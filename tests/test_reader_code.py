"""Reader mode's code in the address: a round trip restores seed, place and every reading; damage is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pneumonia.studies.pool import teaching_order
from pneumonia.studies.reader_code import ReaderCodeError, decode, encode
from pneumonia.studies.reader_mode import Reading

LABELS = np.array([0, 1] * 20)
PROBABILITIES = np.linspace(0.01, 0.99, 40)
FILES = [f"f{i}.jpeg" for i in range(40)]
SUBTYPES = ["normal" if label == 0 else "bacteria" for label in LABELS]
TEACHING = len(teaching_order(FILES, LABELS, 0))  # reader mode shows the teaching pool only (issue 27)


def readings_for(seed: int, calls: list[tuple[int, int | None, float]]) -> list[Reading]:
    order = teaching_order(FILES, LABELS, seed)
    return [Reading(order[k], FILES[order[k]], int(LABELS[order[k]]), SUBTYPES[order[k]], call, confidence,
                    float(PROBABILITIES[order[k]]), threshold) for k, (call, confidence, threshold) in enumerate(calls)]


@given(seed=st.integers(0, 10_000), calls=st.lists(st.tuples(st.integers(0, 1), st.sampled_from([None, 1, 2, 3, 4, 5]),
                                                               st.sampled_from([0.441, 0.25, 0.9108285930585943])),
                                                     max_size=TEACHING), moved_on=st.booleans())
@settings(max_examples=200, deadline=None)
def test_a_code_restores_the_place_and_every_reading_exactly(seed, calls, moved_on):
    readings = readings_for(seed, calls)
    position = len(readings) if moved_on or not readings else len(readings) - 1
    code = encode(seed, position, readings)
    assert decode(code, LABELS, PROBABILITIES, FILES, SUBTYPES) == (seed, position, readings)
    assert len(code) <= 12 + 4 * len(readings) // 3 + 16 * len({t for *_, t in calls}) + 4  # short: a byte a case


def test_damaged_or_foreign_codes_are_refused():
    code = encode(3, 2, readings_for(3, [(1, 5, 0.4), (0, None, 0.4)]))
    flipped = code[:-3] + ("A" if code[-3] != "A" else "B") + code[-2:]
    for bad in (flipped, "", "hello", code[:-1], "!!!!"):
        with pytest.raises(ReaderCodeError):
            decode(bad, LABELS, PROBABILITIES, FILES, SUBTYPES)
    with pytest.raises(ReaderCodeError):  # more readings than these cases
        decode(encode(3, 2, readings_for(3, [(1, 5, 0.4), (0, None, 0.4)])), LABELS[:1], PROBABILITIES, FILES, SUBTYPES)
