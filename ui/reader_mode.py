"""Reader mode: read a test X-ray first, commit a call, then see the model's score, the truth and the maps.

A running tally compares the reader with the model on the same cases. Everything lives in the session
only; the images are the shipped 224-px copies of the test images, so no data set is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import streamlit as st

from pneumonia import wording
from pneumonia.config import CLASS_NAMES, TEST_PREDICTIONS_FILENAME
from pneumonia.formatting import format_probability, format_proportion, format_threshold
from pneumonia.io.bundle import Predictions
from pneumonia.reports.decision_plots import reader_roc_figure
from pneumonia.screening.predictor import Predictor
from pneumonia.studies.pool import teaching_order
from pneumonia.studies.reader_code import ReaderCodeError, decode, encode
from pneumonia.studies.reader_mode import Reading, model_thresholds_text, reader_roc, tally, tally_csv
from pneumonia.threshold import label_at
from ui.common import (
    current_threshold,
    grad_cam_map,
    lime_explanation,
    page_header_ui,
    predictor_or_stop,
    split_predictions,
    thumbnail_path,
)

STATE = "reader_mode"  # one session-state entry: the order, the position and the readings, in memory only
CODE_PARAM = "r"  # the address's short code for the reader's place and tally (pneumonia.studies.reader_code)
CONFIDENCE_OPTIONS = [None, 1, 2, 3, 4, 5]


@dataclass
class ReaderSession:
    seed: int
    order: list[int]
    position: int = 0
    readings: list[Reading] = field(default_factory=list)

    @property
    def revealed(self) -> bool:
        """The current case has been read (its reading is the last one) and is now shown with the truth."""
        return len(self.readings) > self.position


def reader_session(test: Predictions, seed: int | None = None) -> ReaderSession:
    """The session's reader state, started (or restarted with a new seed) on demand. A new session (a reload, a
    phone's tab coming back) resumes from the code in the address, if there is one."""
    state = st.session_state.get(STATE)
    if state is None and seed is None and CODE_PARAM in st.query_params:
        state = restored(test, st.query_params[CODE_PARAM])
    if state is None or seed is not None:
        chosen = 0 if seed is None else seed
        state = ReaderSession(chosen, teaching_order(test.files, test.labels, chosen))  # never a reader study's film
        st.session_state[STATE] = state
    return state


def restored(test: Predictions, code: str) -> ReaderSession | None:
    """The reader's place and tally from the address's code, kept in the session; None (with one line) if it
    cannot be read."""
    try:
        seed, position, readings = decode(code, test.labels, test.probabilities, list(test.files), list(test.subtypes))
    except ReaderCodeError:
        st.warning(wording.READER_CODE_BAD)
        return None
    state = ReaderSession(seed, teaching_order(test.files, test.labels, seed), position, readings)
    st.session_state[STATE] = state
    return state


def keep_place(state: ReaderSession) -> None:
    """Write the reader's place and tally into the address, so a reload resumes there."""
    code = encode(state.seed, state.position, state.readings)
    if st.query_params.get(CODE_PARAM) != code:
        st.query_params[CODE_PARAM] = code


def restart_ui(state: ReaderSession, test: Predictions) -> None:
    """A seed and a restart button: a new seed gives a new, class-stratified order and an empty tally."""
    with st.expander("Start again", expanded=False):
        seed = st.number_input("Seed for the order of cases", min_value=0, max_value=10_000, value=state.seed,
                               step=1, key="reader_seed")
        if st.button("Restart with this seed", key="reader_restart"):
            reader_session(test, int(seed))
            st.rerun()


def commit_ui(state: ReaderSession, test: Predictions, threshold: float) -> None:
    """The reader's call and optional confidence; committing records it and reveals the case."""
    index = state.order[state.position]
    with st.form(key=f"reader_form_{state.seed}_{state.position}", border=True):
        call = st.radio("Your reading", CLASS_NAMES, index=None, horizontal=True, key="reader_call")
        confidence = st.select_slider(
            "How sure are you? (optional: 1 = a guess, 5 = certain)",
            options=CONFIDENCE_OPTIONS,
            value=None,
            format_func=lambda v: "not given" if v is None else str(v),
            key="reader_confidence",
        )
        if st.form_submit_button("Commit and reveal", type="primary"):
            if call is None:
                st.warning("Choose NORMAL or PNEUMONIA first.")
                return
            state.readings.append(
                Reading(
                    index=index,
                    file=test.files[index],
                    truth=int(test.labels[index]),
                    subtype=str(test.subtypes[index]),
                    reader_call=CLASS_NAMES.index(call),
                    confidence=confidence,
                    model_probability=float(test.probabilities[index]),
                    threshold=threshold,
                )
            )
            st.rerun()


def reveal_ui(predictor: Predictor, reading: Reading, image: np.ndarray) -> None:
    """The model's probability and label at the threshold the case was read at (as the tally counts it), the
    truth with its subtype, and both explanation maps."""
    from pneumonia.explain.maps import LimeSettings, heatmap_overlay, lime_overlay

    kind = {"bacteria": "bacterial", "virus": "viral"}.get(reading.subtype, reading.subtype)
    truth = CLASS_NAMES[reading.truth] + ("" if reading.subtype == "normal" else f" ({kind} pneumonia)")
    model_label = label_at(reading.model_probability, reading.threshold)
    confidence = "" if reading.confidence is None else f", confidence {reading.confidence} of 5"
    mark = lambda right: ":green[right]" if right else ":red[wrong]"  # noqa: E731
    st.markdown(
        f"- **You**: {CLASS_NAMES[reading.reader_call]}{confidence}: {mark(reading.reader_call == reading.truth)}\n"
        f"- **Model** at threshold {format_threshold(reading.threshold)}: {model_label}, P(pneumonia) "
        f"{format_probability(reading.model_probability)}: {mark(CLASS_NAMES.index(model_label) == reading.truth)}\n"
        f"- **Truth**: {truth}"
    )
    sha = predictor.metadata.model_sha256
    digest = f"thumbnail:{reading.file}"
    settings = LimeSettings()
    lime_column, cam_column = st.columns(2)
    with lime_column:
        explanation = lime_explanation(predictor, sha, digest, settings, image)
        st.image(lime_overlay(image, explanation), caption="LIME: red pushes towards pneumonia, blue away",
                 width="stretch")
    with cam_column:
        st.image(heatmap_overlay(image, grad_cam_map(predictor, sha, digest, image)),
                 caption="Grad-CAM: evidence for pneumonia (red = most)", width="stretch")
    st.caption(wording.READER_MAPS_NOTE)


def tally_ui(readings: list[Reading], test: Predictions, threshold: float) -> None:
    """Reader against model on the cases read so far, the ROC picture, and the CSV."""
    st.subheader(f"Your tally: {len(readings)} case{'s' if len(readings) != 1 else ''} read")
    if not readings:
        st.caption("Commit a reading to start the tally.")
        return
    numbers = tally(readings)
    st.table(tally_table(numbers, readings), hide_index=True, width="content")
    if any(r.threshold != threshold for r in readings):
        st.caption(f"The model's calls use the threshold each case was read at; the current threshold, "
                   f"{format_threshold(threshold)}, applies to the cases you read from now on.")
    from sklearn.metrics import roc_curve  # seconds to import: not before the first page is drawn

    fpr, tpr, _ = roc_curve(test.labels, test.probabilities)
    model_values = numbers["model"]
    reader_values = numbers["reader"]
    point = lambda v: (1 - v["specificity"], v["sensitivity"])  # noqa: E731
    st.plotly_chart(
        reader_roc_figure(fpr, tpr, point(model_values), point(reader_values), reader_roc(readings)),
        width="stretch",
        key="reader_roc",
    )
    st.caption(wording.READER_ROC_NOTE)
    st.download_button("Download the tally as CSV", data=tally_csv(readings), file_name="reader_tally.csv",
                       mime="text/csv", on_click="ignore", key="reader_csv")


TALLY_MEASURES = {"sensitivity": "sensitivity", "specificity": "specificity", "accuracy": "accuracy",
                  "TP": "tp", "FP": "fp", "FN": "fn", "TN": "tn"}


def tally_table(numbers: dict, readings: list[Reading]) -> pd.DataFrame:
    """One row per measure, one column for the reader and one for the model: three columns fit a phone, where
    a row per reader with seven counts was cut off after TP."""
    def column(values: dict) -> list[str]:
        return [_rate(values[key]) if key in ("sensitivity", "specificity", "accuracy") else str(values[key])
                for key in TALLY_MEASURES.values()]

    return pd.DataFrame({
        "": list(TALLY_MEASURES),
        "You": column(numbers["reader"]),
        f"Model {model_thresholds_text(readings)}": column(numbers["model"]),
    })


def _rate(value: float) -> str:
    return format_proportion(value)


def reader_page() -> None:
    page_header_ui("Reader mode")  # before the model: on a cold start, title and disclaimer show at once
    predictor = predictor_or_stop()
    st.caption(wording.READER_INTRO)
    test = split_predictions(TEST_PREDICTIONS_FILENAME)
    if test is None:
        return
    state = reader_session(test)
    keep_place(state)
    threshold = current_threshold().value
    restart_ui(state, test)
    if state.position >= len(state.order):
        st.success("You have read every test case. Restart with a new seed to go again.")
        tally_ui(state.readings, test, threshold)
        return
    index = state.order[state.position]
    path = thumbnail_path(test.files[index])
    if not path.is_file():
        st.info(f"The test thumbnails are missing ({path.parent}); run `python -m pneumonia evaluate` to write them.")
        return
    st.markdown(f"**Case {state.position + 1} of {len(state.order)}** (seed {state.seed})")
    image = predictor.decode(path)
    picture, side = st.columns([1, 2])
    picture.image(path.read_bytes(), width="stretch", caption="Test image, 224 px copy")
    with side:
        if state.revealed:
            st.markdown("**Revealed**")
            if st.button("Next case", type="primary", key="reader_next"):
                state.position += 1
                st.rerun()
        else:
            commit_ui(state, test, threshold)
    if state.revealed:
        reveal_ui(predictor, state.readings[-1], image)
    tally_ui(state.readings, test, threshold)
