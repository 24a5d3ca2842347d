"""128-px JPEG copies of the Kermany set for the GPU machine, which takes at most 64 MiB with the code, and the
ImageNet weights (19 MB), so the 224-px originals (37 MB) do not fit beside them. Same folders and file names.

    .venv/bin/python benchmarks/device_data_copy.py ../shared/data/chest_xray .device/chest_xray_128

Each film is decoded as the model reads it (`pneumonia.io.dataset.decode_grayscale` at 128 px), rounded to 8 bits and
saved as JPEG quality 90 (23 MB for all 5,840). Data licence: CC BY 4.0 (Kermany et al. 2018); the copies stay out
of git (.git/info/exclude).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from pneumonia.io.dataset import decode_grayscale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder holding train/ and test/")
    parser.add_argument("destination", type=Path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    count = 0
    for path in sorted(args.source.rglob("*.jpeg")):
        out = args.destination / path.relative_to(args.source)
        out.parent.mkdir(parents=True, exist_ok=True)
        grey = np.clip(np.rint(decode_grayscale(path, args.size)), 0, 255).astype(np.uint8)
        Image.fromarray(grey).save(out, quality=args.quality)
        count += 1
    print(f"{count} films written to {args.destination}")


if __name__ == "__main__":
    main()
