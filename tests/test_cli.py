"""The command line: help, one-line errors with non-zero exits, predict's CSV and skipped files."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from conftest import synthetic_xray
from pneumonia.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pneumonia", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_every_command_has_help(command):
    result = _run(command, "--help")
    assert result.returncode == 0
    assert f"usage: python -m pneumonia {command}" in result.stdout


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_train_on_a_missing_folder_fails_in_one_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 2
    assert _error_line(capsys) == f"error: Data folder {tmp_path / 'missing'} does not exist; pass the folder that holds train/ and test/."


def test_train_with_an_empty_class_fails_in_one_line(tiny_data_dir, tmp_path, capsys):
    shutil.copytree(tiny_data_dir / "train", tmp_path / "d" / "train")
    for image in (tmp_path / "d" / "train" / "PNEUMONIA").iterdir():
        image.unlink()
    assert main(["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m")]) == 2
    assert "PNEUMONIA holds no .jpeg/.jpg/.png images" in _error_line(capsys)


def test_evaluate_without_test_split_fails_in_one_line(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "train").mkdir()
    assert main(["evaluate", "--data", str(tmp_path), "--model-dir", str(tiny_model_dir)]) == 2
    assert "has no test/ folder" in _error_line(capsys)


def test_predict_on_a_folder_without_images_fails_in_one_line(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no pictures here")
    assert main(["predict", str(tmp_path), "--model-dir", str(tiny_model_dir)]) == 2
    assert "No .jpeg/.jpg/.png images found" in _error_line(capsys)


def test_predict_on_a_missing_file_fails_in_one_line(tiny_model_dir, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "x.png"), "--model-dir", str(tiny_model_dir)]) == 2
    assert _error_line(capsys) == f"error: {tmp_path / 'x.png'} does not exist."


def test_predict_with_a_missing_model_names_the_fix(tmp_path, capsys):
    Image.fromarray(synthetic_xray(0, 1)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--model-dir", str(tmp_path / "no_model")]) == 2
    assert "python -m pneumonia train" in _error_line(capsys)


def test_predict_writes_csv_skips_unreadable_files_and_applies_the_threshold(tiny_predictor, tmp_path, capsys):
    folder = tmp_path / "xrays"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_xray(i % 2, 50 + i)).save(folder / f"img{i}.png")
    (folder / "corrupt.jpeg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    out = tmp_path / "out.csv"
    model_dir = str(tiny_predictor.model_dir)

    assert main(["predict", str(folder), "--csv", str(out), "--model-dir", model_dir]) == 0
    err = capsys.readouterr().err
    assert f"warning: skipped {folder / 'corrupt.jpeg'}" in err
    assert "3 scored, 1 skipped" in err
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == [str(folder / f"img{i}.png") for i in range(3)]
    for row in rows:
        probability = float(row["probability"])
        expected = tiny_predictor.predict_bytes((folder / row["file"].split("/")[-1]).read_bytes())
        assert probability == pytest.approx(expected, abs=1e-5)
        assert row["prediction"] == ("PNEUMONIA" if probability >= tiny_predictor.threshold else "NORMAL")

    assert main(["predict", str(folder), "--csv", str(out), "--threshold", "0", "--model-dir", model_dir]) == 0
    with open(out, newline="") as handle:
        assert {r["prediction"] for r in csv.DictReader(handle)} == {"PNEUMONIA"}


def test_predict_rejects_a_threshold_outside_0_1(tiny_model_dir, tmp_path, capsys):
    Image.fromarray(synthetic_xray(0, 1)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--threshold", "1.5", "--model-dir", str(tiny_model_dir)]) == 2
    assert "--threshold must lie in [0, 1]" in _error_line(capsys)


def test_set_overrides_reach_config_fields_and_augmentations():
    from pneumonia.cli import config_from_overrides
    from pneumonia.config import TrainConfig

    config = config_from_overrides(TrainConfig(), ["learning_rate=0.001", "filters=[8,16]", "augment.gamma=0.5"])
    assert config.learning_rate == 0.001 and config.filters == (8, 16) and config.augment["gamma"] == 0.5
    assert TrainConfig().augment["gamma"] != 0.5  # the default is not mutated


def test_unknown_override_fails_in_one_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--set", "learnig_rate=1"]) == 2
    assert "unknown setting" in _error_line(capsys)


def test_predict_with_a_missing_model_prints_exactly_one_line_from_a_fresh_process(tmp_path):
    """Checked in a real process: Keras start-up chatter must not bury the one-line error."""
    Image.fromarray(synthetic_xray(0, 1)).save(tmp_path / "a.png")
    result = _run("predict", str(tmp_path / "a.png"), "--model-dir", str(tmp_path / "none"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: No model metadata at {tmp_path / 'none' / 'pneumonia_cnn.json'}; train a model with "
        f"`python -m pneumonia train --data DIR --out {tmp_path / 'none'}`."
    ]
