"""Prove the Keras EfficientNet-Lite0 port against the PyTorch original before anyone builds on it.

Run in the convert environment (it needs torch and `efficientnet-lite-pytorch`, the model definition
the checkpoint was made for), after `python -m tools.convert_backbone`:

    /work/convert-venv/bin/python benchmarks/verify_backbone.py
    KERAS_BACKEND=torch /work/convert-venv/bin/python benchmarks/verify_backbone.py   # same port, no TensorFlow

Checks, exit status 1 if any fails:
  1. Keras and PyTorch (eval mode) logits agree within 1e-4 (max absolute difference) on
     skimage's coffee and chelsea photos and on 2 random images.
  2. Top 5 of the Keras model holds a cup/espresso class for coffee (ImageNet 967 espresso, 968 cup,
     504 coffee mug) and a cat class for chelsea (281-285).
Also reported, not checked: the same PyTorch model with naive symmetric padding (Conv2d padding=k//2),
to show the comparison is sensitive to padding, and the PyTorch top 5 under torchvision's ImageNet
mean/std instead of the Lite models' (x - 127) / 128.
Writes build/backbones/verify.json (or --report).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumonia.model.efficientnet_lite import INPUT_SIZE, MEAN_RGB, STDDEV_RGB  # noqa: E402
from tools.convert_backbone import DEFAULT_OUT, checkpoint_path  # noqa: E402

TOLERANCE = 1e-4
CROP_FRACTION = 224 / 256  # TensorFlow's EfficientNet eval: centre crop with crop_padding 32, then resize
CUP_CLASSES = {967: "espresso", 968: "cup", 504: "coffee mug"}
CAT_CLASSES = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}
CLASS_NAMES = CUP_CLASSES | CAT_CLASSES  # the package ships no class list; these are the ones we check
TORCHVISION_MEAN = np.array([0.485, 0.456, 0.406]) * 255
TORCHVISION_STD = np.array([0.229, 0.224, 0.225]) * 255


def centre_crop_resize(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """uint8 RGB photo -> float32 (size, size, 3) in [0, 255]: centre crop of 224/256 of the short side, resized."""
    from skimage.transform import resize

    height, width = image.shape[:2]
    side = int(round(min(height, width) * CROP_FRACTION))
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[top : top + side, left : left + side].astype(np.float64)
    return resize(crop, (size, size), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


def inputs() -> dict[str, np.ndarray]:
    from skimage import data

    rng = np.random.default_rng(0)
    return {
        "coffee": centre_crop_resize(data.coffee()),
        "chelsea": centre_crop_resize(data.chelsea()),
        "random_0": rng.uniform(0, 255, (INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32),
        "random_1": rng.uniform(0, 255, (INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32),
    }


def torch_original():
    """The model definition the checkpoint ships for, with its weights, in eval mode."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(checkpoint_path())).eval()


def torch_logits(model, images: np.ndarray, mean, std) -> np.ndarray:
    import torch

    batch = torch.from_numpy(((images - mean) / std).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        return model(batch).numpy()


def symmetric_padding_copy(model):
    """A copy of the PyTorch model padded k//2 on every side (a naive port), as a negative control."""
    import copy

    from torch import nn

    naive = copy.deepcopy(model)
    for module in naive.modules():
        if isinstance(module, nn.Conv2d) and hasattr(module, "static_padding"):
            module.static_padding = nn.ZeroPad2d(module.kernel_size[0] // 2)
    return naive


def top5(logits: np.ndarray) -> list[dict]:
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-logits)[:5]
    return [{"class": int(i), "name": CLASS_NAMES.get(int(i), ""), "prob": round(float(probs[i]), 4)} for i in order]


def verify(weights: Path) -> dict:
    import keras

    from pneumonia.model.efficientnet_lite import efficientnet_lite0

    named = inputs()
    images = np.stack(list(named.values()))
    model = efficientnet_lite0(weights=str(weights))
    keras_out = np.asarray(model.predict(images, verbose=0))
    original = torch_original()
    torch_out = torch_logits(original, images, MEAN_RGB, STDDEV_RGB)
    naive_out = torch_logits(symmetric_padding_copy(original), images, MEAN_RGB, STDDEV_RGB)
    torchvision_out = torch_logits(original, images, TORCHVISION_MEAN, TORCHVISION_STD)

    report = {"keras_backend": keras.backend.backend(), "tolerance": TOLERANCE, "inputs": {}}
    for i, name in enumerate(named):
        report["inputs"][name] = {
            "max_abs_diff_keras_vs_torch": float(np.abs(keras_out[i] - torch_out[i]).max()),
            "max_abs_logit": float(np.abs(torch_out[i]).max()),
            "control_max_abs_diff_symmetric_padding_vs_torch": float(np.abs(naive_out[i] - torch_out[i]).max()),
            "top5_keras": top5(keras_out[i]),
            "top5_torch": top5(torch_out[i]),
            "top5_torch_torchvision_mean_std": top5(torchvision_out[i]),
        }
    coffee = {entry["class"] for entry in report["inputs"]["coffee"]["top5_keras"]}
    chelsea = {entry["class"] for entry in report["inputs"]["chelsea"]["top5_keras"]}
    report["checks"] = {
        "logits_within_tolerance": all(
            entry["max_abs_diff_keras_vs_torch"] <= TOLERANCE for entry in report["inputs"].values()
        ),
        "coffee_top5_has_cup_or_espresso": bool(coffee & set(CUP_CLASSES)),
        "chelsea_top5_has_cat": bool(chelsea & set(CAT_CLASSES)),
        "same_top5_keras_and_torch": all(
            [e["class"] for e in entry["top5_keras"]] == [e["class"] for e in entry["top5_torch"]]
            for entry in report["inputs"].values()
        ),
    }
    return report


def print_report(report: dict) -> None:
    print(f"Keras backend: {report['keras_backend']}; tolerance {report['tolerance']:g}")
    for name, entry in report["inputs"].items():
        print(
            f"{name:9s} max|keras - torch| = {entry['max_abs_diff_keras_vs_torch']:.2e}"
            f" (logits up to {entry['max_abs_logit']:.1f});"
            f" symmetric-padding control: {entry['control_max_abs_diff_symmetric_padding_vs_torch']:.2e}"
        )
    for name in ("coffee", "chelsea"):
        for key in ("top5_keras", "top5_torch", "top5_torch_torchvision_mean_std"):
            entries = report["inputs"][name][key]
            shown = ", ".join(f"{e['class']} {e['name']} {e['prob']:.3f}".replace("  ", " ") for e in entries)
            print(f"{name:8s} {key:32s} {shown}")
    for check, passed in report["checks"].items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--report", type=Path, default=None, help="JSON to write (default beside the weights)")
    args = parser.parse_args(argv)
    if not args.weights.exists():
        print(f"{args.weights} not found: run python -m tools.convert_backbone first", file=sys.stderr)
        return 2
    report = verify(args.weights)
    print_report(report)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    path = args.report or args.weights.parent / f"verify_{backend}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
