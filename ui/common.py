"""What every page shares: the cached model and prediction files, the one shared threshold, and the widgets
that set it. Cached work here is never re-run by a widget move."""

from __future__ import annotations

import gc
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from pneumonia import wording
from pneumonia.config import EVALUATE_COMMAND, METADATA_FILENAME, MODELS_DIR
from pneumonia.errors import PneumoniaError
from pneumonia.io.bundle import ModelMetadata, Predictions, read_predictions
from pneumonia.screening.predictor import Predictor, load_predictor
from pneumonia.screening.serving import INTERACTIVE, FairSlots
from pneumonia.threshold import Threshold

MODEL_DIR_ENV = "PNEUMONIA_MODEL_DIR"
FIRST_PAGE_DRAWN = threading.Event()
"""Set once a page has drawn what needs no model; the server's start-up (ui.server) waits for it before it
imports TensorFlow, whose import would otherwise stall that first drawing."""
EXPLANATION_TTL_S = 3600
"""Cached LIME and Grad-CAM maps are dropped an hour after they were made (64 at most), so what was derived
from an upload does not stay in the server long after its session has ended."""
THRESHOLD = "threshold"  # the one session-state key holding the decision threshold that every page applies


def model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV) or MODELS_DIR)


def file_stamp(path: Path) -> int:
    """Modification time as a cache key part, so a retrained or re-evaluated model is picked up without a restart."""
    return path.stat().st_mtime_ns if path.is_file() else 0


@st.cache_data(show_spinner=False, max_entries=64, ttl=EXPLANATION_TTL_S)
def lime_explanation(_predictor: Predictor, model_sha: str, digest: str, settings, _image: np.ndarray):
    """Seeded LIME keyed on model, image hash and settings. The progress bar is created and removed in here,
    so a cache hit replays nothing visible."""
    from pneumonia.explain.maps import explain_lime

    with queued("Explanation"):
        text = "LIME: scoring {:.0%} of the perturbed copies of the image…"
        bar = st.progress(0.0, text=text.format(0.0))
        explanation = explain_lime(
            _predictor, _image, settings,
            progress=lambda done: bar.progress(min(max(done, 0.0), 1.0), text=text.format(done)),
        )
        bar.empty()
    return explanation


@st.cache_data(show_spinner=False, max_entries=64, ttl=EXPLANATION_TTL_S)
def grad_cam_map(_predictor: Predictor, model_sha: str, digest: str, _image: np.ndarray) -> np.ndarray:
    from pneumonia.explain.maps import grad_cam

    with queued("Grad-CAM"):
        return grad_cam(_predictor, _image)


@st.cache_resource(show_spinner=False)
def model_slots() -> FairSlots:
    """One per server: model work from every session runs one request at a time, in arrival order."""
    return FairSlots(capacity=1)


@contextmanager
def queued(what: str, priority: int = INTERACTIVE):
    """Hold the model slot for the block; while waiting, tell the user their place in the queue."""
    notice = st.empty()
    with model_slots().slot(
        on_wait=lambda ahead: notice.info(wording.QUEUE_LINE.format(what=what, ahead=ahead), icon=":material/hourglass_top:"),
        priority=priority,
    ):
        notice.empty()
        yield


# ---------------------------------------------------------------- cached work (never re-run by a widget move)


LOADING_MODEL = "Loading the model (once per server start)…"


@st.cache_resource(show_spinner=False, max_entries=2)
def load_model(directory: str, stamp: int) -> Predictor:
    """Once per process and model version, warmed up so the first upload is answered quickly.

    Then the heap is frozen: Streamlit ends every script run with full garbage collections (its post-run GC, and
    keras.backend.clear_session() once keras is imported), and over TensorFlow's ~400,000 objects each took
    ~200 ms with the interpreter lock held, for every rerun of every session. Frozen objects are skipped, so
    those collections now cost about nothing (docs/study_load.md)."""
    predictor = load_predictor(directory)
    predictor.warm_up()
    gc.collect()
    gc.freeze()
    return predictor


@st.cache_data(show_spinner=False, max_entries=4)
def load_predictions(path: str, stamp: int) -> Predictions:
    return read_predictions(Path(path))


@st.cache_data(show_spinner=False, max_entries=4)
def load_history(path: str, stamp: int) -> pd.DataFrame:
    return pd.read_csv(path)




def current_predictor() -> Predictor:
    """The loaded model. In a page, behind a spinner while it loads; on the server's preload thread, which has
    no page to draw on, without one (a spinner there logs "missing ScriptRunContext!")."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    directory = model_dir()
    arguments = (str(directory), file_stamp(directory / METADATA_FILENAME))
    if arguments in _LOADED or get_script_run_ctx(suppress_warning=True) is None:
        predictor = load_model(*arguments)
    else:
        with st.spinner(LOADING_MODEL):
            predictor = load_model(*arguments)
    _LOADED.add(arguments)
    return predictor


_LOADED: set[tuple[str, int]] = set()
"""Model versions loaded once: no spinner (which sends the browser a message on every run) once it is there."""


@st.cache_resource(show_spinner=False, max_entries=2)  # read-only mappings: shared, not copied by pickling
def _checked_metadata(directory: str, stamp: int) -> ModelMetadata:
    from pneumonia.screening.predictor import check_model_files

    return check_model_files(directory)


def model_files_or_stop() -> ModelMetadata:
    """The model's metadata after the cheap file and hash checks, or a one-line error naming the fix. Pages
    call this first, so a broken model is reported at once, before any widget that could not work."""
    directory = model_dir()
    try:
        return _checked_metadata(str(directory), file_stamp(directory / METADATA_FILENAME))
    except PneumoniaError as exc:
        st.error(f"The model could not be loaded: {exc}", icon=":material/error:")
        st.stop()


def predictor_or_stop() -> Predictor:
    """The loaded model, or a one-line error naming the command that fixes it (never a traceback). Pages call
    it after drawing what needs no model, which also lets the server start loading the model (ui.server)."""
    FIRST_PAGE_DRAWN.set()
    try:
        predictor = current_predictor()
    except PneumoniaError as exc:
        st.error(f"The model could not be loaded: {exc}", icon=":material/error:")
        st.stop()
    st.session_state.setdefault(THRESHOLD, predictor.default_threshold)
    return predictor


def thumbnail_path(file: str) -> Path:
    """The shipped 224-px copy of a test image (written by evaluate), for reader mode and the case gallery."""
    from pneumonia.io.bundle import THUMBNAILS_DIR, thumbnail_name

    return model_dir() / THUMBNAILS_DIR / thumbnail_name(file)


def split_predictions(split_filename: str) -> Predictions | None:
    """A prediction table from the model folder, or None after an info line saying how to create it."""
    path = model_dir() / split_filename
    try:
        return load_predictions(str(path), file_stamp(path))
    except PneumoniaError as exc:
        st.info(f"{exc} Command: `{EVALUATE_COMMAND}`.", icon=":material/info:")
        return None


# ---------------------------------------------------------------- layout every page shares


NON_BREAKING_HYPHEN = "\u2011"
APP_CSS = """<style>
.st-key-disclaimer {background: rgba(255, 189, 69, 0.15); border-left: 0.25rem solid rgb(255, 189, 69);
  border-radius: 0.25rem; padding: 0.5rem 0.75rem;}
.st-key-disclaimer [data-testid=stMarkdownContainer] {margin-bottom: 0;}
.st-key-disclaimer p {margin: 0;}
table.pneumonia-results {width: 100%; border-collapse: collapse; font-size: 0.875rem; margin: 0 0 1rem 0;
  table-layout: auto;}
table.pneumonia-results th {text-align: left; font-weight: 600; opacity: 0.7; padding: 0.25rem 0.4rem;
  border-bottom: 1px solid rgba(128, 128, 128, 0.45); vertical-align: bottom;}
table.pneumonia-results td {padding: 0.3rem 0.4rem; vertical-align: top; overflow-wrap: anywhere;}
table.pneumonia-results tr.result td {border-top: 1px solid rgba(128, 128, 128, 0.25);}
table.pneumonia-results td.col-status {overflow-wrap: normal;}
table.pneumonia-results td.col-file {min-width: 12ch;}  /* a pseudonym (8 hex digits, _, position) on one line */
table.pneumonia-results td.col-label, table.pneumonia-results td.col-probability {white-space: nowrap;
  overflow-wrap: normal;}
table.pneumonia-results tr.reason td {padding-top: 0; font-size: 0.8125rem; opacity: 0.75;}
</style>"""
"""The few styles the app's own HTML needs (the disclaimer banner, the results table), injected by page_header_ui."""


def unbroken(title: str) -> str:
    """A hyphen inside a word made non-breaking, so a title never ends a line at "X-" on a phone."""
    import re

    return re.sub(r"(?<=\w)-(?=\w)", NON_BREAKING_HYPHEN, title)


def disclaimer_ui(text: str = wording.SIDEBAR_DISCLAIMER) -> None:
    """The disclaimer in the page itself: on a phone the sidebar, which also carries it, starts collapsed."""
    with st.container(key="disclaimer"):
        st.markdown(f":material/warning: {text}")


UPLOAD_NAMES_HIDDEN_CSS = """<style>
.st-key-uploader [data-testid=stFileChipName] {visibility: hidden; font-size: 0;}
.st-key-uploader [data-testid=stFileChipName]::before {visibility: visible; content: "name hidden"; font-size: 0.875rem;
  opacity: 0.7;}
</style>"""
"""Hospital file names carry patients' names: with names off, the upload box's own list hides them too, so a
projected screen shows none (Streamlit keeps the name in the chip's hover title)."""


def page_header_ui(title: str, disclaimer: str = wording.SIDEBAR_DISCLAIMER) -> None:
    """What every page starts with: its title (never broken inside a word) and the disclaimer."""
    st.html(APP_CSS)
    st.title(unbroken(title))
    disclaimer_ui(disclaimer)


# ---------------------------------------------------------------- small widgets that return values


KEPT = "kept:"


def _store(key: str) -> None:
    st.session_state[KEPT + key] = st.session_state[key]


def _set_widget(key: str, value) -> None:
    """Give a widget a value from session state, only when it differs: setting it sends the value to the
    browser, and on every run that pushes the value of a stale rerun back into a widget the user is still
    moving (a slider under the arrow keys)."""
    if st.session_state.get(key) != value:
        st.session_state[key] = value


def kept(key: str, default) -> dict:
    """Widget arguments whose value survives page switches. Streamlit drops the state of a widget whose page is
    not drawn, so its value is copied under another key on every change and restored before it is drawn.
    Pass no `value`/`default` to the widget itself."""
    store = KEPT + key
    st.session_state.setdefault(store, default)
    _set_widget(key, st.session_state[store])
    return {"key": key, "on_change": _store, "args": (key,)}


def current_threshold() -> Threshold:
    """The one threshold every page applies: a `Threshold`, so its source travels with its value."""
    return st.session_state[THRESHOLD]


def _copy_to_shared(widget_key: str) -> None:
    """A slider move sets a threshold by hand, unless it lands on the value already applied."""
    value = float(st.session_state[widget_key])
    if value != current_threshold().value:
        st.session_state[THRESHOLD] = Threshold.by_hand(value)


def _set_shared(threshold: Threshold) -> None:
    st.session_state[THRESHOLD] = threshold


def threshold_ui(widget_key: str) -> Threshold:
    """A slider bound to the shared threshold. Each page has its own widget key (Streamlit drops the state
    of widgets not drawn on a page), synced to the one THRESHOLD key before drawing and on every change. The
    slider writes the value with as many decimals as the project's formatter does, so it shows what is applied."""
    threshold = current_threshold()
    _set_widget(widget_key, threshold.value)
    decimals = len(threshold.text.partition(".")[2])
    st.slider(
        "Decision threshold on P(pneumonia)",
        min_value=0.0,
        max_value=1.0,
        step=0.001,
        format=f"%.{decimals}f",
        key=widget_key,
        on_change=_copy_to_shared,
        args=(widget_key,),
        help=wording.THRESHOLD_HELP,
    )
    threshold = current_threshold()
    st.caption(f"Applied: {threshold.text}, {threshold.provenance}.")
    return threshold


def presets_ui(presets: Sequence[Threshold]) -> None:
    """One button per named threshold; clicking sets the shared threshold (and so the slider). The buttons wrap
    on a narrow screen, and each rule is written out below them."""
    with st.container(horizontal=True, gap="small"):
        for preset in presets:
            st.button(
                f"{wording.preset_name(preset.name)}: {preset.text}",
                key=f"preset_{preset.name}",
                help=preset.plain_rule,
                on_click=_set_shared,
                args=(preset,),
                width="content",
            )
    st.caption("  \n".join(f"**{wording.preset_name(p.name)}**: {p.plain_rule}" for p in presets))
    with st.expander("How the presets are computed"):
        st.caption("  \n".join(f"**{wording.preset_name(p.name)}**: {p.recorded_rule}" for p in presets))
