"""The Screen page's "Open from PACS" box, shown only when PNEUMONIA_DICOMWEB_URL is set: an accession number
brings that study's CR/DX films in as if they were uploaded, held in memory and named "PACS film 1 (DX)", ...
Nothing identifying is shown: the accession number is cleared once the films are opened."""

from __future__ import annotations

import os

import streamlit as st

from pneumonia.errors import PneumoniaError
from pneumonia.reports.tables import Upload

OPENED = "pacs_uploads"
ACCESSION = "pacs_accession"
REQUESTED = "pacs_requested"


def _take_accession() -> None:
    """On submit: keep the typed accession number for this run only, and empty the box, so it is not shown again."""
    st.session_state[REQUESTED] = st.session_state.get(ACCESSION, "")
    st.session_state[ACCESSION] = ""


def pacs_uploads_ui() -> list[Upload]:
    from pneumonia.pacs.client import URL_ENV

    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        return []
    with st.form("open_from_pacs", border=True):
        st.text_input("Open from PACS: accession number", key=ACCESSION,
                      help="The study's CR and DX films are screened as if uploaded; nothing is saved.")
        st.form_submit_button("Open from PACS", on_click=_take_accession)
    accession = st.session_state.pop(REQUESTED, None)
    if accession is not None:
        try:
            from pneumonia.pacs.client import client_from_environment
            from pneumonia.pacs.scan import films_for_accession

            films = films_for_accession(client_from_environment(url), accession)
        except ImportError:
            st.error("Open from PACS needs the optional extra: pip install '.[pacs]'.")
        except PneumoniaError as exc:
            st.error(f"Could not open from the PACS: {exc}")
        else:
            st.session_state[OPENED] = [Upload(name, data) for name, data in films]
    films = st.session_state.get(OPENED, [])
    if films:
        note, button = st.columns([4, 1], vertical_alignment="center")
        note.caption(f"{len(films)} films opened from the PACS (in memory only)")
        button.button("Forget them", on_click=st.session_state.pop, args=(OPENED, None), key="forget_pacs")
    return list(films)
