"""Reader mode's place and tally as a short code, so a reload or a phone's tab switch resumes where the reader was
(issue 30). The code goes in the page's address (`?r=...`); it holds only the seed, whether the last case was
moved past, each call with its confidence, and the thresholds the cases were read at. Everything else (which case,
its truth, the model's score) follows from the seed and the shipped test predictions. Nothing in it identifies
anyone. A CRC guards it: a mistyped or stale code is refused, never half-read.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

from pneumonia.studies.pool import teaching_order
from pneumonia.studies.reader_mode import Reading

VERSION = 1
MAX_THRESHOLDS = 16


class ReaderCodeError(ValueError):
    """The code cannot be read (damaged, from another version, or for other test cases)."""


def encode(seed: int, position: int, readings: list[Reading]) -> str:
    """The code for a reader at `position` (0-based) with `readings` (one per case read, in order)."""
    if not 0 <= seed < 2**16:
        raise ValueError(f"seed must lie in [0, 65535], not {seed}")
    if position not in (len(readings), len(readings) - 1) or position < 0:
        raise ValueError("position is the number of readings, or one less while the last case is shown")
    thresholds = list(dict.fromkeys(float(r.threshold) for r in readings))
    if len(thresholds) > MAX_THRESHOLDS:  # keep the code short: later thresholds fold onto the last kept one
        thresholds = thresholds[:MAX_THRESHOLDS]
    body = struct.pack(">BHBH", VERSION, seed, int(position == len(readings)), len(readings))
    body += struct.pack(">B", len(thresholds)) + b"".join(struct.pack(">d", t) for t in thresholds)
    for reading in readings:
        slot = thresholds.index(float(reading.threshold)) if float(reading.threshold) in thresholds else len(thresholds) - 1
        confidence = 0 if reading.confidence is None else int(reading.confidence)
        body += bytes([reading.reader_call | confidence << 1 | slot << 4])
    body += struct.pack(">I", zlib.crc32(body))
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode(code: str, labels: np.ndarray, probabilities: np.ndarray, files: list[str], subtypes: list[str]
           ) -> tuple[int, int, list[Reading]]:
    """(seed, position, readings) from a code, rebuilt against the test predictions; ReaderCodeError if it cannot
    be read."""
    try:
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
        body, check = raw[:-4], raw[-4:]
        if len(raw) < 11 or struct.unpack(">I", check)[0] != zlib.crc32(body):
            raise ReaderCodeError("the reader code is damaged")
        version, seed, moved_on, count = struct.unpack(">BHBH", body[:6])
        if version != VERSION:
            raise ReaderCodeError("the reader code is from another version of this app")
        n_thresholds = body[6]
        thresholds = [struct.unpack(">d", body[7 + 8 * i: 15 + 8 * i])[0] for i in range(n_thresholds)]
        calls = body[7 + 8 * n_thresholds:]
        order = teaching_order(files, np.asarray(labels), seed)  # reader mode's own order (issue 27's pool)
        if len(calls) != count or count > len(order):
            raise ReaderCodeError("the reader code does not match these test cases")
        readings = []
        for k, byte in enumerate(calls):
            index = order[k]
            confidence = (byte >> 1) & 0b111
            readings.append(Reading(index=index, file=files[index], truth=int(labels[index]),
                                    subtype=str(subtypes[index]), reader_call=byte & 1,
                                    confidence=confidence or None, model_probability=float(probabilities[index]),
                                    threshold=thresholds[byte >> 4]))
        return seed, count if moved_on else count - 1, readings
    except ReaderCodeError:
        raise
    except Exception as exc:  # bad base64, a short body, an index out of range, an impossible confidence
        raise ReaderCodeError("the reader code is damaged") from exc
