"""A classroom reader study in a real browser: a teacher on a desktop (1400 px) creates an AI-aided study and
watches the dashboard while two readers on phones (390 px) join, read alone, see the AI, revise, and one of them
reloads and comes back with the PIN. `streamlit run app.py` with its own SQLite file, driven by Debian's Chromium.

SAVE_SCREENSHOTS=1 writes the Reader study screenshots the README shows into docs/screenshots/ (otherwise to a tmp
dir), and docs/screenshots/MODEL_SHA256 once every screenshot the README shows was taken in this pytest run.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
from test_e2e import (  # the other end-to-end test's helpers: one way to start Chromium, measure and screenshot
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOT_MODEL_FILE,
    SCREENSHOTS,
    UI_TIMEOUT_MS,
    _committed_model_sha256,
    _cut_off,
    _readme_screenshots,
    _screenshot,
    _wait_idle,
    running_app,
)

from pneumonia.studies.store import StudyStore

CASES = 6
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 1}
DESKTOP = {"viewport": {"width": 1400, "height": 1000}}

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def playwright_api():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (`apt-get install chromium`); this test never downloads a browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -r requirements-test.txt)")
    return sync_playwright


@pytest.fixture(scope="module")
def study_server(playwright_api, tmp_path_factory):
    folder = tmp_path_factory.mktemp("study_server")
    env = {k: v for k, v in os.environ.items() if k != "PNEUMONIA_MODEL_DIR"}
    env["PNEUMONIA_DB"] = str(folder / "studies.db")
    with (folder / "server.log").open("w") as log, \
            running_app(env, log, options=("--browser.gatherUsageStats", "false")) as url:
        yield url, env["PNEUMONIA_DB"], folder / "server.log"


def _process_started() -> float:
    """When this pytest process started (the screenshots of every e2e module in this run are newer)."""
    return os.stat(f"/proc/{os.getpid()}").st_ctime


@pytest.fixture(scope="module")
def study_shots(tmp_path_factory):
    if os.environ.get("SAVE_SCREENSHOTS") != "1":
        yield tmp_path_factory.mktemp("study_screenshots")
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield SCREENSHOTS
    started = _process_started() - 1
    if all(p.is_file() and p.stat().st_mtime >= started for p in _readme_screenshots()):
        SCREENSHOT_MODEL_FILE.write_text(_committed_model_sha256() + "\n")


def _choose(page, group: str, option: str) -> None:
    page.locator("[data-testid=stRadio]", has_text=group).locator("label", has_text=option).first.click()


def _join(page, url: str, join_code: str, pseudonym: str, pin: str, welcome: str) -> None:
    page.goto(f"{url}/study", wait_until="networkidle")
    page.get_by_label("Join code", exact=True).fill(join_code)
    page.get_by_label("Pseudonym (not your real name)", exact=True).fill(pseudonym)
    page.get_by_label("PIN (4 to 8 digits)", exact=True).fill(pin)
    page.get_by_role("button", name="Join").click()
    page.get_by_text(welcome, exact=False).wait_for(timeout=UI_TIMEOUT_MS)


def _progress(page) -> str:
    return page.locator("[data-testid=stProgress]").inner_text(timeout=UI_TIMEOUT_MS)


def _save(page, number: int, modality: str) -> None:
    page.get_by_role("button", name="Save my reading").click()
    page.get_by_text(f"Saved: case {number}, {modality}", exact=False).wait_for(timeout=UI_TIMEOUT_MS)


def _read_alone(page, number: int, call: str, confidence: str) -> None:
    page.get_by_text(f"Case {number} of {CASES}, alone").wait_for(timeout=UI_TIMEOUT_MS)
    from playwright.sync_api import expect

    # Nothing of the model before the first call, once the last case's elements (kept while the page reruns) go.
    expect(page.get_by_text("P(pneumonia)", exact=False)).to_have_count(0, timeout=UI_TIMEOUT_MS)
    _choose(page, "Your call", call)
    _choose(page, "How sure are you?", confidence)
    _save(page, number, "alone")


def _read_with_ai(page, number: int, call: str | None = None, confidence: str | None = None) -> None:
    page.get_by_text(f"Case {number} of {CASES}, with the AI").wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("P(pneumonia)", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("Grad-CAM: evidence", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    if call:
        _choose(page, "Your call", call)
    if confidence:
        _choose(page, "How sure are you?", confidence)
    _save(page, number, "with the AI")


def _simulate_class(store: StudyStore, study, readers: int) -> None:
    """Readers right alone about 3 times in 4 who, with the AI, take the model's call 70% of the time when it is
    right and 30% when it is wrong."""
    import numpy as np

    from pneumonia.studies.design import commit_reading, next_step

    rng = np.random.default_rng(18)
    cases = store.cases(study.id)
    for i in range(readers):
        _, reader, _ = store.join(study.join_code, f"Student {i + 1:02d}", "1234")
        first = {}
        while (step := next_step(study, cases, reader, store.reader_readings(reader.id))).case is not None:
            case = step.case
            if step.modality == "unaided":
                right = rng.random() < 0.75
                call = case.truth if right else 1 - case.truth
                confidence = int(rng.integers(3, 6) if right else rng.integers(1, 4))
                first[case.position] = (call, confidence)
            else:
                call, confidence = first[case.position]
                model = int(case.probability >= study.threshold)
                if rng.random() < (0.7 if model == case.truth else 0.3):
                    call, confidence = model, (min(5, confidence + 1) if call == model else max(1, confidence - 1))
            commit_reading(store, study, cases, reader, case.position, step.modality, call, confidence)


def test_a_teacher_on_a_desktop_and_two_readers_on_phones_run_a_study(playwright_api, study_server, study_shots):
    url, db, _ = study_server
    with playwright_api() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        teacher = browser.new_context(**DESKTOP).new_page()
        ann = browser.new_context(**PHONE).new_page()
        bea = browser.new_context(**PHONE).new_page()

        # The teacher creates a 6-case AI-aided study and reads off the two codes.
        teacher.goto(f"{url}/study", wait_until="networkidle")
        teacher.get_by_text("I am the teacher").click()
        teacher.get_by_label("Study name", exact=True).fill("Tuesday class")
        teacher.get_by_label("Number of cases", exact=True).fill(str(CASES))  # no Enter: that submits the form
        teacher.get_by_role("button", name="Create the study").click()
        # Step 1: the teacher code alone (never beside the join code), and the browser asks before leaving it.
        teacher.get_by_text("Step 1 of 2: save your teacher code", exact=False).wait_for(timeout=UI_TIMEOUT_MS)
        codes = teacher.locator("[data-testid=stCode]")
        codes.first.wait_for(timeout=UI_TIMEOUT_MS)
        (teacher_code,) = [c.strip() for c in codes.all_inner_texts()]
        assert len(teacher_code) == 32 and "Join code" not in teacher.inner_text("body")
        _wait_idle(teacher)
        dialogs = []
        teacher.once("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
        teacher.close(run_before_unload=True)  # as a reload or a closed tab would: the browser asks first
        teacher.wait_for_timeout(1000)
        assert dialogs == ["beforeunload"] and not teacher.is_closed()
        assert teacher_code in teacher.inner_text("body")  # staying keeps the code on screen
        teacher.get_by_text("I have saved the teacher code somewhere private").click()
        teacher.get_by_role("button", name="Continue to the class screen (join code)").click()
        teacher.get_by_text("Join code for the readers", exact=False).wait_for(timeout=UI_TIMEOUT_MS)
        _wait_idle(teacher)
        (join_code,) = [c.strip() for c in codes.all_inner_texts()]
        assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){2}", join_code)
        assert teacher_code not in teacher.inner_text("body")  # the class screen never shows it

        # Two readers on phones; Ann reads her first case alone and with the AI, and changes her mind.
        _join(ann, url, join_code.lower(), "Ann", "2468", "Welcome, Ann.")
        _join(bea, url, join_code, "Bea", "1357", "Welcome, Bea.")
        _read_alone(ann, 1, "PNEUMONIA", "2 unsure")
        _read_with_ai(ann, 1, "NORMAL", "3 fairly sure")
        _read_alone(bea, 1, "NORMAL", "4 sure")
        _read_alone(ann, 2, "PNEUMONIA", "4 sure")
        ann.get_by_text("Case 2 of 6, with the AI").wait_for(timeout=UI_TIMEOUT_MS)
        ann.get_by_text("LIME: red pushes", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
        _wait_idle(ann)
        ann.wait_for_timeout(1000)
        assert _cut_off(ann) == []
        assert "Bea" not in ann.inner_text("body") and "Dashboard" not in ann.inner_text("body")
        # The X-ray, the AI's maps, the question and "Save my reading" within two phone screens (was ~2,700 px).
        span = ann.evaluate(
            "() => { const top = document.querySelector('[data-testid=stProgress]').getBoundingClientRect().top;"
            " const save = [...document.querySelectorAll('button')].find(b => b.innerText.includes('Save my reading'));"
            " return save.getBoundingClientRect().bottom - top; }")
        assert span <= 2 * PHONE["viewport"]["height"], span
        _screenshot(ann, study_shots / "narrow_study_reader_390.png", width=390)
        ann.set_viewport_size(PHONE["viewport"])
        _read_with_ai(ann, 2)

        # Bea reloads (a new session: nothing in the browser) and comes back with her PIN where she left off.
        _read_with_ai(bea, 1)
        bea.reload(wait_until="networkidle")
        bea.get_by_label("Join code", exact=True).wait_for(timeout=UI_TIMEOUT_MS)
        _join(bea, url, join_code, "bea", "0000", "do not let you in")
        _join(bea, url, join_code, "bea", "1357", "Welcome back, Bea")
        assert _progress(bea).startswith(f"Case 2 of {CASES}, alone")

        for number in range(2, CASES + 1):
            _read_alone(bea, number, "PNEUMONIA", "5 certain")
            _read_with_ai(bea, number)
        for number in range(3, CASES + 1):
            _read_alone(ann, number, "NORMAL" if number % 2 else "PNEUMONIA", "3 fairly sure")
            _read_with_ai(ann, number, "PNEUMONIA", "4 sure")
        for reader in (ann, bea):
            reader.get_by_text("You have read all the cases of this study", exact=False).wait_for(timeout=UI_TIMEOUT_MS)
            assert "Ann" not in bea.inner_text("body")

        # The teacher's dashboard refreshes by itself: both finished, the analysis, and the CSV.
        teacher.get_by_text("Progress: 2 of 2 readers finished").wait_for(timeout=UI_TIMEOUT_MS)
        teacher.get_by_text("2 readers", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
        from playwright.sync_api import expect

        heading = teacher.get_by_text("Did the AI help?")
        heading.first.wait_for(timeout=UI_TIMEOUT_MS)
        _wait_idle(teacher)  # the download button of this refresh, not of the one before, holds both readers
        # One heading once the refresh settles: a stale copy left beside the new one would be a layout bug.
        expect(heading).to_have_count(1, timeout=UI_TIMEOUT_MS)
        with teacher.expect_download(timeout=UI_TIMEOUT_MS) as download:
            teacher.get_by_role("button", name="Download the readings (CSV)").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert len(rows) == 2 * CASES * 2 and {r["reader"] for r in rows} == {"Ann", "Bea"}
        store = StudyStore(db)
        (study,) = store.studies()
        assert len(store.readings(study.id)) == 2 * CASES * 2  # every acknowledged reading, once
        # The rest of the class, simulated through the store, so that the dashboard pictures a class.
        _simulate_class(store, study, readers=10)
        store.close()
        teacher.get_by_text("Progress: 12 of 12 readers finished").wait_for(timeout=UI_TIMEOUT_MS)
        teacher.get_by_text("12 readers", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
        _wait_idle(teacher)
        _screenshot(teacher, study_shots / "study_dashboard.png")
        teacher.set_viewport_size({"width": 390, "height": 900})
        teacher.wait_for_timeout(1500)
        assert _cut_off(teacher) == []
        _screenshot(teacher, study_shots / "narrow_study_dashboard_390.png", width=390)

        # A third reader on a desktop, for the README's picture of reading with the AI on a wide screen.
        desk = browser.new_context(**DESKTOP).new_page()
        _join(desk, url, join_code, "Cai", "1111", "Welcome, Cai.")
        _read_alone(desk, 1, "PNEUMONIA", "3 fairly sure")
        desk.get_by_text("Grad-CAM: evidence", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
        _wait_idle(desk)
        _screenshot(desk, study_shots / "study_reader.png")
        browser.close()
