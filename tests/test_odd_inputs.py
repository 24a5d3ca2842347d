"""One odd file never sinks a batch: the odd-input matrix and fuzzing of the reader and the gate."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fuzz_inputs import SAMPLE, any_input, damaged_copies, random_bytes, random_dicom_headers, seed_files
from hypothesis import HealthCheck, given, settings
from inputs import odd_inputs, radiograph_grey

from pneumonia.screening.gate import CAUTION, OK, REFUSED
from pneumonia.screening.predictor import PendingInput, Screening

pytestmark = pytest.mark.score_sensitive

STATUSES = {OK, CAUTION, REFUSED}
SEEDS = seed_files()
FUZZ = settings(max_examples=700, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_every_odd_input_gets_its_status_and_one_plain_line_and_the_batch_goes_on(committed_predictor):
    items = odd_inputs(radiograph_grey(SAMPLE))
    results = committed_predictor.screen([(name, data) for name, (data, _) in items.items()] + [("good.jpeg", SAMPLE)])
    assert [r.name for r in results] == [*items, "good.jpeg"]
    assert results[-1].status == OK and results[-1].probability is not None  # the batch was scored
    for (name, (_, expected)), result in zip(items.items(), results):
        assert result.status in ({OK, CAUTION} if expected == "scored" else {expected}), (name, result.reason)
        assert (result.probability is None) == (result.status == REFUSED), name
        if result.status != OK:
            assert result.reason and "\n" not in result.reason and "Traceback" not in result.reason, name
    by_name = dict(zip(items, results))
    for age in ("62", "62 Y", "062y"):
        assert "adult patient: the model was trained on children aged 1–5" in by_name[f"dicom PatientAge {age}"].reason
    assert "patient aged under 1 year: the model was trained on children" in by_name["dicom PatientAge 5 months"].reason
    assert "display window is invalid" in by_name["dicom window width 0"].reason
    assert "no valid value" in by_name["tiff float with one +inf"].reason
    twelve = by_name["png 16-bit holding 12-bit, no sBIT"]
    assert twelve.probability == pytest.approx(by_name["png 16-bit holding 12-bit, sBIT 12"].probability, abs=1e-5)


def test_a_large_radiograph_is_judged_like_its_small_copy(committed_predictor):
    """Reduced right after decoding, a 7,000-px film keeps the statistics of the film (a stride computed from the
    file's size on the reduced copy once made it look like noise)."""
    from inputs import encode
    from PIL import Image

    film = Image.fromarray(radiograph_grey(SAMPLE))
    small, large = committed_predictor.screen([("224", encode(film, "PNG")),
                                               ("7000", encode(film.resize((7000, 7000), Image.BILINEAR), "PNG"))])
    assert small.status == large.status == OK, large.reason
    assert large.probability == pytest.approx(small.probability, abs=0.02)


def _holds_its_promise(predictor, data: bytes) -> None:
    """No exception, a known status, a one-line reason when not ok, within 2 s."""
    started = time.perf_counter()
    result = predictor.prepare("fuzzed", data, keep_images=True)
    elapsed = time.perf_counter() - started
    if isinstance(result, PendingInput):
        result = Screening("fuzzed", CAUTION if result.cautions else OK, "; ".join(result.cautions))
    assert result.status in STATUSES
    assert result.status == OK or (result.reason and "\n" not in result.reason)
    assert elapsed < 2.0, elapsed


@FUZZ
@given(data=random_bytes())
def test_random_bytes_never_raise(committed_predictor, data):
    _holds_its_promise(committed_predictor, data)


@FUZZ
@given(data=damaged_copies(SEEDS))
def test_truncated_and_bit_flipped_files_never_raise(committed_predictor, data):
    _holds_its_promise(committed_predictor, data)


@settings(FUZZ, max_examples=600)
@given(data=random_dicom_headers())
def test_dicom_headers_with_random_values_never_raise(committed_predictor, data):
    _holds_its_promise(committed_predictor, data)


@settings(FUZZ, max_examples=30)
@given(data=any_input(SEEDS))
def test_fuzzed_files_in_a_batch_never_stop_it(committed_predictor, data):
    results = committed_predictor.screen([("fuzzed", data), ("good.jpeg", Path(SAMPLE))])
    assert results[1].status == OK and results[1].probability is not None
