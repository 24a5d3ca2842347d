"""Shared fixtures: a tiny synthetic data set in the Kaggle layout and a tiny model trained on it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pneumonia.config import DATA_ENV_VAR, MODELS_DIR, TrainConfig  # noqa: E402

TINY_SIZE = 32


def synthetic_xray(label: int, seed: int, size: int = 64) -> np.ndarray:
    """A grey uint8 picture: dark 'lungs' for NORMAL, with bright 'consolidation' blobs for PNEUMONIA."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 200 - 120 * (np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.03) + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.03))
    if label:
        cx, cy = rng.uniform(0.25, 0.75, 2)
        image += 110 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.01)
    image += rng.normal(0, 8, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def write_kaggle_tree(root: Path, patients_per_class: int = 14, images_per_patient: int = 2) -> Path:
    """train/ and test/ with NORMAL/ and PNEUMONIA/ named the way Kermany's files are."""
    seed = 0
    for split, count in (("train", patients_per_class), ("test", 4)):
        for label, class_name in enumerate(("NORMAL", "PNEUMONIA")):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for patient in range(1, count + 1):
                for image in range(1, images_per_patient + 1):
                    seed += 1
                    if label:
                        kind = "bacteria" if patient % 2 else "virus"
                        name = f"person{patient}_{kind}_{seed}.jpeg"
                    else:
                        name = f"IM-{patient:04d}-{image:04d}.jpeg"
                    Image.fromarray(synthetic_xray(label, seed)).save(folder / name)
    return root


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    return write_kaggle_tree(tmp_path_factory.mktemp("chest_xray"))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_data_dir, tmp_path_factory) -> Path:
    """A model trained and evaluated end to end by the package itself, in seconds."""
    from pneumonia.training.evaluate import evaluate
    from pneumonia.training.train import train

    out = tmp_path_factory.mktemp("models")
    config = TrainConfig(image_size=TINY_SIZE, filters=(4, 8), epochs=2, batch_size=8, patience=2)
    train(tiny_data_dir, out, config, verbose=0)
    evaluate(tiny_data_dir, out, resamples=50)
    return out


@pytest.fixture(scope="session")
def tiny_predictor(tiny_model_dir):
    from pneumonia.screening.predictor import load_predictor

    return load_predictor(tiny_model_dir)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    path = os.environ.get(DATA_ENV_VAR)
    if not path:
        pytest.skip(f"{DATA_ENV_VAR} is not set: point it at the Kaggle chest_xray folder to run integration tests")
    if not Path(path).is_dir():
        pytest.skip(f"{DATA_ENV_VAR}={path} is not a folder")
    return Path(path)


@pytest.fixture(scope="session")
def committed_predictor():
    from pneumonia.screening.predictor import load_predictor

    return load_predictor(MODELS_DIR)


@pytest.fixture(scope="module")
def sync_playwright():
    """Playwright's sync API for the browser tests, driving Debian's Chromium; skipped, with the reason, where
    either is missing (this suite never downloads a browser)."""
    import shutil

    if shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists():
        pytest.skip("Chromium is not installed (`apt-get install chromium`); this test never downloads a browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -r requirements-test.txt)")
    return sync_playwright
