"""Where the chest is on a film, found from the image alone, so the readout can say when an explanation's
evidence lies outside it (a corner marker, the neck, the abdomen) instead of in the lungs.

No downloaded model: the body is separated from the air around it by a watershed, the lung fields are its
two largest dark areas left and right of the midline (over a range of thresholds), and the chest region is
their convex hull, mirrored about the midline and slightly grown, inside the film's border band. When that
estimate does not look like two lungs, the region falls back to the centre of the film inside the band.
Tuned by eye on train/ films only (docs/chest_region.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pneumonia.wording import OUTSIDE_CHEST, OUTSIDE_WHERE

BORDER_SHARE = 0.06
"""Width of the film's outer band, as a share of its side: where the markers and burnt-in text sit."""
FALLBACK_ROWS, FALLBACK_COLS = (0.15, 0.85), (0.12, 0.88)
"""The central region used when the lungs are not found, as shares of the height and width."""
SMOOTH_SHARE = 0.015  # Gaussian sigma, as a share of the side: ribs and noise out, lung borders kept
OPEN_SHARE = 0.03  # opening radius: cuts thin bridges from a lung to the air outside the body
GROW_SHARE = 0.04  # dilation of the hull: tolerance for coarse maps (Grad-CAM is 8x8 upsampled)
LUNG_AREA = (0.02, 0.30)
"""A lung field's plausible area, as a share of the film; outside it the component is not a lung."""
BODY_ROWS, BODY_COLS = (0.30, 0.70), (0.22, 0.78)
"""A box that lies inside the body on a centred chest film, lungs included: where the body's flood starts."""
LUNG_ROWS, LUNG_COLS = (0.15, 0.80), (0.10, 0.90)
"""Where a lung's centre may lie, as shares of the height and width."""
LUNG_BALANCE = 0.25  # the smaller lung (the heart hides part of the left) has at least this share of the larger
THRESHOLD_QUANTILES = np.linspace(0.10, 0.60, 11)
"""Thresholds tried, as quantiles of the grey levels inside the body."""
OUTSIDE_MAJORITY = 0.5
"""Above this share of an explanation's positive weight outside the chest, the readout says so."""


@dataclass(frozen=True, eq=False)
class ChestRegion:
    """Where the chest is on one film, and whether it was found from the lungs or is the fallback."""

    mask: np.ndarray
    found_lungs: bool


def _grey(image: np.ndarray) -> np.ndarray:
    """A float copy scaled to [0, 1] between its 1st and 99th percentiles, whatever the input range."""
    grey = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = np.percentile(grey, [1, 99])
    return np.clip((grey - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(grey)


def border_mask(shape: tuple[int, int], share: float = BORDER_SHARE) -> np.ndarray:
    """True inside the film, False on its outer band."""
    rows, cols = shape
    band_r, band_c = max(1, round(rows * share)), max(1, round(cols * share))
    inside = np.zeros(shape, dtype=bool)
    inside[band_r : rows - band_r, band_c : cols - band_c] = True
    return inside


def fallback_mask(shape: tuple[int, int]) -> np.ndarray:
    """The central region of the film, where the chest of a centred film lies."""
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    mask[round(rows * FALLBACK_ROWS[0]) : round(rows * FALLBACK_ROWS[1]),
         round(cols * FALLBACK_COLS[0]) : round(cols * FALLBACK_COLS[1])] = True
    return mask & border_mask(shape)


def _edge(shape: tuple[int, int]) -> np.ndarray:
    """The film's outermost pixels: a dark area reaching them is air around the body, not a lung."""
    edge = np.ones(shape, dtype=bool)
    edge[1:-1, 1:-1] = False
    return edge


def _lung_pair(labels: np.ndarray, count: int, off_body: set[int]) -> tuple[int, int, int] | None:
    """(area, left label, right label) of the largest plausible left and right lung, or None."""
    rows, cols = labels.shape
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    row_index, col_index = np.indices(labels.shape)
    rows_mean = np.bincount(labels.ravel(), weights=row_index.ravel(), minlength=count + 1)
    cols_mean = np.bincount(labels.ravel(), weights=col_index.ravel(), minlength=count + 1)
    best: dict[bool, tuple[int, int]] = {}
    for lab in range(1, count + 1):
        share = areas[lab] / labels.size
        if lab in off_body or not LUNG_AREA[0] <= share <= LUNG_AREA[1]:
            continue
        centre_r, centre_c = rows_mean[lab] / areas[lab], cols_mean[lab] / areas[lab]
        if not (LUNG_ROWS[0] * rows < centre_r < LUNG_ROWS[1] * rows
                and LUNG_COLS[0] * cols < centre_c < LUNG_COLS[1] * cols):
            continue
        left = bool(centre_c < cols / 2)
        if areas[lab] > best.get(left, (0, 0))[0]:
            best[left] = (int(areas[lab]), lab)
    if len(best) < 2:
        return None
    (left_area, left), (right_area, right) = best[True], best[False]
    if min(left_area, right_area) < LUNG_BALANCE * max(left_area, right_area):
        return None
    return left_area + right_area, left, right


def body_mask(grey: np.ndarray) -> np.ndarray:
    """The body on a smoothed [0, 1] film: flooded out from the film's centre and in from the dark air at
    its edge, the two meet on the bright ridge of the chest wall, however dark the lungs behind it are."""
    from skimage.segmentation import watershed

    rows, cols = grey.shape
    markers = np.zeros(grey.shape, dtype=np.int32)
    edge = _edge(grey.shape)
    centre = (slice(round(rows * BODY_ROWS[0]), round(rows * BODY_ROWS[1])),
              slice(round(cols * BODY_COLS[0]), round(cols * BODY_COLS[1])))
    markers[edge & (grey < np.median(grey[centre]))] = 1
    markers[centre] = 2
    return watershed(grey, markers) == 2


def lung_fields(image: np.ndarray) -> np.ndarray | None:
    """The two lung fields as one mask, or None when the film does not show two plausible ones.

    The lungs are the dark areas inside the body (`body_mask`). A range of thresholds is tried and the one
    giving the largest plausible left-and-right pair wins: too low finds only the lungs' cores, too high
    joins them to each other or to the neck and belly."""
    from scipy import ndimage
    from skimage.filters import gaussian
    from skimage.morphology import disk

    grey = _grey(image)
    side = min(grey.shape)
    if side < 16 or np.ptp(grey) == 0:
        return None
    grey = gaussian(grey, sigma=max(0.5, SMOOTH_SHARE * side))
    body, edge = body_mask(grey), _edge(grey.shape)
    footprint = disk(max(1, round(OPEN_SHARE * side)))
    best, best_labels = None, None
    for level in np.quantile(grey[body], THRESHOLD_QUANTILES):
        dark = ndimage.binary_opening((grey < level) & body, footprint)
        labels, count = ndimage.label(dark)
        pair = _lung_pair(labels, count, set(np.unique(labels[edge]).tolist()))
        if pair is not None and (best is None or pair[0] > best[0]):
            best, best_labels = pair, labels
    if best is None:
        return None
    return ndimage.binary_fill_holes((best_labels == best[1]) | (best_labels == best[2]))


def _mirrored(mask: np.ndarray) -> np.ndarray:
    """The mask with its mirror image about its own vertical midline: the chest is near symmetric, so a
    lung found only in part (a lower lobe lost in haze) borrows its extent from the other."""
    columns = np.flatnonzero(mask.any(axis=0))
    shift = int(columns[0] + columns[-1]) - (mask.shape[1] - 1)  # flipped column c lands on first + last - c
    flipped = np.zeros_like(mask)
    source = mask[:, ::-1]
    if shift >= 0:
        flipped[:, shift:] = source[:, : mask.shape[1] - shift]
    else:
        flipped[:, :shift] = source[:, -shift:]
    return mask | flipped


def chest_region(image: np.ndarray) -> ChestRegion:
    """The chest on a 2-D grey film (any value range): the lungs' hull, or the central region when the lungs
    are not found. The mask is never empty: a film too small for either is all chest."""
    from scipy import ndimage
    from skimage.morphology import convex_hull_image, disk

    grey = np.asarray(image)
    if grey.ndim != 2 or grey.size == 0:
        raise ValueError(f"expected a 2-D grey image, got shape {grey.shape}")
    lungs = lung_fields(grey)
    if lungs is None:
        mask = fallback_mask(grey.shape)
    else:
        grow = max(1, round(GROW_SHARE * min(grey.shape)))
        mask = ndimage.binary_dilation(convex_hull_image(_mirrored(lungs)), disk(grow)) & border_mask(grey.shape)
    return ChestRegion(mask if mask.any() else np.ones(grey.shape, dtype=bool), lungs is not None)


def chest_mask(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the chest on a 2-D grey film: `chest_region`'s mask."""
    return chest_region(image).mask


def outlined(rgb: np.ndarray, mask: np.ndarray, colour=(0, 220, 0)) -> np.ndarray:
    """An 8-bit RGB copy of a picture with the region's outline drawn on it, for teaching and checking by eye."""
    from skimage.segmentation import find_boundaries

    drawn = np.array(rgb, dtype=np.uint8, copy=True)
    drawn[find_boundaries(np.asarray(mask, dtype=bool), mode="inner")] = colour
    return drawn


def share_outside(weights: np.ndarray, mask: np.ndarray) -> float:
    """The share of a map's positive weight (LIME's push towards PNEUMONIA; Grad-CAM) that lies outside
    `mask`; 0.0 for a map with no positive weight."""
    weights = np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    mask = np.asarray(mask, dtype=bool)
    if weights.shape != mask.shape:
        raise ValueError(f"weight map shape {weights.shape} differs from mask shape {mask.shape}")
    positive = np.maximum(weights, 0.0)
    total = positive.sum()
    return float(positive[~mask].sum() / total) if total > 0 else 0.0


def outside_sentence(methods: list[str], found_lungs: bool = True) -> str | None:
    """One plain sentence naming the methods most of whose evidence lies outside the chest; None for none."""
    if not methods:
        return None
    who = " and ".join(f"{method}'s" for method in methods)
    return OUTSIDE_CHEST.format(who=who, where=OUTSIDE_WHERE[found_lungs])


def mostly_outside(share: float) -> bool:
    """Whether the readout should speak: most of the positive weight lies outside the chest."""
    return share > OUTSIDE_MAJORITY
