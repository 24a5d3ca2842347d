"""The Screen page: uploads and samples through the input gate, result cards, the results table, and LIME
and Grad-CAM for any scored image."""

from __future__ import annotations

import dataclasses

import streamlit as st

from pneumonia import wording
from pneumonia.config import ASSETS_DIR, TEST_PREDICTIONS_FILENAME
from pneumonia.explain.readout import flip_sentence
from pneumonia.formatting import format_probability, margin_text
from pneumonia.io.bundle import Predictions
from pneumonia.io.pseudonyms import report_file_name, shown_name
from pneumonia.reports import plots
from pneumonia.reports.tables import (
    Upload,
    class_percentiles,
    displayed_table,
    facts_text,
    percentile_text,
    results_csv,
    results_html,
    results_table,
    sample_files,
)
from pneumonia.screening.gate import CAUTION, OK, REFUSED
from pneumonia.screening.predictor import Predictor, Screening
from pneumonia.screening.serving import BACKGROUND, SCORE
from pneumonia.threshold import Threshold
from ui.common import (
    EXPLANATION_TTL_S,
    KEPT,
    UPLOAD_NAMES_HIDDEN_CSS,
    current_threshold,
    grad_cam_map,
    kept,
    lime_explanation,
    model_files_or_stop,
    page_header_ui,
    predictor_or_stop,
    queued,
    split_predictions,
    threshold_ui,
)

SAMPLES_DIR = ASSETS_DIR / "samples"


UPLOADS = "kept_uploads"  # the session's uploads, in memory only, so they survive a visit to another page
SCREENED = "screened"  # the session's screenings of its current uploads, by (model SHA-256, upload digest, name)
REPORTS = "reports"  # the session's prepared PDFs, by (model SHA-256, digest, name, threshold, provenance)
ALL_REPORTS = "all_reports_zip"  # the session's latest batch ZIP: (its key, its bytes); one kept
REPORTS_KEPT = 8  # per session, newest kept: a PDF is about 200 KB
REPORT_HELP = (
    "A one-page PDF of this card at the current threshold, with LIME over three seeds and Grad-CAM: a few "
    "seconds to build. A new threshold needs a new report."
)


def screen_upload(predictor: Predictor, upload: Upload) -> Screening:
    """Read, gate and score one upload in memory. Only the model call waits for the shared model slot, so
    decoding and the gate's statistics run while another session's model call does."""
    return predictor.screen(
        [(upload.name, upload.data)], keep_images=True, model_slot=lambda: queued("Scoring", priority=SCORE)
    )[0]


def screenings(predictor: Predictor, uploads: list[Upload]) -> list[Screening]:
    """One screening per upload, kept in the session for as long as the upload is, so a widget move never
    re-runs the model, and the images go when the session does. (A server-wide cache kept 512 of them,
    each with its 512-px image, long after their sessions had ended.)"""
    sha = predictor.metadata.model_sha256
    keys = [(sha, upload.digest, upload.name) for upload in uploads]
    kept = st.session_state.setdefault(SCREENED, {})
    for key, upload in zip(keys, uploads):
        if key not in kept:  # stored one by one, so a rerun that interrupts this loop keeps what was scored
            kept[key] = screen_upload(predictor, upload)
    for key in set(kept) - set(keys):
        del kept[key]
    return [kept[key] for key in keys]


def named(results: list[Screening], uploads: list[Upload], show_names: bool) -> list[Screening]:
    """The screenings as the table, the CSV, the cards, the PDFs and the ZIP call them: a pseudonym (hash and
    position) unless names are asked for and the name does not identify the patient (pneumonia.io.pseudonyms)."""
    return [dataclasses.replace(item, name=shown_name(upload.name, upload.digest, position, show_names, upload.data))
            for position, (upload, item) in enumerate(zip(uploads, results), start=1)]


def _keep_uploads() -> None:
    files = st.session_state.get("uploader") or []
    st.session_state[UPLOADS] = [Upload(f.name, f.getvalue()) for f in files]


def _forget_uploads() -> None:
    st.session_state[UPLOADS] = []


def uploads_ui() -> list[Upload]:
    """Uploaded files plus any chosen samples, as bytes in memory. Streamlit empties an uploader when its page
    is left, so the files are kept in session state and shown again on return."""
    st.file_uploader(
        "Drop chest X-rays here: JPEG, PNG, DICOM, TIFF, BMP, GIF or WebP, several at once",
        type=None,  # every file is accepted and recognised by its content, so a DICOM without .dcm still works
        accept_multiple_files=True,
        help=wording.UPLOAD_HELP,
        key="uploader",
        on_change=_keep_uploads,
    )
    kept_files: list[Upload] = st.session_state.get(UPLOADS, [])
    if kept_files and not st.session_state.get("uploader"):
        note, button = st.columns([4, 1], vertical_alignment="center")
        note.caption(wording.KEPT_UPLOADS.format(count=len(kept_files), s="" if len(kept_files) == 1 else "s"))
        button.button("Forget them", on_click=_forget_uploads, key="forget_uploads")
    samples = {path.name: path for path in sample_files(SAMPLES_DIR)}
    chosen = st.multiselect(
        "…or try bundled sample X-rays", list(samples), help=wording.SAMPLES_HELP, **kept("samples", [])
    )
    from ui.pacs_box import pacs_uploads_ui

    opened = pacs_uploads_ui()  # "Open from PACS", only when PNEUMONIA_DICOMWEB_URL is set
    return list(kept_files) + opened + [Upload(name, samples[name].read_bytes()) for name in chosen if name in samples]


def lime_settings_ui():
    """LIME knobs in an expander; returns (settings, regions to show). They survive page switches."""
    from pneumonia.explain.maps import LimeSettings

    defaults = LimeSettings()
    with st.expander("LIME settings"):
        st.caption(wording.LIME_SETTINGS_HELP)
        n_segments = st.slider("Superpixels", 10, 100, step=5, **kept("lime_segments", defaults.n_segments))
        num_samples = st.slider("Samples", 100, 2000, step=100, **kept("lime_samples", defaults.num_samples))
        top_k = st.slider("Regions shown per direction", 1, 10, **kept("lime_top_k", 5))
    return LimeSettings(num_samples=num_samples, n_segments=n_segments, seed=defaults.seed), top_k


@st.cache_data(show_spinner=False, max_entries=64, ttl=EXPLANATION_TTL_S)
def further_lime_runs(_predictor: Predictor, model_sha: str, digest: str, settings, _image) -> list:
    """LIME at the two seeds after the settings' own (which the map shows), for the readout's stability; keyed
    like the explanation itself, and asked for at background priority so no one's score waits for them."""
    import dataclasses

    from pneumonia.explain.maps import explain_lime
    from pneumonia.explain.readout import STABILITY_SEEDS

    with queued("LIME's rerun", priority=BACKGROUND):
        return [explain_lime(_predictor, _image, dataclasses.replace(settings, seed=settings.seed + offset))
                for offset in range(1, STABILITY_SEEDS)]


# ---------------------------------------------------------------- page parts


def report_button_ui(predictor: Predictor, digest: str, item: Screening, position: int, threshold: Threshold) -> None:
    """A PDF of this card at this threshold, in memory only. It takes seconds (LIME over three seeds and
    Grad-CAM), so it is built when asked for, then offered as bytes, kept in the session. A download
    button built on click instead (deferred data) gets a new file id on every rerun and the old one is dropped
    when the rerun ends, so a click that raced a threshold move gave no download; bytes keep their file
    for one more rerun."""
    from pneumonia.reports.pdf import image_report  # imports Keras: not before it is needed

    key = (predictor.metadata.model_sha256, digest, item.name, threshold)
    reports = st.session_state.setdefault(REPORTS, {})
    slot = st.empty()
    if key not in reports:
        if not slot.button("Prepare report (PDF)", key=f"prepare_{position}", icon=":material/picture_as_pdf:",
                           help=REPORT_HELP):
            return
        with queued("Report"), st.spinner("Building the report: LIME over three seeds and Grad-CAM…"):
            reports[key] = image_report(predictor, item, threshold)
        while len(reports) > REPORTS_KEPT:
            del reports[next(iter(reports))]
    slot.download_button(
        "Download report (PDF)",
        data=reports[key],
        file_name=report_file_name(item.name),
        mime="application/pdf",
        on_click="ignore",
        icon=":material/picture_as_pdf:",
        key=f"report_{position}",
    )


def all_reports_ui(predictor: Predictor, uploads: list[Upload], results: list[Screening], threshold: Threshold) -> None:
    """Every card's PDF in one ZIP, in memory, so a batch of 23 films needs one click, not 23. Built when asked
    for (seconds per film), reusing any PDF a card already prepared at this threshold."""
    from pneumonia.reports.pdf import image_report, reports_zip

    sha = predictor.metadata.model_sha256
    key = (sha, tuple(u.digest for u in uploads), threshold)
    slot = st.empty()
    if st.session_state.get(ALL_REPORTS, (None,))[0] != key:
        if not slot.button(f"Prepare all {len(results)} reports (ZIP)", key="prepare_all_reports",
                           icon=":material/folder_zip:", help=REPORT_HELP):
            return
        reports = st.session_state.setdefault(REPORTS, {})
        pdfs = []
        with queued("Reports"), st.spinner(f"Building {len(results)} reports…"):
            for upload, item in zip(uploads, results):
                card_key = (sha, upload.digest, item.name, threshold)
                pdfs.append(reports.get(card_key) or image_report(predictor, item, threshold))
        st.session_state[ALL_REPORTS] = (key, reports_zip([item.name for item in results], pdfs))
    slot.download_button("Download all reports (ZIP)", data=st.session_state[ALL_REPORTS][1],
                         file_name="pneumonia_reports.zip", mime="application/zip", on_click="ignore",
                         icon=":material/folder_zip:", key="all_reports")


def result_card_ui(
    predictor: Predictor,
    upload: Upload,
    item: Screening,
    position: int,
    threshold: Threshold,
    test: Predictions | None,
    ece: float | None,
) -> None:
    """One input, full width so nothing is cut off on a narrow screen: the gate's word first, then the grey
    image the model saw beside its score."""
    with st.container(border=True):
        if item.status == REFUSED:
            st.error(f"Not scored: {item.reason}", icon=":material/block:")
        elif item.status == CAUTION:
            st.warning(f"Caution: {item.reason}. The score is shown, but means less.", icon=":material/warning:")
        elif item.status == OK:
            st.success(wording.OK_LINE, icon=":material/check_circle:")
        picture, numbers = st.columns([1, 2])
        if item.image is not None:
            picture.image(item.image, caption=item.name, width="stretch")
        else:
            picture.markdown(f"**{item.name}**")
        with numbers:
            if item.facts or item.source_format == "DICOM":
                st.caption(facts_text(item.facts))
            report_button_ui(predictor, upload.digest, item, position, threshold)
            if item.probability is None:
                return
            p = item.probability
            st.metric("P(pneumonia)", format_probability(p, threshold))
            if ece is not None:
                st.caption(wording.score_honesty(ece))
            st.metric(f"Label at {threshold.text}", threshold.label(p), delta=margin_text(p, threshold.value),
                      delta_color="off")
            st.caption(flip_sentence(p, threshold))
            if test is not None:
                st.caption(percentile_text(class_percentiles(p, test.labels, test.probabilities)))
        if test is not None:
            # Drawn only once opened: a chart in every card made the browser fetch and start plotly before it
            # showed the first score (about 2 s on 2 cores), for a figure most readers never open.
            where = st.expander("Where this score falls in the test set", key=f"where_{position}", on_change="rerun")
            with where:
                if ece is not None:
                    st.caption(f"How this is computed: the test set's expected calibration error (ECE) is {ece:.3f}, "
                               "the gap between the mean score and the share of films with pneumonia in 15 equal "
                               "bins of score, averaged with each bin weighted by its films.")
                if where.open:
                    st.plotly_chart(
                        plots.score_histogram(test.labels, test.probabilities, p, threshold.value),
                        width="stretch",
                        key=f"histogram_{position}",
                    )


@st.fragment
def results_ui(
    predictor: Predictor, uploads: list[Upload], results: list[Screening], test: Predictions | None, ece: float | None
) -> None:
    """Everything on the Screen page that depends on the threshold; a slider move reruns only this."""
    threshold = threshold_ui("screen_threshold")
    table = results_table(results, threshold)
    st.html(results_html(displayed_table(table)))  # a grid cut off all but the file name on a phone
    st.download_button(
        "Download results as CSV",
        data=results_csv(table),
        file_name="pneumonia_screening.csv",
        mime="text/csv",
        on_click="ignore",
    )
    if len(results) > 1:
        all_reports_ui(predictor, uploads, results, threshold)
    for position, (upload, item) in enumerate(zip(uploads, results)):
        result_card_ui(predictor, upload, item, position, threshold, test, ece)


def explanation_ui(predictor: Predictor, scored: list[tuple[Upload, Screening]], threshold: Threshold) -> None:
    """LIME and Grad-CAM for one chosen image, both cached, so threshold moves never recompute them. The readout
    is in plain words; the statistics behind it sit in an expander for those who want them."""
    from pneumonia.explain.chest_region import chest_region, outlined
    from pneumonia.explain.maps import heatmap_overlay, lime_overlay
    from pneumonia.explain.readout import explanation_readout

    st.subheader("Why this score? LIME and Grad-CAM")
    st.caption(wording.EXPLAIN_INTRO)
    names = [item.name for _, item in scored]
    if st.session_state.get(KEPT + "explain_image") not in names:
        st.session_state[KEPT + "explain_image"] = names[0]
    chosen = names[0]
    if len(scored) > 1:
        chosen = st.selectbox("Image to explain (scored images only)", names, **kept("explain_image", names[0]))
    upload, item = scored[names.index(chosen)]
    settings, top_k = lime_settings_ui()
    image = item.model_input
    sha = predictor.metadata.model_sha256
    region = chest_region(image)
    lime_column, cam_column = st.columns(2)
    with lime_column:
        explanation = lime_explanation(predictor, sha, upload.digest, settings, image)
        st.image(
            outlined(lime_overlay(image, explanation, top_k=top_k), region.mask),
            caption=f"LIME ({settings.n_segments} superpixels, {settings.num_samples} samples): "
            "red pushes towards pneumonia, blue away",
            width="stretch",
        )
    with cam_column:
        cam = grad_cam_map(predictor, sha, upload.digest, image)
        st.image(outlined(heatmap_overlay(image, cam), region.mask),
                 caption="Grad-CAM: evidence for pneumonia (red = most)", width="stretch")
    st.caption(wording.CHEST_OUTLINE if region.found_lungs else wording.CHEST_OUTLINE_FALLBACK)
    with st.spinner("Rerunning LIME twice to see how steady its map is…"):
        further = further_lime_runs(predictor, sha, upload.digest, settings, image)
    readout = explanation_readout(predictor, image, settings, item.probability, threshold, predictor.metadata.presets,
                                  explanations=[explanation, *further], cam=cam)
    st.markdown("**Explanation readout**\n" + "\n".join(f"- {sentence}" for sentence in readout.sentences))
    with st.expander("How this is computed"):
        st.metric("Agreement of LIME and Grad-CAM (Spearman)", f"{readout.agreement:.2f}",
                  help=wording.AGREEMENT_HELP)
        for detail in readout.details:
            st.caption(detail)


# ---------------------------------------------------------------- pages


def screen_page() -> None:
    model_files_or_stop()
    page_header_ui("Screen chest X-rays", wording.SCREEN_DISCLAIMER)
    uploads = uploads_ui()
    show_names = st.checkbox(wording.SHOW_NAMES, help=wording.SHOW_NAMES_HELP, **kept("show_names", False))
    if not show_names:
        st.html(UPLOAD_NAMES_HIDDEN_CSS)
    predictor = predictor_or_stop()  # after the uploader: on a cold start the page is usable while the model loads
    if not uploads:
        st.info("Upload one or more X-rays, or pick a sample above, to see the model's scores.")
        return
    results = named(screenings(predictor, uploads), uploads, show_names)
    test_report = predictor.metadata.test_metrics
    ece = test_report["ece"] if test_report else None
    results_ui(predictor, uploads, results, split_predictions(TEST_PREDICTIONS_FILENAME), ece)
    scored = [(upload, item) for upload, item in zip(uploads, results) if item.probability is not None]
    if scored:
        explanation_ui(predictor, scored, current_threshold())
