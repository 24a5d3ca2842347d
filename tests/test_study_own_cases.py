"""A study over the teacher's own films: gated and scored like uploads, refused films listed with reasons, kept
films stored in the study by content hash with nothing of their names or DICOM headers."""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from inputs import PHI, PRIVATE_VALUE, dicom_bytes, radiograph_grey
from PIL import Image

from pneumonia.config import ASSETS_DIR, MODELS_DIR
from pneumonia.io.bundle import THUMBNAILS_DIR
from pneumonia.studies.own_cases import create_own_study, films_from, films_from_zip, read_truth
from pneumonia.studies.store import StudyError, StudyStore

pytestmark = pytest.mark.integration  # scores the films with the committed model

SAMPLES = sorted((ASSETS_DIR / "samples").glob("*.jpeg"))


@pytest.fixture(scope="module")
def predictor():
    from pneumonia.screening.predictor import load_predictor

    return load_predictor(MODELS_DIR)


def teacher_folder(tmp_path: Path) -> tuple[Path, str]:
    """Three sample films, three test thumbnails, a DICOM full of identifiers, a photo the gate refuses, a note
    with no truth, and a truth row without a film."""
    folder = tmp_path / "films"
    folder.mkdir()
    truth = ["file,truth"]
    for path in SAMPLES:
        shutil.copy(path, folder / path.name)
        truth.append(f"{path.name},{0 if path.name.startswith('normal') else 1}")
    for name, label in (("IM-0003-0001.jpg", 0), ("IM-0005-0001.jpg", 0), ("person1_virus_6.jpg", 1)):
        source = MODELS_DIR / THUMBNAILS_DIR / name
        if source.is_file():
            shutil.copy(source, folder / f"film_{name}")
            truth.append(f"film_{name},{label}")
    (folder / "chest.dcm").write_bytes(dicom_bytes(radiograph_grey(SAMPLES[0])))
    truth.append("chest.dcm,1")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), "RGB").save(folder / "holiday.png")
    truth.append("holiday.png,0")
    (folder / "notes.txt").write_text("not a film")
    truth.append("missing.jpeg,1")
    return folder, "\n".join(truth) + "\n"


def test_a_teachers_films_become_a_study_stored_by_content_hash_without_names_or_headers(tmp_path, predictor):
    folder, truth = teacher_folder(tmp_path)
    db = tmp_path / "studies.db"
    store = StudyStore(str(db))
    study, teacher_code, refused = create_own_study(store, "My films", films_from(folder), truth, predictor, seed=2)
    reasons = dict(refused)
    assert reasons["notes.txt"] == "not in the truth file"
    assert reasons["missing.jpeg"] == "in the truth file, but no such film"
    assert reasons.get("holiday.png")  # the gate's own reason
    cases = store.cases(study.id)
    kept = len(films_from(folder)) - sum(name in reasons for name, _ in films_from(folder))
    assert len(cases) == kept >= 4 and {c.truth for c in cases} == {0, 1}
    assert store.study_for_teacher(teacher_code) == study and study.threshold == predictor.default_threshold.value
    for case in cases:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", case.file) and case.subtype == "own"
        png = store.case_image(study.id, case.file)
        with Image.open(io.BytesIO(png)) as image:
            assert (image.size, image.mode) == ((224, 224), "L") and not image.info.get("dpi") and not image.text
        assert 0.0 <= case.probability <= 1.0
    # Nothing of a file name or a DICOM header anywhere in the database.
    store.close()
    database = b"".join(Path(str(db) + s).read_bytes() for s in ("", "-wal") if Path(str(db) + s).is_file())
    for secret in [*PHI.values(), PRIVATE_VALUE, "chest.dcm", "bacterial_person100", "IM-0003", "film_"]:
        assert str(secret).encode() not in database, secret


def test_the_films_can_come_as_a_zip_and_the_truth_file_is_checked(tmp_path):
    folder, _ = teacher_folder(tmp_path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"class/{path.name}")
        archive.writestr("__MACOSX/._x.jpeg", b"junk")
        archive.writestr("class/.DS_Store", b"junk")
    assert sorted(films_from_zip(buffer.getvalue())) == sorted(films_from(folder))
    zipped = tmp_path / "films.zip"
    zipped.write_bytes(buffer.getvalue())
    assert sorted(films_from(zipped)) == sorted(films_from(folder))
    with pytest.raises(StudyError, match="not a readable ZIP"):
        films_from_zip(b"not a zip")

    assert read_truth("file,truth\nNA,1\nnull,0\nsub/x.png,1\n") == {"NA": 1, "null": 0, "x.png": 1}
    for text, message in (("name,label\na,1\n", "columns file and truth"), ("file,truth\na,2\n", "not '2'"),
                          ("file,truth\na,1\na,0\n", "twice"), ("file,truth\n", "no rows")):
        with pytest.raises(StudyError, match=message):
            read_truth(text)


def test_study_create_on_the_command_line_prints_both_codes(tmp_path, capsys):
    from pneumonia.cli import main

    folder, truth = teacher_folder(tmp_path)
    (tmp_path / "truth.csv").write_text(truth)
    db = tmp_path / "cli.db"
    assert main(["study", "create", "--name", "Thursday", "--cases", str(folder), "--truth",
                 str(tmp_path / "truth.csv"), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "left out: notes.txt: not in the truth file" in out and "left out: holiday.png:" in out
    teacher_code = re.search(r"teacher code .*: (\S+)$", out, re.MULTILINE).group(1)
    join_code = re.search(r"join code \(for the class\): (\S+)$", out, re.MULTILINE).group(1)
    store = StudyStore(str(db))
    study = store.study_for_teacher(teacher_code)
    assert study.name == "Thursday" and study.join_code == join_code and study.aided
    store.close()
