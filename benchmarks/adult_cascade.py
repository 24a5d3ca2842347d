"""Choosing the adult caution's prescreen quantile (issue 30). The network's own block-3 grid distance costs nothing
extra, so it runs first; only the films it finds beyond a pooled validation quantile go on to the Lite0 backbone,
which costs a film many times what the gate's other rules cost (docs/gate_benchmark.md). Prints, per prescreen quantile, the share of validation children (clean
and their six stress copies) that would pay for the backbone, and how many of the 24 adult development films get
past the prescreen and are then told adult by the cascade. Reads the committed caution (models/) and cached
features of train/ and the adult films only; the test split is not touched:

    python benchmarks/adult_features.py && python benchmarks/adult_backbone.py --stress-fit   # the caches in build/
    python benchmarks/adult_cascade.py

Printed on 2026-12-03 (with the committed cascade): the backbone alone tells 22/24. At the pooled 80% quantile 20.0%
of the children go on, 24/24 adults pass the prescreen and the cascade tells 22/24; at 90%, 10.0%, 24/24 and 22/24;
at 95%, 5.0%, 21/24 and 20/24; at 98%, 2.0%, 19/24 and 18/24. 90% was chosen: the fewest children sent on that keeps
every adult the backbone tells."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumonia.io.bundle import read_metadata  # noqa: E402
from pneumonia.io.dataset import discover_split, find_split, patient_split, split_seed  # noqa: E402
from pneumonia.screening.adult_caution import load_adult_caution, log_features  # noqa: E402

DATA = Path("/work/shared/data/chest_xray")
KEY = "block3_relu_grid"


def main() -> None:
    metadata = read_metadata(Path("models"))
    caution = load_adult_caution(Path("models"), metadata["gate"]["adult"])
    config = metadata["training"]["config"]
    _, val_samples = patient_split(discover_split(find_split(DATA, "train")), config["validation_fraction"],
                                   split_seed(config))
    train, adult, stress = (np.load(f"build/features_{name}.npz") for name in ("train", "adult", "stress"))
    column = f"f{list(train['names']).index(KEY)}"
    row = {str(path): i for i, path in enumerate(train["paths"])}
    validation = train[column][[row[str(s.path)] for s in val_samples]]
    pool = caution.prescreen.distance(log_features(np.concatenate([validation, stress[KEY]])))
    adult_distance = caution.prescreen.distance(log_features(adult[column]))
    # block 4 of the backbone: the second cached stage of benchmarks/adult_backbone.py at 224 px
    backbone_far = caution.backbone.far(np.load("build/features_lite0_224.npz")["adult_1"])
    print(f"backbone alone tells {backbone_far.sum()}/{len(backbone_far)}")
    for quantile in (0.8, 0.9, 0.95, 0.98):
        threshold = np.quantile(pool, quantile)
        past = adult_distance > threshold
        print(f"prescreen at the pooled {quantile:.0%} quantile: children sent on {np.mean(pool > threshold):.1%}; "
              f"adults past it {past.sum()}/{len(past)}; the cascade tells {(past & backbone_far).sum()}/{len(past)}")


if __name__ == "__main__":
    main()
