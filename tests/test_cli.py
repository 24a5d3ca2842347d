"""The command line: help, one-line errors with non-zero exits, predict's CSV and skipped files."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_xray
from inputs import dicom_bytes, twelve_bit
from PIL import Image

from pneumonia.cli import EXIT_SOME_REFUSED, main

pytestmark = pytest.mark.score_sensitive


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pneumonia", *args], capture_output=True, text=True, timeout=300)


OPTIONS = {
    "train": ["--data", "--out", "--epochs", "--image-size", "--seed", "--set"],
    "evaluate": ["--data", "--model-dir"],
    "predict": ["FILE_OR_DIR", "--threshold", "--csv", "--parquet", "--resume", "--workers", "--engine", "--chunk-size",
                "--quiet", "--no-gate", "--model-dir"],
    "report": ["FILE_OR_DIR", "--out", "--threshold", "--model-dir", "--names"],
    "calibrate": ["--data", "--model-dir"],
    "calibrate-site": ["NORMALS_DIR", "--max-flagged", "--model-dir"],
    "fit-gate": ["--data", "--model-dir"],
    "card": ["--model-dir", "--out", "--readme"],
    "study": ["analyse"],
    "pacs": ["scan", "watch"],
}


def test_help_lists_exactly_the_commands_whose_help_is_tested():
    result = _run("--help")
    assert result.returncode == 0
    assert "{" + ",".join(OPTIONS) + "}" in result.stdout


@pytest.mark.parametrize("command", list(OPTIONS))
def test_every_command_has_help(command):
    result = _run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m pneumonia {command}")
    for option in OPTIONS[command]:  # each on a line of its own in the argument list, not only in the usage line
        assert re.search(rf"^ {{2,}}{re.escape(option)}\b", result.stdout, re.MULTILINE), f"{command} --help lacks {option}"


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
    assert "No images or DICOM files found" in _error_line(capsys)


def test_predict_on_a_missing_file_fails_in_one_line(tiny_model_dir, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "x.png"), "--model-dir", str(tiny_model_dir)]) == 2
    assert _error_line(capsys) == f"error: {tmp_path / 'x.png'} does not exist."


def test_predict_with_a_missing_model_names_the_fix(tmp_path, capsys):
    Image.fromarray(synthetic_xray(0, 1)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--model-dir", str(tmp_path / "no_model")]) == 2
    assert "python -m pneumonia train" in _error_line(capsys)


def test_predict_writes_status_and_reason_and_leaves_refused_rows_unscored(tiny_predictor, tmp_path, capsys):
    folder = tmp_path / "xrays"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_xray(i % 2, 50 + i)).save(folder / f"img{i}.png")
    (folder / "corrupt.jpeg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "photo.png")
    dicom = dicom_bytes(twelve_bit(synthetic_xray(1, 60)), modality="CT")
    (folder / "scan_without_extension").write_bytes(dicom)
    (folder / "notes.txt").write_text("not an input")
    out = tmp_path / "out.csv"
    model_dir = str(tiny_predictor.model_dir)

    assert main(["predict", str(folder), "--csv", str(out), "--model-dir", model_dir]) == EXIT_SOME_REFUSED
    err = capsys.readouterr().err
    names = ["corrupt.jpeg", "img0.png", "img1.png", "img2.png", "photo.png", "scan_without_extension"]
    expected = tiny_predictor.screen([(str(folder / n), folder / n) for n in names])
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "status", "probability", "label", "threshold", "reason"]
    assert [r["file"] for r in rows] == [str(folder / n) for n in names]
    for row, screening in zip(rows, expected):
        assert (row["status"], row["reason"]) == (screening.status, screening.reason)
        if screening.status == "refused":
            assert row["probability"] == row["label"] == ""
            assert f"not scored  {row['file']}: {row['reason']}" in err
        else:
            assert float(row["probability"]) == pytest.approx(screening.probability, abs=1e-5)
            assert row["label"] == screening.label(tiny_predictor.default_threshold)
        assert float(row["threshold"]) == tiny_predictor.default_threshold.value
    by_name = dict(zip(names, rows))
    assert by_name["corrupt.jpeg"]["status"] == by_name["photo.png"]["status"] == "refused"
    assert by_name["scan_without_extension"]["reason"].startswith("wrong kind of image: DICOM modality CT")
    counts = {s: sum(r.status == s for r in expected) for s in ("ok", "caution", "refused")}
    assert f"{counts['ok']} ok, {counts['caution']} caution, {counts['refused']} refused in " in err and "; threshold" in err

    again = tmp_path / "at_zero.csv"  # a new file: an existing CSV is only added to with --resume
    assert main(["predict", str(folder), "--csv", str(again), "--threshold", "0", "--model-dir", model_dir]) == EXIT_SOME_REFUSED
    with open(again, newline="") as handle:
        assert {r["label"] for r in csv.DictReader(handle) if r["status"] != "refused"} == {"PNEUMONIA"}
    for name in ("corrupt.jpeg", "photo.png", "scan_without_extension", "notes.txt"):
        (folder / name).unlink()
    assert main(["predict", str(folder), "--model-dir", model_dir]) == 0  # every input scored


def test_no_gate_scores_every_readable_file_and_says_so(tiny_predictor, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out.csv"
    assert main(["predict", str(photo), "--no-gate", "--csv", str(out), "--model-dir", str(tiny_predictor.model_dir)]) == 0
    err = capsys.readouterr().err
    assert "the input gate is off (--no-gate)" in err and "1 unchecked" in err
    with open(out, newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert row["status"] == "unchecked" and float(row["probability"]) == pytest.approx(
        tiny_predictor.predict_bytes(photo.read_bytes()), abs=1e-5)


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


def test_predict_on_a_dicom_full_of_identifying_data_shows_none_of_it(tiny_predictor, tmp_path, capfd, caplog):
    import logging

    from inputs import PHI, PHI_UIDS, PRIVATE_VALUE

    caplog.set_level(logging.DEBUG)
    scan = tmp_path / "IMG0001"
    scan.write_bytes(dicom_bytes(twelve_bit(synthetic_xray(1, 70, size=256)), age="004Y"))
    out = tmp_path / "out.csv"
    assert main(["predict", str(scan), "--csv", str(out), "--model-dir", str(tiny_predictor.model_dir)]) == 0
    captured = capfd.readouterr()
    written = out.read_text()
    assert f"{scan},ok," in written or f"{scan},caution," in written  # the file was read, gated and scored
    for secret in [*PHI.values(), *PHI_UIDS, PRIVATE_VALUE, "20210314", "004Y"]:
        for where, text in (("stdout", captured.out), ("stderr", captured.err), ("csv", written), ("logs", caplog.text)):
            assert secret not in text, f"{secret!r} leaked to {where}"


# ---------------------------------------------------------------- one error path (issue 26 item 6)


def _film(tmp_path: Path) -> Path:
    Image.fromarray(synthetic_xray(1, 3)).save(tmp_path / "film.png")
    return tmp_path / "film.png"


def test_an_existing_csv_is_kept_unless_resume_is_asked_for_like_parquet(tiny_model_dir, tmp_path, capsys):
    film, out = _film(tmp_path), tmp_path / "rows.csv"
    out.write_text("earlier results\n")
    assert main(["predict", str(film), "--csv", str(out), "--model-dir", str(tiny_model_dir)]) == 2
    assert _error_line(capsys) == f"error: {out} already exists; pass --resume to add to it, or choose another --csv."
    assert out.read_text() == "earlier results\n"  # not overwritten


def test_a_csv_in_a_missing_folder_is_written_there(tiny_model_dir, tmp_path):
    film, out = _film(tmp_path), tmp_path / "new" / "deeper" / "rows.csv"
    assert main(["predict", str(film), "--csv", str(out), "--model-dir", str(tiny_model_dir)]) == 0
    assert out.read_text().splitlines()[0] == "file,status,probability,label,threshold,reason"


def test_an_output_that_cannot_be_written_fails_in_one_line(tiny_model_dir, tmp_path, capsys):
    film = _film(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(["predict", str(film), "--csv", str(blocker / "rows.csv"), "--model-dir", str(tiny_model_dir)])
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith("error: ") and str(blocker) in line and "check the path" in line


def test_a_damaged_model_folder_fails_in_one_line(tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "pneumonia_cnn.json").write_text("{not json")
    assert main(["predict", str(_film(tmp_path)), "--model-dir", str(folder)]) == 2
    assert "is not valid JSON" in _error_line(capsys)


def test_a_csv_that_is_not_predicts_own_fails_in_one_line_on_resume(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    out.write_bytes(b"\xff\xfe\x00garbage\n")
    code = main(["predict", str(_film(tmp_path)), "--csv", str(out), "--resume", "--model-dir", str(tiny_model_dir)])
    assert code == 2
    assert "is not a CSV written by predict" in _error_line(capsys)


def test_card_into_a_readme_without_its_markers_fails_in_one_line(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    assert main(["card", "--readme", str(readme), "--out", str(tmp_path / "card.md")]) == 2
    assert "has no results block" in _error_line(capsys)
