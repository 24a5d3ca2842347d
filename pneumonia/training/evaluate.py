"""Scoring the official test split once, for reporting only. Nothing here feeds back into a choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pneumonia.config import MODELS_DIR, TEST_PREDICTIONS_FILENAME
from pneumonia.decision.metrics import bootstrap_intervals, full_report
from pneumonia.io.bundle import THUMBNAILS_DIR, read_metadata, thumbnail_name, write_metadata, write_predictions
from pneumonia.io.dataset import discover_split, find_split, load_images, manifest_hash
from pneumonia.screening.predictor import load_predictor

HARDEST_DIR = "hardest_cases"
HARDEST_COUNT = 8
THUMBNAIL_SIDE = 224
"""The test images' own size: the reader study and reader mode show them at the best resolution the data set has."""
THUMBNAIL_QUALITY = 90
"""JPEG quality of the copies: 5 MB for all 624 at 224 px (the budget is 8 MB)."""
THUMBNAIL_ATTRIBUTION = """# Test-set thumbnails: source and licence

Each file here is a {side}x{side} grey JPEG copy of one image of the official **test split** of

> Kermany, Daniel; Zhang, Kang; Goldbaum, Michael (2018), "Labeled Optical Coherence Tomography (OCT)
> and Chest X-Ray Images for Classification", Mendeley Data, v2, doi:[10.17632/rscbjbr9sj.2](https://doi.org/10.17632/rscbjbr9sj.2)

licensed under [Creative Commons Attribution 4.0 International (CC BY 4.0)](https://creativecommons.org/licenses/by/4.0/).
Children aged one to five, Guangzhou Women and Children's Medical Center, routine care. Changes: resized to
{side}x{side} pixels and re-encoded as JPEG; the file name is the original's stem. Written by
`python -m pneumonia evaluate` so that the app's reader mode and case gallery can teach without the data set;
they are never used for training or any choice.
"""


def top_loss_indices(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of the cases with the highest cross-entropy: confident mistakes first."""
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    loss = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    return np.argsort(-loss, kind="stable")[:count]


def evaluate(data_dir: Path, model_dir: Path = MODELS_DIR, resamples: int = 2000) -> dict:
    """Score test/, write its predictions and hardest cases, and record test metrics in the metadata."""
    data_dir, model_dir = Path(data_dir), Path(model_dir)
    predictor = load_predictor(model_dir)
    samples = discover_split(find_split(data_dir, "test"))
    images = load_images([s.path for s in samples], predictor.image_size)
    probabilities = predictor.predict_arrays(images)
    labels = np.array([s.label for s in samples])
    subtypes = np.array([s.subtype for s in samples])
    files = [s.path.relative_to(data_dir).as_posix() for s in samples]
    threshold = predictor.default_threshold.value

    write_predictions(model_dir / TEST_PREDICTIONS_FILENAME, files, labels, subtypes, probabilities)
    hardest = _save_hardest(model_dir / HARDEST_DIR, samples, labels, probabilities)
    save_thumbnails(model_dir / THUMBNAILS_DIR, [s.path for s in samples])

    report = full_report(labels, probabilities, threshold, subtypes)
    report["intervals_95"] = bootstrap_intervals(labels, probabilities, threshold, subtypes, resamples=resamples)
    report["bootstrap"] = f"{resamples} percentile resamples of the {len(labels)} test images, seed 0"
    report["threshold_source"] = "the model's default threshold, chosen on validation before this evaluation"
    report["test_manifest_sha256"] = manifest_hash(samples, data_dir)
    report["hardest_cases"] = hardest

    metadata = read_metadata(model_dir)
    metadata["metrics"]["test"] = report
    write_metadata(model_dir, metadata)
    return report


def _save_hardest(folder: Path, samples, labels: np.ndarray, probabilities: np.ndarray) -> list[dict]:
    """Small PNG copies of the top-loss test images, so the app can teach from them without the data."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    cases = []
    for rank, i in enumerate(top_loss_indices(labels, probabilities, HARDEST_COUNT), start=1):
        sample = samples[i]
        name = f"{rank:02d}_{sample.path.stem}.png"
        grey = load_images([sample.path], 160)[0, ..., 0]
        Image.fromarray(grey.round().astype(np.uint8), mode="L").save(folder / name)
        cases.append(
            {
                "image": f"{HARDEST_DIR}/{name}",
                "source": sample.path.name,
                "label": int(labels[i]),
                "subtype": sample.subtype,
                "probability": float(probabilities[i]),
            }
        )
    return cases


def save_thumbnails(folder: Path, paths: list[Path], side: int = THUMBNAIL_SIDE) -> None:
    """Grey JPEG copies of every test image (about 8 kB each at 224 px), with their attribution."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jpg"):
        old.unlink()
    images = load_images(paths, side)[..., 0]
    for path, grey in zip(paths, images):
        Image.fromarray(grey.round().astype(np.uint8), mode="L").save(
            folder / thumbnail_name(path.name), quality=THUMBNAIL_QUALITY
        )
    (folder / "ATTRIBUTION.md").write_text(THUMBNAIL_ATTRIBUTION.format(side=side))
