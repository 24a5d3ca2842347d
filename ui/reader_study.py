"""Reader study: a class reads the same test X-rays, alone and then with the AI, and the teacher watches the
results come in and sees whether the AI helped (an MRMC analysis).

Thin widgets over `pneumonia.studies`: the store keeps every study, reader and reading in a database
(PNEUMONIA_DB), so a reader's progress survives a reload, a new tab and another device. A reading is shown as
saved only after the database has committed it. A reader's page asks the store for that reader's own readings
only; the dashboard opens only with the teacher code.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pneumonia.config import CLASS_NAMES, TEST_PREDICTIONS_FILENAME, study_database
from pneumonia.errors import PneumoniaError
from pneumonia.formatting import format_probability, format_threshold
from pneumonia.studies.design import (
    CONFIDENCE_WORDS,
    DEFAULT_CASES,
    MODALITY_WORDS,
    Step,
    commit_reading,
    draw_cases,
    next_step,
)
from pneumonia.studies.store import (
    AIDED,
    CLOSED,
    JOINING_CLOSED,
    MAX_CASES,
    MAX_NAME,
    MAX_PSEUDONYM,
    MAX_READERS,
    MIN_CASES,
    OPEN,
    Reader,
    Study,
    StudyError,
    StudyStore,
)
from ui.common import (
    FIRST_PAGE_DRAWN,
    grad_cam_map,
    lime_explanation,
    model_dir,
    model_files_or_stop,
    page_header_ui,
    predictor_or_stop,
    split_predictions,
    thumbnail_path,
)

READER_KEY = "study_reader"  # (study id, reader id) once joined: all a reader's session holds
TEACHER_KEY = "study_teacher"  # the study id whose teacher code was given (or which was created) in this session
NEW_CODE_KEY = "study_new_teacher_code"  # (study id, teacher code): its own step, before the class screen appears
NOTICE_KEY = "study_notice"  # (kind, text) set by a form's callback, shown at the top of the next run
LIVE_REFRESH_S = 5
MAP_TILE_PX = 170  # two maps abreast within a 390-px phone's content width

INTRO = (
    "A class reads the same test X-rays. Each reader calls every case NORMAL or PNEUMONIA with how sure they are; "
    "in an AI-aided study they then see the model's score and maps and may change their call. The teacher's "
    "dashboard shows everyone's progress and whether reading with the AI did better. Use a pseudonym, not your "
    "name: nothing here identifies a reader or a patient."
)
ROLE_READER, ROLE_TEACHER = "I am a reader", "I am the teacher"


@st.cache_resource(show_spinner=False)
def _study_store(target: str) -> StudyStore:
    """One store, and so one database engine, per server process."""
    return StudyStore(target)


def store_or_stop() -> StudyStore:
    try:
        return _study_store(study_database())
    except Exception as exc:  # noqa: BLE001 - any database failure becomes one line, never a traceback
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        st.error(f"The study database could not be opened ({reason}). Set PNEUMONIA_DB to a writable file "
                 "path or a database URL.", icon=":material/error:")
        st.stop()


def escape_markdown(text: str) -> str:
    """Text a person typed, shown as itself: every markdown character escaped (names are already limited to
    letters, digits, spaces, dots, dashes and underscores)."""
    return re.sub(r"([\\`*_{}\[\]#|<>~:$])", r"\\\1", str(text))


def _notice_ui() -> None:
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        kind, text = notice
        {"success": st.success, "warning": st.warning, "error": st.error}[kind](text)


# ---------------------------------------------------------------- reader


def join_ui(store: StudyStore) -> None:
    st.markdown("**Join a study.** Your teacher gives you the join code. Pick a pseudonym (not your real name) "
                "and a PIN of 4 to 8 digits: with the same three you can come back later, on any device.")
    with st.form("study_join", border=True):
        code = st.text_input("Join code", max_chars=20, placeholder="XXXX-XXXX-XXXX", key="study_join_code")
        pseudonym = st.text_input("Pseudonym (not your real name)", max_chars=MAX_PSEUDONYM, key="study_pseudonym")
        pin = st.text_input("PIN (4 to 8 digits)", type="password", max_chars=8, key="study_pin")
        if st.form_submit_button("Join", type="primary"):
            try:
                study, reader, new = store.join(code, pseudonym, pin)
            except StudyError as exc:
                st.error(str(exc))
                return
            st.session_state[READER_KEY] = (study.id, reader.id)
            name = escape_markdown(reader.pseudonym)
            st.session_state[NOTICE_KEY] = ("success", f"Welcome, {name}." if new else
                                             f"Welcome back, {name}: you carry on where you left off.")
            st.rerun()


def _leave() -> None:
    st.session_state.pop(READER_KEY, None)


def _commit(store: StudyStore, study: Study, reader: Reader, step: Step, call_key: str, confidence_key: str) -> None:
    """The form's callback: store the reading, and only once it is committed say so."""
    call, confidence = st.session_state.get(call_key), st.session_state.get(confidence_key)
    if call is None or confidence is None:
        st.session_state[NOTICE_KEY] = ("warning", "Choose NORMAL or PNEUMONIA and how sure you are, then save.")
        return
    sent = (CLASS_NAMES.index(call), int(confidence))
    try:
        cases = store.cases(study.id)
        reading, new = commit_reading(store, study, cases, reader, step.case.position, step.modality, *sent)
    except PneumoniaError as exc:
        text = str(exc)
        if "not the next one" in text:  # this window was behind another one of the same reader
            text = ("This case was already answered in another window; nothing was saved from this one. Here is "
                    "your next case.")
        st.session_state[NOTICE_KEY] = ("warning" if "another window" in text else "error", text)
        return
    st.session_state[NOTICE_KEY] = save_notice(step, reading, new, sent)


def save_notice(step: Step, reading, new: bool, sent: tuple[int, int]) -> tuple[str, str]:
    """A green "Saved" only for a reading stored as this window sent it; otherwise the stored answer, plainly."""
    stored = (f"case {step.number}, {MODALITY_WORDS[reading.modality]}: {CLASS_NAMES[reading.call]}, "
              f"{CONFIDENCE_WORDS[reading.confidence]} ({reading.confidence} of 5)")
    if new:
        return "success", f"Saved: {stored}."
    if (reading.call, reading.confidence) == sent:
        return "success", f"Saved already (another window or a second click): {stored}."
    return "warning", (f"Not saved: this case was already answered in another window, and the first answer counts. "
                       f"Stored: {stored}.")


def reading_form_ui(store: StudyStore, study: Study, reader: Reader, step: Step) -> None:
    """The call and the confidence. Reading with the AI, both start at the reader's own first reading."""
    stem = f"study_{reader.id}_{step.case.position}_{step.modality}"
    call_key, confidence_key = f"{stem}_call", f"{stem}_confidence"
    first = step.unaided if step.modality == AIDED else None
    title = "Your reading with the AI (keep or change it)" if step.modality == AIDED else "Your reading"
    with st.form(f"{stem}_form", border=True):
        st.markdown(f"**{title}**")
        st.radio("Your call", CLASS_NAMES, index=None if first is None else first.call, horizontal=True,
                 key=call_key)
        st.radio("How sure are you?", list(CONFIDENCE_WORDS), index=None if first is None else first.confidence - 1,
                 format_func=lambda v: f"{v} {CONFIDENCE_WORDS[v]}", horizontal=True, key=confidence_key)
        st.form_submit_button("Save my reading", type="primary", on_click=_commit,
                              args=(store, study, reader, step, call_key, confidence_key))


def ai_ui(study: Study, step: Step, image: bytes) -> None:
    """The model's score and label at the study's threshold, and its LIME and Grad-CAM maps."""
    from pneumonia.threshold import label_at

    first = step.unaided
    st.markdown(f"Your reading alone: **{CLASS_NAMES[first.call]}**, {CONFIDENCE_WORDS[first.confidence]} "
                f"({first.confidence} of 5).")
    probability = step.case.probability
    st.info(f"**The AI**: P(pneumonia) {format_probability(probability)}, "
            f"**{label_at(probability, study.threshold)}** at its threshold {format_threshold(study.threshold)}.",
            icon=":material/smart_toy:")
    maps_ui(step.case.file, image)


@st.cache_data(show_spinner=False, max_entries=4)
def _thumbnail_keys(folder: str, stamp: float) -> dict[str, str]:
    from pneumonia.studies.design import thumbnail_keys

    return {key: str(path) for key, path in thumbnail_keys(folder).items()}


def case_image_path(file: str):
    """The 224-px image of a study case: named by its content hash (studies made now), or by its test file's name
    (studies made before cases were stored by hash)."""
    from pneumonia.io.bundle import THUMBNAILS_DIR
    from pneumonia.studies.design import KEY_PREFIX

    if not file.startswith(KEY_PREFIX):
        return thumbnail_path(file)
    folder = model_dir() / THUMBNAILS_DIR
    stamp = folder.stat().st_mtime if folder.is_dir() else 0.0
    found = _thumbnail_keys(str(folder), stamp).get(file)
    return folder / "missing.jpg" if found is None else Path(found)


def case_image(store: StudyStore, study: Study, file: str) -> bytes | None:
    """The case's 224-px image: the teacher's own film from the study, or the shipped test image; None if missing."""
    own = store.case_image(study.id, file)
    if own is not None:
        return own
    path = case_image_path(file)
    return path.read_bytes() if path.is_file() else None


def maps_ui(file: str, data: bytes) -> None:
    """LIME and Grad-CAM on the case's 224-px copy, cached per case and shared by every reader of the study, so
    each case's maps are computed once per server."""
    from pneumonia.explain.maps import LimeSettings, heatmap_overlay, lime_overlay

    predictor = predictor_or_stop()
    image = predictor.decode(data)
    sha, digest = predictor.metadata.model_sha256, f"study-case:{file}"
    # Two tiles of a fixed width in a wrapping row, not st.columns: side by side on a phone too, where columns
    # stacked two full-width maps and pushed "Save my reading" some 2,700 px down.
    with st.container(horizontal=True, gap="small"):
        with st.container(width=MAP_TILE_PX):
            explanation = lime_explanation(predictor, sha, digest, LimeSettings(), image)
            st.image(lime_overlay(image, explanation), caption="LIME: red pushes towards pneumonia, blue away",
                     width="stretch")
        with st.container(width=MAP_TILE_PX):
            st.image(heatmap_overlay(image, grad_cam_map(predictor, sha, digest, image)),
                     caption="Grad-CAM: evidence for pneumonia (red = most)", width="stretch")


def finished_ui(study: Study, cases, reader: Reader, readings) -> None:
    """The reader's own sensitivity and specificity, once every case is read: counts only, no case's truth."""
    st.success(f"You have read all the cases of this study. Thank you, {escape_markdown(reader.pseudonym)}!")
    from pneumonia.studies.results import StudySnapshot, operating_points

    points = operating_points(StudySnapshot(study, cases, [reader], readings))
    rows = [{"": f"You, {MODALITY_WORDS[p.modality]}", "sensitivity": f"{p.sensitivity:.2f}",
             "specificity": f"{p.specificity:.2f}"} for p in points]
    st.dataframe(rows, hide_index=True, key="study_own_result")
    st.caption("Sensitivity: the share of pneumonias you called PNEUMONIA. Specificity: the share of normal "
               "X-rays you called NORMAL. Your teacher will go through the cases with the class.")


def reading_ui(store: StudyStore, study: Study, reader: Reader) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(f"Reading as **{escape_markdown(reader.pseudonym)}** in **{escape_markdown(study.name)}**")
        st.button("Leave", key="study_leave", on_click=_leave, width="content")
    readings = store.reader_readings(reader.id)
    cases = store.cases(study.id)
    step = next_step(study, cases, reader, readings)
    if step.case is None:
        finished_ui(study, cases, reader, readings)
        return
    if not study.is_open:
        st.warning("The teacher has closed this study: no more readings are taken. Your saved readings are kept.")
        return
    st.progress(step.done / step.total, text=f"Case {step.number} of {step.total}"
                + (f", {MODALITY_WORDS[step.modality]}" if study.aided else ""))
    data = case_image(store, study, step.case.file)
    if data is None:
        st.info("The test images are missing; run `python -m pneumonia evaluate` to write them.")
        return
    picture, side = st.columns([2, 3], gap="medium")
    # At most 320 px wide: on a phone the X-ray, the question and "Save my reading" fit in two screen heights.
    picture.image(data, width=320, caption="The X-ray at 224 × 224 pixels, the data set's own size")
    with side:
        if step.modality == AIDED:
            ai_ui(study, step, data)
        reading_form_ui(store, study, reader, step)


def reader_ui(store: StudyStore) -> None:
    joined = st.session_state.get(READER_KEY)
    if joined is None:
        join_ui(store)
        return
    study, reader = store.study(joined[0]), store.reader(joined[1])
    if study is None or reader is None:
        st.session_state.pop(READER_KEY, None)
        st.info("This study has been deleted by its teacher.")
        return
    reading_ui(store, study, reader)


# ---------------------------------------------------------------- teacher


SOURCE_TEST, SOURCE_OWN = "Test images kept for studies", "My own films"
REFUSED_KEY = "study_refused"  # (study id, [(film, reason)]) left out of the teacher's own films, for the code step


def create_ui(store: StudyStore) -> None:
    source = st.radio("Cases", [SOURCE_TEST, SOURCE_OWN], horizontal=True, key="study_source")
    if source == SOURCE_OWN:
        create_own_ui(store)
        return
    test = split_predictions(TEST_PREDICTIONS_FILENAME)
    if test is None:
        return
    with st.form("study_create", border=True):
        name = st.text_input("Study name", max_chars=MAX_NAME, key="study_name",
                             help="Letters, digits, spaces, dots, dashes and underscores. Readers see it.")
        count = st.number_input("Number of cases", min_value=MIN_CASES, max_value=MAX_CASES, value=DEFAULT_CASES,
                                step=1, key="study_cases",
                                help="Drawn by the seed from the test images kept for studies (no other page of "
                                     "the app shows them), NORMAL and PNEUMONIA in their proportions.")
        seed = st.number_input("Seed for drawing the cases", min_value=0, max_value=1_000_000, value=0, step=1,
                               key="study_seed")
        aided = st.toggle("AI-aided: after each reading alone, show the AI's score and maps and read again",
                          value=True, key="study_aided")
        if st.form_submit_button("Create the study", type="primary"):
            metadata = model_files_or_stop()
            try:
                from pneumonia.io.bundle import THUMBNAILS_DIR

                study, teacher_code = store.create_study(
                    name, draw_cases(test, int(count), int(seed), model_dir() / THUMBNAILS_DIR), aided=aided,
                    seed=int(seed),
                    threshold=metadata.default_threshold.value,
                )
            except StudyError as exc:
                st.error(str(exc))
                return
            st.session_state[TEACHER_KEY] = study.id
            st.session_state[NEW_CODE_KEY] = (study.id, teacher_code)
            st.rerun()


def create_own_ui(store: StudyStore) -> None:
    """A study over the teacher's own films: a ZIP of images and a file,truth CSV, through the input gate."""
    from pneumonia.studies.own_cases import create_own_study, films_from_zip

    st.caption("A ZIP of the films (JPEG, PNG, DICOM, ...) and a CSV with columns file and truth: each film's file "
               "name and 1 for PNEUMONIA or 0 for NORMAL. Every film passes the same input check as the Screen page; "
               "films it refuses are listed and left out. Only the pixels are kept, at 224 pixels, named by a "
               "fingerprint of their content: no file name and nothing of a DICOM header.")
    with st.form("study_create_own", border=True):
        name = st.text_input("Study name", max_chars=MAX_NAME, key="study_own_name",
                             help="Letters, digits, spaces, dots, dashes and underscores. Readers see it.")
        films = st.file_uploader("Films (a ZIP file)", type=["zip"], key="study_own_films")
        truth = st.file_uploader("Truth (CSV: file,truth)", type=["csv"], key="study_own_truth")
        aided = st.toggle("AI-aided: after each reading alone, show the AI's score and maps and read again",
                          value=True, key="study_own_aided")
        if st.form_submit_button("Create the study", type="primary"):
            if films is None or truth is None:
                st.warning("Add the ZIP of films and the truth CSV, then create the study.")
                return
            predictor = predictor_or_stop()
            try:
                with st.spinner("Checking and scoring the films…"):
                    study, teacher_code, refused = create_own_study(
                        store, name, films_from_zip(films.getvalue()), truth.getvalue(), predictor, aided=aided)
            except StudyError as exc:
                st.error(str(exc))
                return
            st.session_state[TEACHER_KEY] = study.id
            st.session_state[NEW_CODE_KEY] = (study.id, teacher_code)
            st.session_state[REFUSED_KEY] = (study.id, refused)
            st.rerun()


def open_ui(store: StudyStore) -> None:
    with st.form("study_open", border=True):
        code = st.text_input("Teacher code", type="password", key="study_teacher_code")
        if st.form_submit_button("Open the dashboard", type="primary"):
            study = store.study_for_teacher(code)
            if study is None:
                st.warning("No study opens with this code.")
                return
            st.session_state[TEACHER_KEY] = study.id
            st.rerun()


def codes_ui(study: Study) -> None:
    """The class screen's code: the join code only (the teacher code was shown on its own step, never here)."""
    st.markdown("**Join code for the readers** (show it to the class):")
    st.code(study.join_code, language=None)


LEAVE_GUARD = """<script>
window.pneumoniaTeacherCodeGuard = window.pneumoniaTeacherCodeGuard || function (event) {
  event.preventDefault(); event.returnValue = "";
};
window.addEventListener("beforeunload", window.pneumoniaTeacherCodeGuard);
</script>"""
"""While the teacher code is on screen and not yet confirmed saved, the browser asks before a reload or a close."""
LEAVE_UNGUARD = """<script>
if (window.pneumoniaTeacherCodeGuard) window.removeEventListener("beforeunload", window.pneumoniaTeacherCodeGuard);
</script>"""


def teacher_code_step_ui(study: Study, teacher_code: str) -> None:
    """Step 1 of 2 after creating a study: the teacher code alone, with a warning, a copy button and a download,
    and no join code, so this screen is never the one projected to the class. Step 2 (the class screen) appears
    only once the teacher confirms the code is saved; until then the browser warns before a reload."""
    st.header(f"Step 1 of 2: save your teacher code for {escape_markdown(study.name)}", anchor=False)
    st.warning("**Do not project this screen.** The teacher code opens the results and can delete the study. It is "
               "shown only now: the app keeps only a fingerprint of it, so if you lose it, no one can open this "
               "study's results again. Copy it (button at its right) or download it, and keep it private.",
               icon=":material/lock:")
    st.code(teacher_code, language=None)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", study.name).strip("_") or "study"
    st.download_button("Download the teacher code", data=f"{study.name}\nTeacher code: {teacher_code}\n",
                       file_name=f"{slug}_teacher_code.txt", mime="text/plain", on_click="ignore",
                       key="study_code_download", width="content")
    st.html(LEAVE_GUARD, unsafe_allow_javascript=True)
    saved = st.checkbox("I have saved the teacher code somewhere private", key="study_code_saved_check")
    if st.button("Continue to the class screen (join code)", key="study_code_saved", type="primary",
                 disabled=not saved):
        st.session_state.pop(NEW_CODE_KEY, None)
        st.session_state.pop(REFUSED_KEY, None)
        st.rerun()
    st.caption("Reloading or closing this page before you continue loses the code; your browser asks first.")
    refused = st.session_state.get(REFUSED_KEY)
    if refused and refused[0] == study.id and refused[1]:
        with st.expander(f"{len(refused[1])} of your files were left out of the study"):
            st.dataframe(pd.DataFrame(refused[1], columns=["file", "why"]), hide_index=True, key="study_refused_table")


@st.fragment(run_every=LIVE_REFRESH_S)
def live_ui(study_id: int) -> None:
    """Progress, the ROC picture, the class mean, the analysis and the CSV, refreshed every few seconds."""
    try:
        live_body_ui(study_id)
    except StudyError as exc:  # a busy database: say so; the next refresh tries again
        st.warning(str(exc))


def live_body_ui(study_id: int) -> None:
    from pneumonia.studies.plots import study_roc_figure
    from pneumonia.studies.results import (
        analyse_csv,
        class_mean,
        export_csv,
        model_roc,
        operating_points,
        plain_words,
        progress_rows,
        snapshot,
    )

    store = _study_store(study_database())
    study = store.study(study_id)
    if study is None:
        return
    snap = snapshot(store, study)
    st.subheader(f"Progress: {len(snap.finished)} of {len(snap.readers)} readers finished")
    if not snap.readers:
        st.info("No reader has joined yet. Readers join on this page with the join code above, choosing "
                "\"I am a reader\".", icon=":material/group:")
    else:
        # A plain table, not a grid: its cells wrap, so all five columns fit a phone without sideways scrolling.
        st.table(pd.DataFrame(progress_rows(snap, time.time())).set_index("reader"))
    points = operating_points(snap)
    means = class_mean(points)
    fpr, tpr, model_auc, model_point = model_roc(snap)
    st.plotly_chart(study_roc_figure(fpr, tpr, model_point, model_auc, points, means), width="stretch",
                    key="study_roc")
    st.caption("Each dot is one reader at their calls (hollow: alone; filled: with the AI), on the cases they have "
               "read so far. The diamonds are the class mean of the readers who finished. Up and to the left is "
               "better.")
    # Each part that comes and goes sits in a container that is always there, so that the elements below keep their
    # place between refreshes: a moved element would show twice until the refresh ends (stale copy plus new one).
    with st.container():
        if means:
            st.dataframe([{"class mean": MODALITY_WORDS[m], "sensitivity": f"{s:.2f}", "specificity": f"{p:.2f}"}
                          for m, (s, p) in means.items()], hide_index=True, key="study_means")
    st.subheader("Did the AI help?" if study.aided else "How well did the class read?")
    text = export_csv(snap)
    with st.container():
        result = None
        if len(snap.finished) >= 2:
            try:
                result = analyse_csv(text)
            except PneumoniaError as exc:
                st.info(f"The results cannot be worked out yet: {exc}")
        else:
            st.info(f"The results appear here once at least two readers have read every case; "
                    f"{len(snap.finished)} {'has' if len(snap.finished) == 1 else 'have'} so far.",
                    icon=":material/hourglass_top:")
        if result is not None:
            st.markdown(plain_words(result, model_auc))
            statistics_ui(result)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", study.name).strip("_") or "study"
    with st.container(horizontal=True):
        st.download_button("Download the readings (CSV)", data=text, file_name=f"{slug}_readings.csv",
                           mime="text/csv", on_click="ignore", key="study_csv", width="content")
        st.download_button("Download every reading so far, unfinished readers too", data=export_csv(snap, True),
                           file_name=f"{slug}_all_readings.csv", mime="text/csv", on_click="ignore",
                           key="study_csv_all", width="content")



def statistics_ui(result) -> None:
    from pneumonia.studies.results import analysis_rows, statistics_rows, statistics_words

    with st.expander("Statistics: the MRMC analysis in numbers"):
        st.markdown(statistics_words(result))
        st.dataframe(statistics_rows(result), hide_index=True, key="study_auc_table")
        st.dataframe(analysis_rows(result), hide_index=True, key="study_tests")
        v = result.covariances
        extra = f"Var {v.var:.6f}, Cov1 {v.cov1:.6f}, Cov2 {v.cov2:.6f}, Cov3 {v.cov3:.6f}"
        if result.fixed_readers is not None and np.isfinite(result.fixed_readers.p):
            extra += (f"; fixed readers (these readers only): chi-square {result.fixed_readers.statistic:.3f}, "
                      f"p {result.fixed_readers.p:.4f}")
        st.caption(extra)
        st.caption("The readings download has columns reader, case, truth, modality, rating (1 to 10) and order "
                   "(the case's place in that reader's own random order); `python -m pneumonia study analyse` on "
                   "it gives the same numbers.")


def _set_status(store: StudyStore, study_id: int, status: str) -> None:
    store.set_status(study_id, status)


def _close_dashboard() -> None:
    st.session_state.pop(TEACHER_KEY, None)
    st.session_state.pop(NEW_CODE_KEY, None)


def manage_ui(store: StudyStore, study: Study) -> None:
    with st.container(horizontal=True):
        if study.takes_joiners:
            st.button("Close joining", key="study_close_joining", on_click=_set_status,
                      args=(store, study.id, JOINING_CLOSED), width="content",
                      help="No one new can join; readers who joined carry on reading.")
        elif study.is_open:
            st.button("Reopen joining", key="study_reopen_joining", on_click=_set_status, args=(store, study.id, OPEN),
                      width="content")
        if study.is_open:
            st.button("Close the study", key="study_close", on_click=_set_status, args=(store, study.id, CLOSED),
                      help="Readers can no longer join or save readings; what is saved stays.", width="content")
        else:
            st.button("Reopen the study", key="study_reopen", on_click=_set_status, args=(store, study.id, OPEN),
                      width="content")
        st.button("Leave the dashboard", key="study_dashboard_leave", on_click=_close_dashboard, width="content")
    readers_ui(store, study)
    with st.expander("Delete this study"):
        st.markdown("Deletes the study with every reader and every reading, at once and for good. Download the "
                    "readings first if you need them.")
        confirm = st.text_input("Type the study's name to confirm", key="study_delete_confirm")
        if st.button("Delete the study and all its readings", key="study_delete", type="primary"):
            if " ".join(confirm.split()).casefold() != study.name.casefold():
                st.warning("The name does not match; nothing was deleted.")
                return
            try:
                gone = store.delete_study(study.id)
            except StudyError as exc:
                st.error(str(exc))
                return
            _close_dashboard()
            st.session_state[NOTICE_KEY] = ("success", f"Deleted the study with its {gone} readings.")
            st.rerun()


def readers_ui(store: StudyStore, study: Study) -> None:
    """Unlock a reader locked out by wrong PINs, or rename one (a real name typed as a pseudonym)."""
    readers = store.readers(study.id)
    locked = store.locked_readers(study.id)
    label = f"Readers: unlock or rename ({len(locked)} locked out)" if locked else "Readers: unlock or rename"
    with st.expander(label, icon=":material/lock_open:" if locked else None):
        st.caption(f"A pseudonym is locked after 10 wrong PINs in a row; the reader is told to ask you. A study "
                   f"takes up to {MAX_READERS} readers.")
        if not readers:
            st.caption("No reader has joined yet.")
            return
        by_id = {r.id: r for r in readers}
        locked_ids = {r.id for r in locked}
        chosen = st.selectbox("Reader", list(by_id), key="study_manage_reader",
                              format_func=lambda i: by_id[i].pseudonym + (" (locked out)" if i in locked_ids else ""))
        with st.container(horizontal=True):
            if st.button("Unlock", key="study_unlock", disabled=chosen not in locked_ids, width="content"):
                store.unlock_reader(study.id, chosen)
                st.session_state[NOTICE_KEY] = ("success", (f"{escape_markdown(by_id[chosen].pseudonym)} can try "
                                                            "their PIN again."))
                st.rerun()
        new_name = st.text_input("New pseudonym", max_chars=MAX_PSEUDONYM, key="study_rename_to")
        if st.button("Rename", key="study_rename", width="content"):
            try:
                renamed = store.rename_reader(study.id, chosen, new_name)
            except StudyError as exc:
                st.error(str(exc))
                return
            st.session_state[NOTICE_KEY] = ("success", (f"Renamed to {escape_markdown(renamed.pseudonym)}; the "
                                                        "reader now joins with this name and the same PIN."))
            st.rerun()


def dashboard_ui(store: StudyStore, study: Study) -> None:
    st.header(f"Dashboard: {escape_markdown(study.name)}", anchor=False)
    design = "AI-aided: each case alone, then with the AI" if study.aided else "readers alone, without the AI"
    cases = len(store.cases(study.id))
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(study.created))
    state = "Open" if study.takes_joiners else "Joining closed, reading open" if study.is_open else "Closed"
    st.caption(f"{state} · {cases} cases · {design} · the AI's threshold "
               f"{format_threshold(study.threshold)} · created {created}")
    codes_ui(study)
    manage_ui(store, study)
    live_ui(study.id)


def teacher_ui(store: StudyStore) -> None:
    study_id = st.session_state.get(TEACHER_KEY)
    study = None if study_id is None else store.study(study_id)
    new = st.session_state.get(NEW_CODE_KEY)
    if study is not None and new and new[0] == study.id:
        teacher_code_step_ui(study, new[1])
        return
    if study is not None:
        st.html(LEAVE_UNGUARD, unsafe_allow_javascript=True)
        dashboard_ui(store, study)
        return
    if study_id is not None:
        _close_dashboard()
    mode = st.radio("What would you like to do?", ["Create a study", "Open my study's dashboard"], horizontal=True,
                    key="study_teacher_mode", label_visibility="collapsed")
    if mode == "Create a study":
        create_ui(store)
    else:
        open_ui(store)


def reader_study_page() -> None:
    page_header_ui("Reader study")
    st.caption(INTRO)
    store = store_or_stop()
    FIRST_PAGE_DRAWN.set()  # nothing here waits for the model, so the server may load it now
    _notice_ui()
    role = st.radio("Role", [ROLE_READER, ROLE_TEACHER], horizontal=True, key="study_role",
                    label_visibility="collapsed")
    try:
        if role == ROLE_TEACHER:
            teacher_ui(store)
        else:
            reader_ui(store)
    except StudyError as exc:  # e.g. a database busy through every retry: a sentence, never a traceback
        st.error(str(exc), icon=":material/error:")
