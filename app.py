"""Streamlit front end: screen chest X-rays, explore the decision threshold, read the model card.

Run with `make app` (= `streamlit run app.py`). This file only sets up navigation and the sidebar; each page
lives in its own module under ui/, and the numbers come from the `pneumonia` package. Set
PNEUMONIA_MODEL_DIR to serve a model other than the committed one.

`streamlit run app.py` finds `app` at the bottom and serves this file through it, so that the server's own
start-up (ui/server.py) keeps uploads in memory and starts loading the model before the first visit.
"""

from __future__ import annotations

import os

import streamlit as st

# The app's entry point sets its process's settings (the package never does at import): TensorFlow's start-up
# chatter stays out of the server's console unless the user asked for a level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def sidebar_ui() -> st.delta_generator.DeltaGenerator:
    """The disclaimer on every page at once, and a slot for the device and model, filled once the model is loaded."""
    from pneumonia import wording

    with st.sidebar:
        st.warning(wording.SIDEBAR_DISCLAIMER)
        return st.empty()


def model_identity_ui(slot) -> None:
    from pneumonia.errors import PneumoniaError
    from ui.common import current_predictor

    try:
        predictor = current_predictor()
    except PneumoniaError:
        slot.caption("No model loaded.")
        return
    metadata = predictor.metadata
    slot.caption(
        f"**Device:** {predictor.device}  \n"
        f"**Model:** v{metadata.package_version}, created {metadata.created}  \n"
        f"**SHA-256:** `{metadata.short_sha}`"
    )


def main() -> None:
    from ui.about import about_page
    from ui.reader_mode import reader_page
    from ui.reader_study import reader_study_page
    from ui.screen import screen_page
    from ui.threshold import threshold_page

    st.set_page_config(page_title="Pneumonia screening demo", page_icon="🫁", layout="wide")
    screen = {"title": "Screen", "icon": ":material/radiology:"}
    pages = [
        # The default page is served at "/", and Streamlit does not answer its url_path, so /screen needs a page of
        # its own: the same page, hidden from the menu. The default's url_path only names it (it must differ).
        st.Page(screen_page, **screen, url_path="home", default=True),
        st.Page(screen_page, **screen, url_path="screen", visibility="hidden"),
        st.Page(threshold_page, title="Threshold explorer", icon=":material/tune:", url_path="threshold"),
        st.Page(reader_page, title="Reader mode", icon=":material/visibility:", url_path="reader"),
        st.Page(reader_study_page, title="Reader study", icon=":material/groups:", url_path="study"),
        st.Page(about_page, title="About / model card", icon=":material/description:", url_path="about"),
    ]
    page = st.navigation(pages)
    slot = sidebar_ui()
    try:
        page.run()  # the page draws what it can before it waits for the model, so a first visit is usable at once
    finally:
        model_identity_ui(slot)


if __name__ == "__main__":  # Streamlit runs this file as __main__ for every session
    main()
else:  # `streamlit run app.py` first imports the file to find `app`, the server it then starts
    from ui.server import lifespan

    app = st.App(__file__, lifespan=lifespan)
