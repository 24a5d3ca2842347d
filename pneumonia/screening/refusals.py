"""What is unusual about a grey, smooth film that the gate refuses, so a real radiograph is never told it looks
like a document or a screenshot (issue 30).

The one finding measured here is a wide pure-black border (padding or shutters around the film): the share of
pixels at the darkest grey levels. On the validation split of train/ (746 films, by patient) the 99th and 99.5th
percentiles of that share are 0.19 and 0.22, so a film with more than BORDER_SHARE is wider-bordered than almost
every film the model learned from.
"""

from __future__ import annotations

import numpy as np

from pneumonia.wording import REASONS

BLACK_LEVEL = 2.0
"""Grey levels at or below this (of 0-255) count as pure black."""
BORDER_SHARE = 0.2
"""Share of pure black above which a film's border is called out (between validation's 99th and 99.5th percentiles)."""


def black_share(grey: np.ndarray) -> float:
    grey = np.asarray(grey, dtype=np.float32)
    return float(np.mean(grey <= BLACK_LEVEL)) if grey.size else 0.0


def border_reason(grey: np.ndarray, at_least: float, reason: str = "border") -> str | None:
    """The border reason, with its share, when more than BORDER_SHARE and at least `at_least` of the image is pure
    black; else None. For the few-grey-levels rule `at_least` is half the two top levels' share, so it is the border
    that fills those levels."""
    share = black_share(grey)
    if share < max(at_least, BORDER_SHARE):
        return None
    return REASONS[reason].format(share=f"{share:.0%}")
