"""What the reorganisation into subpackages must keep: saved models load, importing the package changes no
library's global settings, and the model folder's metadata is checked once, with clear refusals."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pneumonia.config import METADATA_FILENAME, MODELS_DIR
from pneumonia.errors import ModelError
from pneumonia.io.bundle import ModelMetadata, read_model_metadata
from pneumonia.threshold import ThresholdSource

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_models_custom_layers_resolve_by_their_recorded_module_and_name():
    """The .keras file records `pneumonia.model` and "pneumonia>Name" for each custom layer; both must still
    lead to the classes now in pneumonia.model.network."""
    import keras

    import pneumonia.model
    from pneumonia.model import network

    config = zipfile.ZipFile(MODELS_DIR / "pneumonia_cnn.keras").read("config.json").decode()
    recorded = set(re.findall(r'"module": "(pneumonia[\w.]*)", "class_name": "(\w+)"', config))
    names = set(re.findall(r'"registered_name": "pneumonia>(\w+)"', config))
    assert recorded and names
    for module, class_name in recorded:
        assert module == "pneumonia.model"
        assert getattr(pneumonia.model, class_name) is getattr(network, class_name)
    for name in names:
        assert keras.saving.get_registered_object(f"pneumonia>{name}") is getattr(network, name)


def test_importing_every_module_changes_no_global_setting_of_pillow_or_pydicom():
    """In a fresh process: import the whole package (and read a DICOM and a PNG through it), and Pillow's pixel
    limit, pydicom's validation mode and its logger's level are what they were before."""
    script = """
import importlib, io, logging, pkgutil
import numpy as np
from PIL import Image
import pydicom.config
before = (Image.MAX_IMAGE_PIXELS, pydicom.config.settings.reading_validation_mode, logging.getLogger("pydicom").level)
import pneumonia
for info in pkgutil.walk_packages(pneumonia.__path__, "pneumonia."):
    if not info.name.endswith("__main__"):  # running it is the CLI, not an import
        importlib.import_module(info.name)
from pneumonia.io.images import read_input
from pydicom.data import get_testdata_file
read_input(open(get_testdata_file("CT_small.dcm"), "rb").read(), name="x.dcm")
buffer = io.BytesIO(); Image.fromarray(np.zeros((40, 40), np.uint8)).save(buffer, "PNG")
read_input(buffer.getvalue(), name="x.png")
after = (Image.MAX_IMAGE_PIXELS, pydicom.config.settings.reading_validation_mode, logging.getLogger("pydicom").level)
assert before == after, (before, after)
print("unchanged", after)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unchanged" in done.stdout


def test_a_bomb_is_still_refused_in_plain_words_with_pillows_guard_left_on():
    import io

    from PIL import Image

    from pneumonia.errors import ImageDecodeError
    from pneumonia.io.images import read_input
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, "PNG")  # 400 megapixels in a few kilobytes
    with pytest.raises(ImageDecodeError, match="too large"):
        read_input(buffer.getvalue(), name="bomb.png")
    assert Image.MAX_IMAGE_PIXELS is not None


def test_the_metadata_is_typed_with_the_thresholds_as_applied():
    metadata = read_model_metadata(MODELS_DIR)
    raw = json.loads((MODELS_DIR / METADATA_FILENAME).read_text())
    assert metadata.default_threshold.value == raw["threshold"]["default"]
    assert metadata.default_threshold.source is ThresholdSource.MODEL_DEFAULT
    assert [p.value for p in metadata.presets] == [p["threshold"] for p in raw["threshold"]["presets"]]
    assert {p.source for p in metadata.presets if p.name != "default"} == {ThresholdSource.PRESET}
    with pytest.raises(TypeError):
        metadata.training["config"] = {}  # read-only: no page can change what another page reads


def _folder_with(tmp_path: Path, change) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(MODELS_DIR, folder, ignore=shutil.ignore_patterns("test_thumbnails", "hardest_cases"))
    raw = json.loads((folder / METADATA_FILENAME).read_text())
    change(raw)
    (folder / METADATA_FILENAME).write_text(json.dumps(raw))
    return folder


def test_an_older_schema_is_refused_with_what_to_do(tmp_path):
    folder = _folder_with(tmp_path, lambda raw: raw.pop("schema_version"))
    with pytest.raises(ModelError, match="schema version 0: it predates schema versions.*retrain the model"):
        read_model_metadata(folder)
    with pytest.raises(ModelError, match="schema version 7: this code reads version 1"):
        ModelMetadata.from_dict({"schema_version": 7})


def test_a_missing_field_is_refused_once_when_the_folder_is_read(tmp_path):
    folder = _folder_with(tmp_path, lambda raw: raw["threshold"].pop("chosen_on"))
    with pytest.raises(ModelError, match="missing or has a malformed field.*chosen_on"):
        read_model_metadata(folder)
