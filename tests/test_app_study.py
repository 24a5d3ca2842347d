"""AppTest on the Reader study page: a teacher creates a study, readers join, read alone, see the AI and revise,
come back with their PIN, and the teacher's dashboard shows progress, operating points, the class mean and the
MRMC result, which equals `study analyse` on the exported CSV. Each test has its own SQLite file (PNEUMONIA_DB)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from pneumonia.config import CLASS_NAMES, MODELS_DIR
from pneumonia.formatting import format_probability
from pneumonia.io.bundle import THUMBNAILS_DIR, read_metadata, read_test_predictions
from pneumonia.studies.design import draw_cases, next_step
from pneumonia.studies.results import analyse_csv, export_csv, operating_points, plain_words, snapshot
from pneumonia.studies.store import AIDED, CLOSED, UNAIDED, StudyStore
from pneumonia.training.evaluate import THUMBNAIL_SIDE

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app.py"
TIMEOUT = 180
THUMBNAIL_BUDGET = 8 * 1024 * 1024

pytestmark = pytest.mark.integration  # the page runs app.py, whose sidebar loads the committed model


@pytest.fixture
def db(monkeypatch, tmp_path) -> str:
    path = str(tmp_path / "studies.db")
    monkeypatch.setenv("PNEUMONIA_DB", path)
    monkeypatch.delenv("PNEUMONIA_MODEL_DIR", raising=False)
    return path


@pytest.fixture
def store(db):
    opened = StudyStore(db)
    yield opened
    opened.close()


def study_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at._page_hash = calc_hash("study")  # function pages are addressed by the hash of their url_path
    at.run()
    assert [t.value for t in at.title] == ["Reader study"]
    return ok(at)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def text_of(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "success", "info", "warning", "error", "header", "subheader")
             for e in getattr(at.main, kind)]
    return "\n".join(str(p) for p in parts)


def table(at: AppTest, column: str) -> list[dict]:
    """The rows of the one table or grid with this column (tables drawn in a fragment carry no key in AppTest);
    a table's index (the progress table's readers) comes back as its first column."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    found += [t.value.reset_index() for t in at.table if column in t.value.columns]
    (rows,) = found
    return rows.to_dict("records")


def button(at: AppTest, label: str):
    (found,) = [b for b in at.button if b.label == label]
    return found


def radio(at: AppTest, label: str):
    (found,) = [r for r in at.radio if r.label == label]
    return found


def as_teacher(at: AppTest) -> AppTest:
    at.radio(key="study_role").set_value("I am the teacher").run()
    return ok(at)


def new_study(store: StudyStore, aided: bool = True, count: int = 4, name: str = "Ward round"):
    test = read_test_predictions(MODELS_DIR)
    threshold = read_metadata(MODELS_DIR)["threshold"]["default"]
    study, code = store.create_study(name, draw_cases(test, count, 1, MODELS_DIR / THUMBNAILS_DIR), aided=aided,
                                     seed=1, threshold=threshold)
    return study, code, store.cases(study.id)


def join(at: AppTest, join_code: str, pseudonym: str, pin: str) -> AppTest:
    at.text_input(key="study_join_code").input(join_code)
    at.text_input(key="study_pseudonym").input(pseudonym)
    at.text_input(key="study_pin").input(pin)
    button(at, "Join").click().run()
    return ok(at)


def save(at: AppTest, call: str | None, confidence: int | None) -> AppTest:
    if call is not None:
        radio(at, "Your call").set_value(call)
    if confidence is not None:
        radio(at, "How sure are you?").set_value(confidence)
    button(at, "Save my reading").click().run()
    return ok(at)


def read_all(store, study, cases, reader, call_of, confidence_of):
    while (step := next_step(study, cases, reader, store.reader_readings(reader.id))).case is not None:
        store.record_reading(reader.id, step.case.position, step.modality, call_of(step.case, step.modality),
                             confidence_of(step.case, step.modality))


# ---------------------------------------------------------------- the shipped 224-px images


def test_the_test_images_ship_at_224_px_within_8_mb_with_their_attribution():
    folder = MODELS_DIR / THUMBNAILS_DIR
    images = sorted(folder.glob("*.jpg"))
    assert THUMBNAIL_SIDE == 224 and len(images) == len(read_test_predictions(MODELS_DIR).files) == 624
    assert sum(p.stat().st_size for p in images) <= THUMBNAIL_BUDGET
    for path in images[::50]:
        with Image.open(path) as image:
            assert (image.size, image.mode) == ((224, 224), "L")
    attribution = (folder / "ATTRIBUTION.md").read_text()
    assert "224x224" in attribution and "CC BY 4.0" in attribution and "10.17632/rscbjbr9sj.2" in attribution


# ---------------------------------------------------------------- teacher: create, codes, wrong code


def test_a_teacher_creates_a_study_and_sees_the_teacher_code_alone_before_the_class_screen(db):
    at = as_teacher(study_page())
    at.text_input(key="study_name").input("Tuesday class")
    at.number_input(key="study_cases").set_value(6)
    at.number_input(key="study_seed").set_value(3)
    button(at, "Create the study").click().run()
    ok(at)
    # Step 1: the teacher code on its own, with a warning, a download and a browser guard against a reload; no
    # join code, no dashboard: this screen is never the one projected to the class.
    (teacher_code,) = [c.value for c in at.code]
    assert len(teacher_code) == 32 and not re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", teacher_code)
    assert "Do not project this screen" in at.main.warning[0].value
    assert not [h for h in at.header if h.value.startswith("Dashboard")] and "Progress" not in text_of(at)
    assert "beforeunload" in " ".join(str(e.proto) for e in at.get("html"))
    (download,) = [e for e in at.get("download_button") if e.proto.label == "Download the teacher code"]
    assert download.proto.url  # the file itself is served by the media manager
    store = StudyStore(db)
    study = store.study_for_teacher(teacher_code)
    assert study.join_code not in text_of(at) and study.join_code not in [c.value for c in at.code]
    assert (study.name, study.aided, study.seed) == ("Tuesday class", True, 3)
    test = read_test_predictions(MODELS_DIR)
    stored = store.cases(study.id)
    assert [c.file for c in stored] == [c.file for c in draw_cases(test, 6, 3, MODELS_DIR / THUMBNAILS_DIR)]
    # Cases are kept by their image's content hash: no test file name (they carry patient numbers) in the database.
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", c.file) for c in stored)
    database = b"".join(Path(db + suffix).read_bytes() for suffix in ("", "-wal") if Path(db + suffix).is_file())
    assert not any(Path(f).stem.encode() in database for f in test.files)
    assert study.threshold == read_metadata(MODELS_DIR)["threshold"]["default"]

    # Continuing needs the teacher to say the code is saved.
    assert button(at, "Continue to the class screen (join code)").disabled
    at.run()  # a rerun (not a reload) keeps the step
    assert [c.value for c in ok(at).code] == [teacher_code]
    at.checkbox(key="study_code_saved_check").check().run()
    button(at, "Continue to the class screen (join code)").click().run()

    # Step 2, the class screen: the join code only, for good; the browser guard is removed.
    assert [c.value for c in ok(at).code] == [study.join_code]
    assert teacher_code not in text_of(at) and teacher_code not in " ".join(str(e.proto) for e in at.get("html"))
    assert "Dashboard: Tuesday class" in [h.value for h in at.header]
    assert "Progress: 0 of 0 readers finished" in [s.value for s in at.subheader]
    assert "removeEventListener" in " ".join(str(e.proto) for e in at.get("html"))
    at.run()
    assert [c.value for c in ok(at).code] == [study.join_code]
    store.close()


def test_a_new_dashboard_speaks_plainly(store):
    _, code, _ = new_study(store)
    at = open_dashboard(code)
    shown = text_of(at)
    assert "No reader has joined yet" in shown and "once at least two readers have read every case" in shown
    for word in ("CSV", "rating", "AUC", "p =", "None", "nan", "hold no rows", "reader,case"):
        assert word not in shown, word
def test_a_study_name_that_could_become_markup_is_refused(db):
    at = as_teacher(study_page())
    at.text_input(key="study_name").input("<b>Ward</b>")
    button(at, "Create the study").click().run()
    assert "letters, digits, spaces" in ok(at).main.error[0].value and not at.code
    assert StudyStore(db).studies() == []


def test_a_wrong_teacher_code_shows_nothing(store):
    study, code, _ = new_study(store)
    store.join(study.join_code, "Ann", "1234")
    at = as_teacher(study_page())
    at.radio(key="study_teacher_mode").set_value("Open my study's dashboard").run()
    for wrong in (code[:-1] + ("A" if code[-1] != "A" else "B"), study.join_code, ""):
        at.text_input(key="study_teacher_code").input(wrong)
        button(at, "Open the dashboard").click().run()
        assert [w.value for w in ok(at).main.warning] == ["No study opens with this code."]
        assert not at.header and not at.dataframe and not at.code
        assert study.name not in text_of(at) and "Ann" not in text_of(at)


# ---------------------------------------------------------------- reader: join, read, reveal, revise, come back


@pytest.mark.integration
@pytest.mark.score_sensitive
def test_a_reader_joins_reads_alone_sees_the_ai_revises_and_comes_back_on_another_device(store):
    study, _, cases = new_study(store, aided=True)
    _, bob, _ = store.join(study.join_code, "Bob", "9999")
    read_all(store, study, cases, bob, lambda c, m: 1, lambda c, m: 5)  # another reader: never shown to Ann

    at = join(study_page(), study.join_code.lower(), "Ann", "2468")
    assert "Welcome, Ann." in [s.value for s in at.main.success]
    assert "Reading as **Ann** in **Ward round**" in text_of(at)
    (reader,) = [r for r in store.readers(study.id) if r.pseudonym == "Ann"]
    step = next_step(study, cases, reader, [])
    assert at.get("progress")[0].proto.text == "Case 1 of 4, alone"
    assert "P(pneumonia)" not in text_of(at)  # nothing of the AI before the first reading

    save(at, "PNEUMONIA", None)  # no confidence: nothing is stored
    assert "Choose NORMAL or PNEUMONIA and how sure you are" in at.main.warning[0].value
    assert store.reader_readings(reader.id) == []

    save(at, "PNEUMONIA", 4)
    assert "Saved: case 1, alone: PNEUMONIA, sure (4 of 5)." in [s.value for s in at.main.success]
    (first,) = store.reader_readings(reader.id)
    assert (first.position, first.modality, first.call, first.confidence) == (step.case.position, UNAIDED, 1, 4)
    assert at.get("progress")[0].proto.text == "Case 1 of 4, with the AI"
    threshold = study.threshold
    label = CLASS_NAMES[int(step.case.probability >= threshold)]
    assert f"P(pneumonia) {format_probability(step.case.probability)}, **{label}**" in text_of(at)
    captions = [c for image in at.image for c in image.captions]
    assert any(c.startswith("LIME") for c in captions) and any(c.startswith("Grad-CAM") for c in captions)
    assert "Your reading alone: **PNEUMONIA**, sure (4 of 5)." in text_of(at)
    assert (radio(at, "Your call").value, radio(at, "How sure are you?").value) == ("PNEUMONIA", 4)  # kept or changed

    save(at, "NORMAL", 2)
    assert "Saved: case 1, with the AI: NORMAL, unsure (2 of 5)." in [s.value for s in at.main.success]
    assert [(r.modality, r.call, r.confidence) for r in store.reader_readings(reader.id)] == [
        (UNAIDED, 1, 4), (AIDED, 0, 2)]
    assert at.get("progress")[0].proto.text == "Case 2 of 4, alone"
    assert "Bob" not in text_of(at)

    # Another device: a new session, the same three answers; a wrong PIN gets nothing.
    other = join(study_page(), study.join_code, "ann", "1111")
    assert "do not let you in" in other.main.error[0].value and not other.get("progress")
    other = join(study_page(), study.join_code, "ann", "2468")
    assert "Welcome back, Ann: you carry on where you left off." in [s.value for s in other.main.success]
    assert other.get("progress")[0].proto.text == "Case 2 of 4, alone"

    # A double submission (the first tab, still showing case 1 with the AI) stores nothing new.
    before = store.reader_readings(reader.id)
    button(at, "Leave").click().run()
    assert ok(at).text_input(key="study_join_code") is not None
    assert store.reader_readings(reader.id) == before


def test_in_a_study_without_the_ai_the_reader_never_sees_the_model_and_gets_their_own_result(store):
    study, _, cases = new_study(store, aided=False)
    at = join(study_page(), study.join_code, "Cai", "1234")
    for number, case in enumerate(cases, start=1):
        assert at.get("progress")[0].proto.text == f"Case {number} of 4"
        save(at, "PNEUMONIA", 3)
        assert "P(pneumonia)" not in text_of(at) and "The AI" not in text_of(at)
    assert "You have read all the cases of this study. Thank you, Cai!" in [s.value for s in at.main.success]
    own = at.dataframe[0].value.to_dict("records")
    assert own == [{"": "You, alone", "sensitivity": "1.00", "specificity": "0.00"}]


def test_a_pseudonym_that_could_become_markup_is_refused(store):
    study, _, _ = new_study(store)
    at = join(study_page(), study.join_code, "<b onclick=x>Ann</b>", "1234")
    assert "letters, digits, spaces" in at.main.error[0].value
    assert store.readers(study.id) == []


# ---------------------------------------------------------------- the teacher's dashboard


def finished_class(store, study, cases, readers: int = 3):
    """Readers who miss some pneumonias alone and fewer with the AI, with varied confidences; and one unfinished."""
    rng = np.random.default_rng(4)
    for i in range(readers):
        _, reader, _ = store.join(study.join_code, f"Reader {i}", "1234")
        read_all(store, study, cases, reader,
                 lambda c, m: int(rng.random() < (0.95 if m == AIDED else 0.7)) if c.truth else int(rng.random() < 0.3),
                 lambda c, m: int(rng.integers(1, 6)))
    _, late, _ = store.join(study.join_code, "Late", "1234")
    step = next_step(study, cases, late, [])
    store.record_reading(late.id, step.case.position, UNAIDED, 1, 3)


def open_dashboard(code: str) -> AppTest:
    at = as_teacher(study_page())
    at.radio(key="study_teacher_mode").set_value("Open my study's dashboard").run()
    at.text_input(key="study_teacher_code").input(code)
    button(at, "Open the dashboard").click().run()
    return ok(at)


def test_the_dashboard_shows_progress_points_the_class_mean_and_the_analysis_of_the_export(store, tmp_path):
    study, code, cases = new_study(store, count=12)
    finished_class(store, study, cases)
    at = open_dashboard(code)
    assert "Progress: 3 of 4 readers finished" in [s.value for s in at.subheader]
    progress = {r["reader"]: r for r in table(at, "read alone")}
    assert progress["Late"]["read alone"] == "1 of 12" and progress["Late"]["finished"] == "no"
    assert progress["Reader 0"]["read with the AI"] == "12 of 12" and progress["Reader 0"]["finished"] == "yes"

    snap = snapshot(store, study)
    figure = json.loads([e for e in at.get("plotly_chart") if e.key == "study_roc"][0].proto.spec)
    traces = {t["name"]: t for t in figure["data"]}
    for modality, name in ((UNAIDED, "readers alone"), (AIDED, "readers with the AI")):
        points = [p for p in operating_points(snap) if p.modality == modality
                  and np.isfinite(p.sensitivity) and np.isfinite(p.specificity)]
        assert traces[name]["y"] == pytest.approx([p.sensitivity for p in points])
        assert traces[name]["x"] == pytest.approx([1 - p.specificity for p in points])
    finished = [p for p in operating_points(snap) if p.finished and p.modality == AIDED]
    assert traces["class mean with the AI"]["y"] == pytest.approx([np.mean([p.sensitivity for p in finished])])

    exported = export_csv(snap)
    (download,) = [e for e in at.get("download_button") if e.proto.label == "Download the readings (CSV)"]
    result = analyse_csv(exported)
    assert plain_words(result).split("\n\n")[0] in text_of(at)
    auc_table = table(at, "AUC with the AI")
    assert [row["reader"] for row in auc_table] == ["Reader 0", "Reader 1", "Reader 2", "mean"]

    # The same numbers as `python -m pneumonia study analyse` on the exported file.
    path, out = tmp_path / "readings.csv", tmp_path / "analysis.json"
    path.write_text(exported)
    cli = subprocess.run([sys.executable, "-m", "pneumonia", "study", "analyse", str(path), "--json", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    analysed = json.loads(out.read_text())
    (comparison,) = analysed["comparisons"]
    assert analysed["mean_auc"] == pytest.approx(result.mean_auc)
    assert comparison["p"] == pytest.approx(result.comparisons[0].p)
    tests = table(at, "what")
    assert tests[0]["p"] == f"{comparison['p']:.4f}" and tests[0]["estimate"] == f"{comparison['difference']:.4f}"
    assert all(isinstance(v, str) and v and v not in ("None", "nan") for row in tests + auc_table for v in row.values())
    low, high = (max(-1.0, comparison["ci"][0]), min(1.0, comparison["ci"][1]))
    assert tests[0]["95% interval"] == f"{low:.3f} to {high:.3f}"
    for row in tests[1:]:  # each modality's mean AUC: its interval cut to [0, 1]
        a, b = (float(v) for v in row["95% interval"].split(" to "))
        assert 0.0 <= a <= b <= 1.0
    assert f"{analysed['mean_auc']['unaided']:.2f} alone" in text_of(at)
    assert f"{analysed['mean_auc']['aided']:.2f} with the AI" in text_of(at)
    assert download.proto.url  # the file itself is served by the media manager


def test_the_teacher_closes_then_deletes_the_study_with_all_its_readings(store):
    study, code, cases = new_study(store)
    _, ann, _ = store.join(study.join_code, "Ann", "1234")
    reader_at = join(study_page(), study.join_code, "Ann", "1234")
    at = open_dashboard(code)
    button(at, "Close joining").click().run()
    assert store.study(study.id).status == "reading" and "Joining closed, reading open" in text_of(ok(at))
    assert "do not let you in" not in text_of(join(study_page(), study.join_code, "Ann", "1234"))
    assert "closed to new readers" in join(study_page(), study.join_code, "Bob", "1234").main.error[0].value
    button(at, "Close the study").click().run()
    assert store.study(study.id).status == CLOSED and ok(at).button(key="study_reopen")
    reader_at.run()
    assert "The teacher has closed this study" in ok(reader_at).main.warning[0].value
    assert not [b for b in reader_at.button if b.label == "Save my reading"]

    at.text_input(key="study_delete_confirm").input("not the name")
    button(at, "Delete the study and all its readings").click().run()
    assert "nothing was deleted" in ok(at).main.warning[0].value and store.study(study.id) is not None
    at.text_input(key="study_delete_confirm").input("ward ROUND")
    button(at, "Delete the study and all its readings").click().run()
    assert store.study(study.id) is None and store.readers(study.id) == [] and store.readings(study.id) == []
    assert "Deleted the study" in ok(at).main.success[0].value and not at.header
    reader_at.run()
    assert "deleted by its teacher" in ok(reader_at).main.info[0].value


def test_markdown_characters_in_names_are_shown_as_themselves():
    from ui.reader_study import escape_markdown

    assert escape_markdown("ann_b*c [x] <b> #1 :red") == "ann\\_b\\*c \\[x\\] \\<b\\> \\#1 \\:red"
    assert escape_markdown("Ward 3.b-2") == "Ward 3.b-2"


def test_a_reader_name_with_an_underscore_is_not_turned_into_italics(store):
    study, _, _ = new_study(store, aided=False)
    at = join(study_page(), study.join_code, "ann_b_c", "1234")
    assert "Welcome, ann\\_b\\_c." in [s.value for s in at.main.success]
    assert "Reading as **ann\\_b\\_c**" in text_of(at)


# ---------------------------------------------------------------- issue 27: two windows, unlock, plain visible text


def test_a_second_window_of_the_same_reader_never_shows_a_dropped_answer_as_saved(store):
    study, _, _ = new_study(store, aided=False)
    tab_a = join(study_page(), study.join_code, "Ann", "2468")
    tab_b = join(study_page(), study.join_code, "Ann", "2468")
    save(tab_a, "NORMAL", 3)
    assert "Saved: case 1, alone: NORMAL, fairly sure (3 of 5)." in [s.value for s in tab_a.main.success]
    save(tab_b, "PNEUMONIA", 5)  # tab B still shows case 1
    assert not [s.value for s in tab_b.main.success if s.value.startswith("Saved")]
    (warning,) = [w.value for w in tab_b.main.warning]
    assert "already answered in another window" in warning and "Stored: case 1, alone: NORMAL, fairly sure" in warning
    (reader,) = store.readers(study.id)
    assert [(r.call, r.confidence) for r in store.reader_readings(reader.id)] == [(0, 3)]
    assert tab_b.get("progress")[0].proto.text == "Case 2 of 4"  # and it moves on to the next case

    # The same answer sent again (a double tap) is confirmed as saved, truthfully.
    save(tab_a, "PNEUMONIA", 4)
    save(tab_b, "PNEUMONIA", 4)  # tab B still shows case 2
    assert any(s.value.startswith("Saved already") for s in tab_b.main.success)


def test_the_teacher_unlocks_a_locked_out_reader_from_the_dashboard(store):
    from pneumonia.studies.store import MAX_PIN_FAILURES, WRONG_PIN, StudyError

    study, code, _ = new_study(store)
    store.join(study.join_code, "Ann", "2468")
    for _ in range(MAX_PIN_FAILURES):
        with pytest.raises(StudyError):
            store.join(study.join_code, "Ann", "0000")
    reader_at = join(study_page(), study.join_code, "Ann", "2468")
    assert [e.value for e in reader_at.main.error] == [WRONG_PIN] and not reader_at.get("progress")

    at = open_dashboard(code)
    assert at.selectbox(key="study_manage_reader").options == ["Ann (locked out)"]
    button(at, "Unlock").click().run()
    assert "can try their PIN again" in ok(at).main.success[0].value and store.locked_readers(study.id) == []
    reader_at = join(study_page(), study.join_code, "Ann", "2468")
    assert "Welcome back, Ann" in reader_at.main.success[0].value

    at.text_input(key="study_rename_to").input("Reader 9")
    button(at, "Rename").click().run()
    assert [r.pseudonym for r in store.readers(study.id)] == ["Reader 9"]


def test_a_busy_database_is_a_sentence_on_the_page_not_a_traceback(store, monkeypatch):
    from pneumonia.studies import store as store_module

    study, _, _ = new_study(store)
    at = study_page()

    def busy(self, *args, **kwargs):
        raise store_module.StudyBusy(store_module.BUSY_MESSAGE)

    monkeypatch.setattr(store_module.StudyStore, "_join", busy)
    at = join(at, study.join_code, "Ann", "2468")
    assert [e.value for e in at.main.error] == [store_module.BUSY_MESSAGE]


def test_the_dashboard_shows_no_statistic_outside_its_expander(store):
    from test_plain_words import visible_text

    study, code, cases = new_study(store, count=12)
    finished_class(store, study, cases)
    at = open_dashboard(code)
    shown = "\n".join(visible_text(at.main, []))
    assert "finished all" in shown and "with the AI" in shown
    for word in (r"\bAUC\b", r"\bp [=<]", r"\bNone\b", r"\bnan\b", r"\bCSV\b format", "Obuchowski", "Hillis"):
        assert not re.search(word, shown), word


def test_a_teacher_makes_a_study_of_their_own_films_and_a_reader_reads_them(db):
    import io
    import zipfile

    from test_study_own_cases import teacher_folder

    folder, truth = teacher_folder(Path(db).parent)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    at = as_teacher(study_page())
    at.radio(key="study_source").set_value("My own films").run()
    at.text_input(key="study_own_name").input("Own films")
    at.get("file_uploader")[0].set_value(("films.zip", buffer.getvalue(), "application/zip"))
    at.get("file_uploader")[1].set_value(("truth.csv", truth.encode(), "text/csv"))
    button(at, "Create the study").click().run()
    (teacher_code,) = [c.value for c in ok(at).code]
    left_out = {row["file"]: row["why"] for row in table(at, "why")}
    assert left_out["notes.txt"] == "not in the truth file" and "holiday.png" in left_out
    store = StudyStore(db)
    study = store.study_for_teacher(teacher_code)
    cases = store.cases(study.id)
    assert study.name == "Own films" and all(c.subtype == "own" for c in cases)

    reader = join(study_page(), study.join_code, "Ann", "2468")
    (ann,) = store.readers(study.id)
    first = next_step(study, cases, ann, []).case
    shown = [image for image in reader.image if any("224 × 224" in c for c in image.captions)]
    assert len(shown) == 1
    save(reader, "PNEUMONIA", 3)
    captions = [c for image in reader.image for c in image.captions]
    assert any(c.startswith("LIME") for c in captions) and any(c.startswith("Grad-CAM") for c in captions)
    assert f"P(pneumonia) {format_probability(first.probability)}" in text_of(reader)
    store.close()
