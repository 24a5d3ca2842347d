"""A decision threshold as it is applied, and where it came from.

A `Threshold` is created once, where a threshold is chosen (the model's default or a preset from its metadata, a
site calibration, a cost rule, a number set by hand), and passed whole to the CLI, the pages, the CSV, the PDF and
the readout. Its value is the number applied and printed; nothing matches floats later to find its source again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from pneumonia.config import CLASS_NAMES
from pneumonia.formatting import format_threshold


class ThresholdSource(str, Enum):
    MODEL_DEFAULT = "model default"
    PRESET = "named preset"
    SITE = "site calibration"
    COST = "cost"
    BY_HAND = "set by hand"


def label_at(probability: float, threshold: float | Threshold) -> str:
    """The one decision rule: a score at or above the threshold is called pneumonia."""
    value = threshold.value if isinstance(threshold, Threshold) else threshold
    return CLASS_NAMES[int(probability >= value)]


@dataclass(frozen=True)
class Threshold:
    """A threshold on P(pneumonia): its value exactly as applied, its source, and its rule in plain words and as
    recorded (for "How this is computed")."""

    value: float
    source: ThresholdSource
    name: str = ""
    plain_rule: str = ""
    recorded_rule: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and 0.0 <= self.value <= 1.0):
            raise ValueError(f"a threshold is a probability between 0 and 1, not {self.value!r}.")
        object.__setattr__(self, "value", float(self.value))

    @classmethod
    def model_default(cls, entry: dict) -> Threshold:
        """The default from the metadata's `threshold` entry (its rule, and the split it was chosen on)."""
        from pneumonia.wording import plain_rule

        return cls(entry["default"], ThresholdSource.MODEL_DEFAULT, "default",
                   plain_rule({"name": "default", "rule": entry["rule"]}),
                   f"{entry['rule']}, chosen on {entry['chosen_on']}")

    @classmethod
    def from_preset(cls, preset: dict, source: ThresholdSource = ThresholdSource.PRESET,
                    default_entry: dict | None = None) -> Threshold:
        """A named preset (name, threshold, rule, and whatever numbers its plain rule needs). The metadata's
        "default" preset is the model's default."""
        from pneumonia.wording import plain_rule

        if preset["name"] == "default" and default_entry is not None:
            return cls.model_default(default_entry)
        return cls(preset["threshold"], source, preset["name"], plain_rule(preset),
                   f"preset {preset['name']}: {preset['rule']}")

    @classmethod
    def by_hand(cls, value: float, how: str = "set by hand in the app") -> Threshold:
        return cls(value, ThresholdSource.BY_HAND, "", how, "")

    def label(self, probability: float) -> str:
        return label_at(probability, self.value)

    @property
    def text(self) -> str:
        """The value as printed everywhere: exactly the number applied."""
        return format_threshold(self.value)

    @property
    def provenance(self) -> str:
        """Where it came from, in plain words."""
        from pneumonia.wording import preset_name

        if self.source is ThresholdSource.MODEL_DEFAULT:
            return f"the model's default, {self.plain_rule}"
        if self.source is ThresholdSource.BY_HAND:
            return self.plain_rule
        return f"preset \u201c{preset_name(self.name)}\u201d, {self.plain_rule}"

    def __str__(self) -> str:
        return self.text
