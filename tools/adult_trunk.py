"""Write the adult caution's backbone weights: EfficientNet-Lite0's ImageNet stem and blocks 0-4, taken by layer
name from the converted backbone (`python -m tools.convert_backbone`), as one small .npz the package ships
(pneumonia/screening/lite0_trunk_imagenet.npz). Run from the repository root with the project's environment:

    python -m tools.adult_trunk [--weights build/backbones/efficientnet_lite0_imagenet.weights.h5]

Each weighted layer's arrays are saved as `<layer name>/<index>`, in the layer's own order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pneumonia.model.efficientnet_lite import efficientnet_lite0
from pneumonia.screening.adult_caution import TRUNK_WEIGHTS, AdultConfig
from tools.convert_backbone import DEFAULT_OUT


def trunk_arrays(weights: Path, last_block: int) -> dict[str, np.ndarray]:
    """The arrays of every weighted layer up to block `last_block`, by name, from the full converted backbone."""
    full = efficientnet_lite0(include_top=True, weights=str(weights))
    kept = ("stem_",) + tuple(f"block{i}_" for i in range(last_block + 1))
    return {f"{layer.name}/{i}": np.asarray(array, np.float32)
            for layer in full.layers if layer.weights and layer.name.startswith(kept)
            for i, array in enumerate(layer.get_weights())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--out", type=Path, default=TRUNK_WEIGHTS)
    args = parser.parse_args()
    arrays = trunk_arrays(args.weights, AdultConfig().last_block)
    with open(args.out, "wb") as handle:
        np.savez(handle, **arrays)
    print(f"wrote {args.out}: {len(arrays)} arrays, {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
