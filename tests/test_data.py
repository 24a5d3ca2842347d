"""Data discovery, patient split and preprocessing on tiny synthetic images."""

from __future__ import annotations

import shutil

import pytest
from conftest import synthetic_xray, write_kaggle_tree
from PIL import Image

from pneumonia.errors import DataError
from pneumonia.io.dataset import (
    discover_split,
    find_split,
    patient_from_name,
    patient_split,
    subtype_from_name,
)


def test_discovers_kaggle_layout_with_labels_subtypes_and_patients(tiny_data_dir):
    samples = discover_split(tiny_data_dir / "train")
    assert len(samples) == 56
    assert sum(s.label for s in samples) == 28
    assert {s.subtype for s in samples} == {"normal", "bacteria", "virus"}
    normal = next(s for s in samples if s.path.name == "IM-0003-0002.jpeg")
    assert (normal.label, normal.patient) == (0, "NORMAL/im-0003")


@pytest.mark.parametrize(
    "name, label, patient, subtype",
    [
        ("person1000_bacteria_2931.jpeg", 1, "PNEUMONIA/person1000", "bacteria"),
        ("person1000_virus_1681.jpeg", 1, "PNEUMONIA/person1000", "virus"),
        ("person1_virus_12_1.jpeg", 1, "PNEUMONIA/person1", "virus"),
        ("IM-0115-0001.jpeg", 0, "NORMAL/im-0115", "normal"),
        ("NORMAL2-IM-1345-0001-0002.jpeg", 0, "NORMAL/normal2-im-1345", "normal"),
        ("scan_7.png", 1, "PNEUMONIA/scan_7", "unknown"),
    ],
)
def test_file_names_give_patient_and_subtype(name, label, patient, subtype):
    assert patient_from_name(name, label) == patient
    assert subtype_from_name(name, label) == subtype


def test_odd_layouts_are_found(tmp_path):
    """Lower-case class folders, mixed-case extensions, PNGs, nested sub-folders and the zip's doubled folder."""
    root = tmp_path / "chest_xray" / "chest_xray" / "train"
    (root / "normal" / "batch1").mkdir(parents=True)
    (root / "Pneumonia").mkdir(parents=True)
    Image.fromarray(synthetic_xray(0, 1)).save(root / "normal" / "IM-0001-0001.JPG", format="JPEG")
    Image.fromarray(synthetic_xray(0, 2)).save(root / "normal" / "batch1" / "IM-0002-0001.png")
    Image.fromarray(synthetic_xray(1, 3)).save(root / "Pneumonia" / "person1_virus_1.Jpeg", format="JPEG")
    (root / "Pneumonia" / "notes.txt").write_text("not an image")
    (root / "Pneumonia" / ".DS_Store.jpeg").write_bytes(b"")

    split = find_split(tmp_path / "chest_xray", "train")
    samples = discover_split(split)
    assert sorted(s.path.name for s in samples) == ["IM-0001-0001.JPG", "IM-0002-0001.png", "person1_virus_1.Jpeg"]
    assert [s.label for s in sorted(samples, key=lambda s: s.label)] == [0, 0, 1]


def test_missing_class_folder_is_a_clear_error(tiny_data_dir, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(tiny_data_dir / "train", copy / "train")
    shutil.rmtree(copy / "train" / "PNEUMONIA")
    with pytest.raises(DataError, match="no PNEUMONIA/ folder"):
        discover_split(copy / "train")


def test_empty_class_folder_is_a_clear_error(tiny_data_dir, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(tiny_data_dir / "train", copy / "train")
    for image in (copy / "train" / "NORMAL").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="holds no .jpeg/.jpg/.png images"):
        discover_split(copy / "train")


def test_missing_split_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        find_split(tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match="has no test/ folder"):
        find_split(tmp_path, "test")


def test_patient_split_keeps_every_patient_on_one_side_and_is_seeded(tmp_path):
    root = write_kaggle_tree(tmp_path / "d", patients_per_class=20, images_per_patient=3)
    samples = discover_split(root / "train")
    fit, val = patient_split(samples, 0.2, seed=3)
    assert not {s.patient for s in fit} & {s.patient for s in val}
    assert len(fit) + len(val) == len(samples)
    assert {s.label for s in val} == {0, 1}
    assert 0.1 < len(val) / len(samples) < 0.3
    again, _ = patient_split(samples, 0.2, seed=3)
    other, _ = patient_split(samples, 0.2, seed=4)
    assert [s.path for s in again] == [s.path for s in fit]
    assert [s.path for s in other] != [s.path for s in fit]
