"""The input gate of the committed model: how many real test radiographs it stops, how many
non-radiographs it lets through, and what it costs per image.

    python benchmarks/bench_gate.py [--data DATA/chest_xray] [--model-dir models] [--out docs/gate_benchmark.md]

The official test split is only reported here; every threshold was set on validation (train/).
The non-radiograph set is built by benchmarks/nonradiographs.py; its `heldout` half played no part
in any choice and is the one that counts. Timing compares screening with and without the gate on the
same images in the same run, because these machines are noisy.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nonradiographs  # noqa: E402

from pneumonia.config import DATA_ENV_VAR, MODELS_DIR  # noqa: E402
from pneumonia.io.dataset import discover_split, find_split  # noqa: E402
from pneumonia.io.images import read_input, to_model_input  # noqa: E402
from pneumonia.reports.model_card import adult_caution_summary  # noqa: E402
from pneumonia.screening.adult_caution import log_features  # noqa: E402
from pneumonia.screening.gate import CAUTION, OK, REFUSED  # noqa: E402
from pneumonia.screening.predictor import load_predictor  # noqa: E402
from pneumonia.wording import (
    ADULT_LOOK,  # noqa: E402
    REASONS,  # noqa: E402
)

COMMAND = "python benchmarks/bench_gate.py"
TIMING_IMAGES = 200
TIMING_REPEATS = 5


def reason_kind(reason: str) -> str:
    """The rule behind a reason, for counting (the text before the first colon, or its first words)."""
    for prefix, kind in (
        (REASONS["colour"], "colour picture"),
        (REASONS["blank"], "blank or uniform"),
        (REASONS["noise"], "fine detail or noise"),
        (REASONS["document"], "document or screenshot"),
        (REASONS["negative"], "negative image"),
        (REASONS["not_chest"], "Mahalanobis score"),
        (REASONS["not_chest_border"].split("{")[0], "Mahalanobis score, black border"),
        (REASONS["border"].split("{")[0], "black border"),
        (ADULT_LOOK, "looks like an adult's film"),
        ("wrong kind of image", "DICOM modality"),
        ("the image has an extreme shape", "shape"),
        ("the image is too small", "shape"),
        (REASONS["unusual"], "Mahalanobis caution"),
        ("low resolution", "low resolution"),
        ("adult patient", "DICOM age adult"),
    ):
        if reason.startswith(prefix):
            return kind
    return "could not be read" if reason else "none"


def adult_rows(predictor, folder: Path | None) -> list[tuple[str, str]]:
    """The adult caution on the adult development films (../shared/data/adult_dev, never committed): how many are
    cautioned or refused, and by which rule. These films chose among a few settings; no parameter was fitted on them."""
    if folder is None or not folder.is_dir():
        return [("Adult development films", "not found (pass --adult-dev); not measured")]
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".dcm"))
    results = predictor.screen([(p.name, p) for p in paths])
    flagged = [r for r in results if r.status != OK]
    adult = sum(ADULT_LOOK in r.reason for r in results)
    kinds = collections.Counter(reason_kind(r.reason) for r in flagged)  # the first reason: the adult one if given
    return [
        ("Adult development films (adult_dev/, 24 adult chest films: 22 JPEG, 1 PNG, 1 DICOM that gives its age)",
         f"{len(results)} (chose the adult caution's setting; never fitted on)"),
        ("  past the prescreen (sent on to the backbone)", percent(past_prescreen(predictor, paths), len(paths))),
        ("  told \"looks like an adult's chest film\"", percent(adult, len(results))),
        ("  cautioned or refused by any rule", f"{percent(len(flagged), len(results))}; "
         + ", ".join(f"{k} {n}" for k, n in kinds.most_common())),
        ("  let through as ok", ", ".join(r.name for r in results if r.status == OK) or "none"),
    ]


def past_prescreen(predictor, paths: list[Path]) -> int:
    """How many of the films the adult caution's prescreen sends on to the backbone (the films that pay for it)."""
    adult = predictor.gate.adult
    inputs = np.stack([to_model_input(read_input(p).grey, predictor.image_size) for p in paths])
    grid = predictor.features_and_probabilities(inputs, predictor.gate.config.feature_layers, grid=adult.config)[0][-1]
    return int(adult.prescreen.far(log_features(grid)).sum())


def percent(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100.0 * part / whole:.1f}%)" if whole else "0/0"


def test_split_rows(predictor, samples: list) -> list[tuple[str, str]]:
    results = predictor.screen([(s.path.name, s.path) for s in samples])
    refused = sum(r.status == REFUSED for r in results)
    cautioned = sum(r.status == CAUTION for r in results)
    by_class = {
        name: sum(r.status != OK for r, s in zip(results, samples) if s.label == label)
        for label, name in enumerate(("NORMAL", "PNEUMONIA"))
    }
    kinds = collections.Counter(reason_kind(r.reason) for r in results if r.status != OK)
    adult = sum(ADULT_LOOK in r.reason for r in results)
    rows = [
        ("Official test split: images", f"{len(results)} (never used to set the gate)"),
        ("refused", percent(refused, len(results))),
        ("cautioned", percent(cautioned, len(results))),
        ("refused or cautioned (target ≤ 1%)", percent(refused + cautioned, len(results))),
        ("of which NORMAL / PNEUMONIA", f"{by_class['NORMAL']} / {by_class['PNEUMONIA']}"),
        ("told \"looks like an adult's chest film\"", percent(adult, len(results))),
        ("  sent on by the adult prescreen to the backbone (what pays for it)",
         percent(past_prescreen(predictor, [s.path for s in samples]), len(samples))),
        ("rules that fired", ", ".join(f"{k} {n}" for k, n in kinds.most_common()) or "none"),
    ]
    return rows


def nonradiograph_rows(predictor, split: str) -> list[tuple[str, str]]:
    items = nonradiographs.build(split)
    results = predictor.screen([(item.name, item.data) for item in items])
    by_category: dict[str, list] = collections.defaultdict(list)
    for item, result in zip(items, results):
        by_category[item.category].append(result)
    refused = sum(r.status == REFUSED for r in results)
    rows = [(f"Non-radiographs, {split}: refused (target ≥ 99%)", percent(refused, len(results)))]
    for category in sorted(by_category, key=lambda c: (c != "grey natural photo", c)):
        group = by_category[category]
        count = sum(r.status == REFUSED for r in group)
        kinds = collections.Counter(reason_kind(r.reason) for r in group if r.status == REFUSED)
        rows.append((f"  {category}", f"{percent(count, len(group))}; by {', '.join(f'{k} {n}' for k, n in kinds.most_common())}"))
    missed = [f"{item.name} ({result.status})" for item, result in zip(items, results) if result.status != REFUSED]
    rows.append((f"  let through ({split})", ", ".join(missed) or "none"))
    return rows


def timing_rows(predictor, paths: list[Path]) -> list[tuple[str, str]]:
    named = [(p.name, p) for p in paths[:TIMING_IMAGES]]
    predictor.screen(named[:8])
    predictor.screen(named[:8], use_gate=False)
    gated, ungated = [], []
    for _ in range(TIMING_REPEATS):
        start = time.perf_counter()
        predictor.screen(named, use_gate=False)
        ungated.append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.screen(named)
        gated.append(time.perf_counter() - start)
    per_image = lambda values: 1000.0 * statistics.median(values) / len(named)  # noqa: E731
    cost = per_image(gated) - per_image(ungated)
    return [
        (f"Cost: {len(named)} test images, median of {TIMING_REPEATS} alternating runs", "read + score, batch of all"),
        ("without the gate, ms/image", f"{per_image(ungated):.2f}"),
        ("with the gate, ms/image", f"{per_image(gated):.2f}"),
        ("the gate adds, ms/image (target ≤ 10)", f"{cost:.2f}"),
    ]


def validation_rows(metadata) -> list[tuple[str, str]]:
    gate = metadata.gate
    rows = [("Validation (train/, set the thresholds)", gate["thresholds_chosen_on"])]
    for name, rates in gate["validation"].items():
        adult = f" (told adult-looking {rates['looks_adult']:.2%})" if "looks_adult" in rates else ""
        rows.append((f"  {name}: refused / cautioned",
                     f"{rates['refused']:.2%} / {rates['cautioned']:.2%} of {rates['n']}{adult}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get(DATA_ENV_VAR))
    parser.add_argument("--model-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--adult-dev", type=Path, help="the adult development films (default: adult_dev/ beside --data)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "gate_benchmark.md")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error(f"pass --data or set {DATA_ENV_VAR}")
    predictor = load_predictor(args.model_dir)
    samples = discover_split(find_split(args.data, "test"))
    rows = (
        test_split_rows(predictor, samples)
        + validation_rows(predictor.metadata)
        + nonradiograph_rows(predictor, "heldout")
        + nonradiograph_rows(predictor, "dev")
        + timing_rows(predictor, [s.path for s in samples])
        + adult_rows(predictor, args.adult_dev or Path(args.data).parent / "adult_dev")
    )
    thresholds = predictor.metadata.gate["thresholds"]
    lines = [
        "# Input gate benchmark",
        "",
        f"Generated by `{COMMAND}` on {platform.machine()} with {os.cpu_count()} CPU cores "
        f"({predictor.device}), model `{predictor.metadata.short_sha}`. Do not edit by hand.",
        "",
        "| measurement | result |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "Thresholds (from `models/pneumonia_cnn.json`): "
        + ", ".join(f"{name} {value:.3f}" for name, value in thresholds.items())
        + (f"; adult caution: {adult_caution_summary(adult)}"
           if (adult := predictor.metadata.gate.get("adult")) else ""),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
