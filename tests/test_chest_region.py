"""The chest region: found on a synthetic film, never empty on any image, and the readout's outside sentence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pneumonia.explain.chest_region import (
    ChestRegion,
    border_mask,
    chest_mask,
    chest_region,
    fallback_mask,
    mostly_outside,
    outlined,
    outside_sentence,
    share_outside,
)

SIZE = 128
CORNER = (slice(2, 12), slice(2, 16))
"""Where the synthetic film's burnt-in marker sits."""


def ellipse(centre_row: float, centre_col: float, half_height: float, half_width: float) -> np.ndarray:
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    return ((rows - centre_row) / half_height) ** 2 + ((cols - centre_col) / half_width) ** 2 <= 1.0


LUNGS = ellipse(62, 40, 32, 17) | ellipse(62, 88, 32, 17)


def synthetic_chest(scale: float = 255.0) -> np.ndarray:
    """Dark air at the sides, a bright body, two dark lung fields, a bright marker in the top-left corner."""
    rng = np.random.default_rng(0)
    image = np.full((SIZE, SIZE), 0.05)
    image[ellipse(80, 64, 90, 56)] = 0.75  # the body, running off the bottom of the film
    image[LUNGS] = 0.30
    image[CORNER] = 1.0
    return ((image + rng.normal(0, 0.02, image.shape)).clip(0, 1) * scale).astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_the_mask_covers_the_lungs_and_leaves_out_the_corner_marker(scale):
    region = chest_region(synthetic_chest(scale))
    assert region.found_lungs
    assert region.mask.dtype == bool and region.mask.shape == (SIZE, SIZE)
    assert region.mask[LUNGS].mean() > 0.97
    assert not region.mask[CORNER].any()
    assert not region.mask[~border_mask((SIZE, SIZE))].any()
    assert region.mask.mean() < 0.6  # the hull of the lungs, not the whole film


def test_a_film_without_two_lungs_falls_back_to_its_centre():
    one_lung = synthetic_chest()
    one_lung[ellipse(62, 88, 32, 17)] = 0.75 * 255
    region = chest_region(one_lung)
    assert not region.found_lungs
    assert np.array_equal(region.mask, fallback_mask((SIZE, SIZE)))
    assert region.mask[SIZE // 2, SIZE // 2] and not region.mask[CORNER].any()


def test_evidence_in_the_corner_is_outside_and_the_sentence_fires():
    mask = chest_mask(synthetic_chest())
    weights = np.zeros((SIZE, SIZE))
    weights[CORNER] = 1.0
    weights[LUNGS] = -5.0  # LIME's push towards NORMAL does not count
    weights[60, 40] = 0.5  # a little evidence inside
    share = share_outside(weights, mask)
    assert share == pytest.approx(140 / 140.5)
    assert mostly_outside(share)
    assert outside_sentence(["Grad-CAM"]) == (
        "Most of Grad-CAM's evidence lies outside the chest, near the edge of the film where markers and text "
        "sit, or in the neck or belly: the score may rest on something other than the lungs."
    )


def test_evidence_in_the_lungs_is_inside_and_nothing_is_said():
    mask = chest_mask(synthetic_chest())
    weights = np.where(LUNGS, 1.0, 0.0)
    weights[CORNER] = 0.1
    share = share_outside(weights, mask)
    assert share < 0.05
    assert not mostly_outside(share)
    assert outside_sentence([m for m, s in {"LIME": share, "Grad-CAM": share}.items() if mostly_outside(s)]) is None


def test_share_outside_counts_only_positive_weight():
    mask = np.array([[True, False], [True, False]])
    assert share_outside(np.array([[1.0, 3.0], [0.0, 0.0]]), mask) == 0.75
    assert share_outside(np.array([[-1.0, -3.0], [0.0, 0.0]]), mask) == 0.0  # no evidence: nothing outside
    assert mostly_outside(0.51) and not mostly_outside(0.5)
    with pytest.raises(ValueError, match="differs from mask shape"):
        share_outside(np.zeros((3, 3)), mask)


def test_outline_marks_the_region_edge_only():
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:6, 2:6] = True
    drawn = outlined(np.zeros((8, 8, 3), dtype=np.uint8), mask)
    green = (drawn == (0, 220, 0)).all(axis=-1)
    assert green.sum() == 12 and green[2, 2] and not green[3, 3] and not green[0, 0]


def test_blank_and_tiny_images_fall_back_and_are_never_empty():
    blank = chest_region(np.zeros((64, 64)))
    assert not blank.found_lungs and np.array_equal(blank.mask, fallback_mask((64, 64))) and blank.mask.any()
    assert chest_mask(np.zeros((1, 1))).tolist() == [[True]]
    with pytest.raises(ValueError, match="2-D grey image"):
        chest_mask(np.zeros((4, 4, 3)))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    arrays(
        dtype=st.sampled_from([np.uint8, np.float32, np.float64]),
        shape=st.tuples(st.integers(1, 80), st.integers(1, 80)),
    )
)
def test_any_grey_image_gives_a_non_empty_boolean_mask_of_its_shape(image):
    region = chest_region(image)
    assert isinstance(region, ChestRegion)
    assert region.mask.dtype == bool and region.mask.shape == image.shape
    assert region.mask.any()
