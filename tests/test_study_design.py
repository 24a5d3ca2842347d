"""A reader study measures readers, not the case order: each reader's order is a fresh random permutation (no class
sequence to learn), and a study's films are never among those other pages show with their truth."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

import numpy as np
import pytest

from pneumonia.config import MODELS_DIR
from pneumonia.decision.metrics import cell_indices
from pneumonia.io.bundle import Predictions, read_metadata, read_test_predictions
from pneumonia.studies.design import draw_cases, order_of, reader_positions
from pneumonia.studies.pool import (
    study_indices,
    study_pool_mask,
    study_pool_names,
    teaching_indices,
    teaching_order,
)
from pneumonia.studies.store import Reader, StudyCase, StudyError

READERS = 1000


def cases_of(normals: int, pneumonias: int, seed: int = 0) -> list[StudyCase]:
    truths = np.random.default_rng(seed).permutation([0] * normals + [1] * pneumonias)
    return [StudyCase(i, f"f{i}.jpeg", int(t), "normal" if t == 0 else "bacteria", 0.5) for i, t in enumerate(truths)]


def class_sequences(cases: list[StudyCase], readers: int = READERS) -> list[tuple[int, ...]]:
    """The class sequence each of `readers` simulated readers sees, with order seeds drawn as the store draws them."""
    truth = {c.position: c.truth for c in cases}
    seeds = np.random.default_rng(2024).integers(0, 2**31, readers)
    return [tuple(truth[p] for p in reader_positions(cases, Reader(i, 1, f"r{i}", int(s), 0.0)))
            for i, s in enumerate(seeds)]


@pytest.mark.parametrize("normals, pneumonias", [(10, 10), (20, 80)])
def test_no_class_sequence_is_predictable_from_the_case_order(normals, pneumonias):
    cases = cases_of(normals, pneumonias)
    sequences = class_sequences(cases)
    n = normals + pneumonias

    # Practically every reader sees a different class sequence (today's balanced order gave 5 in 4,000).
    assert len(set(sequences)) >= 0.99 * READERS

    # After a NORMAL, the next case is NORMAL at the rate random order gives: (N - 1) / (n - 1), within sampling
    # error (4 standard errors; the pairs of one reader are nearly independent). Interleaving gives about 0.
    pairs = Counter(pair for s in sequences for pair in itertools.pairwise(s))
    after_normal = pairs[(0, 0)] + pairs[(0, 1)]
    expected = (normals - 1) / (n - 1)
    rate = pairs[(0, 0)] / after_normal
    assert abs(rate - expected) < 4 * math.sqrt(expected * (1 - expected) / after_normal), (rate, expected)
    expected_pp = (pneumonias - 1) / (n - 1)
    rate_pp = pairs[(1, 1)] / (pairs[(1, 0)] + pairs[(1, 1)])
    assert abs(rate_pp - expected_pp) < 4 * math.sqrt(expected_pp * (1 - expected_pp) / (pairs[(1, 0)] + pairs[(1, 1)]))

    # A reader who guesses "the other class than the last one" (what today's interleaving rewards, at 93-100%) is
    # right only as often as random order allows: 2 N P / (n (n - 1)), about a half for 10/10 and a third for 20/80.
    alternate = np.mean([s[i] != s[i - 1] for s in sequences for i in range(1, n)])
    assert alternate == pytest.approx(2 * normals * pneumonias / (n * (n - 1)), abs=0.015)

    # Every case is equally likely at every place: the first case is NORMAL as often as NORMALs are common.
    first_normal = np.mean([s[0] == 0 for s in sequences])
    share = normals / n
    assert abs(first_normal - share) < 4 * math.sqrt(share * (1 - share) / READERS)


def test_a_readers_order_is_replayed_from_their_stored_seed():
    cases = cases_of(6, 14)
    ann, again, bob = (Reader(1, 1, "Ann", 12345, 0.0), Reader(1, 1, "Ann", 12345, 99.0),
                       Reader(2, 1, "Bob", 54321, 0.0))
    assert reader_positions(cases, ann) == reader_positions(cases, again)
    assert sorted(reader_positions(cases, ann)) == list(range(20))
    assert reader_positions(cases, ann) != reader_positions(cases, bob)
    places = order_of(cases, ann)
    assert sorted(places.values()) == list(range(1, 21))
    assert [p for p, _ in sorted(places.items(), key=lambda item: item[1])] == reader_positions(cases, ann)


# ---------------------------------------------------------------- the study pool


@pytest.fixture(scope="module")
def shipped() -> Predictions:
    return read_test_predictions(MODELS_DIR)


def test_the_study_pool_is_a_fixed_third_of_each_class(shipped):
    mask = study_pool_mask(shipped.files, shipped.labels)
    assert (int(mask[shipped.labels == 0].sum()), int(mask[shipped.labels == 1].sum())) == (78, 130)
    # The rule reads file names only: the same whatever the table's order or the model's scores.
    order = np.random.default_rng(0).permutation(len(shipped.files))
    shuffled = study_pool_mask([shipped.files[i] for i in order], shipped.labels[order])
    assert np.array_equal(shuffled, mask[order])
    assert set(study_indices(shipped.files, shipped.labels)).isdisjoint(teaching_indices(shipped.files, shipped.labels))
    assert len(study_indices(shipped.files, shipped.labels)) + len(teaching_indices(shipped.files, shipped.labels)) \
        == len(shipped.files)


def test_study_cases_are_never_shown_by_reader_mode_the_gallery_or_the_hardest_cases(shipped):
    pool = {shipped.files[i] for i in study_indices(shipped.files, shipped.labels)}
    drawn = {c.file for seed in range(30) for count in (20, 60, 200) for c in draw_cases(shipped, count, seed)}
    assert drawn <= pool and len(drawn) > 150

    # Reader mode: every seed's order holds the whole teaching pool and no study film.
    for seed in (0, 1, 7, 10_000):
        order = teaching_order(shipped.files, shipped.labels, seed)
        assert sorted(order) == sorted(teaching_indices(shipped.files, shipped.labels).tolist())
        assert pool.isdisjoint(shipped.files[i] for i in order)

    # The case gallery at any threshold, as ui/threshold.py filters it.
    teaching = set(teaching_indices(shipped.files, shipped.labels).tolist())
    for threshold in (0.1, 0.5, 0.9):
        for cell in ("TP", "FP", "FN", "TN"):
            shown = [i for i in cell_indices(shipped.labels, shipped.probabilities, threshold, cell) if i in teaching]
            assert pool.isdisjoint(shipped.files[i] for i in shown)

    # The About page's hardest cases, as ui/about.py filters them.
    from ui.about import teaching_cases

    hardest = read_metadata(MODELS_DIR)["metrics"]["test"]["hardest_cases"]
    names = study_pool_names(shipped.files, shipped.labels)
    assert {c["source"] for c in teaching_cases(hardest, shipped)}.isdisjoint(names)
    assert any(c["source"] in names for c in hardest)  # the filter has something to do on the shipped model


def test_cases_are_stratified_in_a_random_order_and_a_study_larger_than_the_pool_is_refused(shipped):
    share = shipped.labels[study_indices(shipped.files, shipped.labels)].mean()
    for seed in range(5):
        cases = draw_cases(shipped, 40, seed)
        assert abs(sum(c.truth for c in cases) - share * 40) <= 1
        assert [c.position for c in cases] == list(range(40))
    truths = [tuple(c.truth for c in draw_cases(shipped, 20, seed)) for seed in range(50)]
    assert len(set(truths)) == 50  # the draw's positions (case ids in exports) follow no class pattern
    with pytest.raises(StudyError, match="at most 208"):
        draw_cases(shipped, 209, 0)


def test_the_plain_words_never_print_nan_and_say_what_the_study_can_conclude():
    import pandas as pd

    from pneumonia.studies.mrmc import analyse
    from pneumonia.studies.results import plain_words

    # Readers who agree exactly: nothing can be tested, and the words say why.
    rows = [(r, f"c{k}", int(k < 3), m, float(k < 3)) for r in "AB" for m in ("unaided", "aided") for k in range(6)]
    words = plain_words(analyse(pd.DataFrame(rows, columns=["reader", "case", "truth", "modality", "rating"])), 0.9)
    assert "nan" not in words.lower() and "cannot be worked out" in words and "every reader scored the same" in words
    # A real spread: the verdict, the size of change the study can see, and its limits; no statistic named.
    rng = np.random.default_rng(0)
    rows = [(r, f"c{k}", int(k < 8), m, float(rng.normal((k < 8) * (1.5 if m == "aided" else 1.0), 1)))
            for r in "ABCDE" for m in ("unaided", "aided") for k in range(16)]
    result = analyse(pd.DataFrame(rows, columns=["reader", "case", "truth", "modality", "rating"]))
    words = plain_words(result, 0.95)
    assert "**5 readers** finished all **16 cases**" in words and f"{result.mean_auc['unaided']:.2f} alone" in words
    assert "With 5 readers and 16 cases, a change smaller than about" in words
    assert "cannot show that the AI is safe" in words
    for term in ("AUC", "p =", "p <", "nan", "interval"):
        assert term not in words, term
    # One modality: the range is cut to [0, 1].
    one = analyse(pd.DataFrame([r for r in rows if r[3] == "unaided"],
                               columns=["reader", "case", "truth", "modality", "rating"]))
    low, high = (float(v) for v in re.search(r"between (\d\.\d\d) and (\d\.\d\d)", plain_words(one)).groups())
    assert 0.0 <= low <= high <= 1.0


def test_cases_are_named_by_their_images_content_hash_and_found_again(shipped):
    from pneumonia.io.bundle import THUMBNAILS_DIR, thumbnail_name
    from pneumonia.studies.design import image_key, thumbnail_keys

    folder = MODELS_DIR / THUMBNAILS_DIR
    by_name = draw_cases(shipped, 12, 4)
    by_hash = draw_cases(shipped, 12, 4, folder)
    keys = thumbnail_keys(folder)
    for named, hashed in zip(by_name, by_hash):
        assert hashed.file == image_key((folder / thumbnail_name(named.file)).read_bytes())
        assert keys[hashed.file] == folder / thumbnail_name(named.file)
        assert (hashed.truth, hashed.probability) == (named.truth, named.probability)
        assert "person" not in hashed.file and "IM-" not in hashed.file
    with pytest.raises(StudyError, match="test images are missing"):
        draw_cases(shipped, 4, 0, MODELS_DIR / "nowhere")
