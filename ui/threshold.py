"""The Threshold explorer: validation presets, the shared slider, and the test-set metrics, confusion
matrices and curves that follow it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from pneumonia import wording
from pneumonia.config import TEST_PREDICTIONS_FILENAME, VALIDATION_PREDICTIONS_FILENAME
from pneumonia.decision.costs import (
    cost_minimising_threshold,
    cost_rule,
    expected_cost,
    natural_frequencies,
    rounded_counts,
)
from pneumonia.decision.metrics import cell_indices, confusion_at, threshold_metrics
from pneumonia.decision.site import SiteCalibrationError, calibrate_site_from_sources
from pneumonia.formatting import format_percent, format_probability, format_proportion, format_threshold
from pneumonia.io.bundle import Predictions
from pneumonia.reports import plots
from pneumonia.reports.decision_plots import natural_frequency_html
from pneumonia.studies.pool import teaching_indices
from pneumonia.threshold import Threshold, ThresholdSource
from ui.common import (
    THRESHOLD,
    page_header_ui,
    predictor_or_stop,
    presets_ui,
    queued,
    split_predictions,
    threshold_ui,
    thumbnail_path,
)

GALLERY_LIMIT = 48
GALLERY_TILE_PX = 108


def threshold_page() -> None:
    page_header_ui("Threshold explorer")  # before the model: on a cold start, title and disclaimer show at once
    predictor = predictor_or_stop()
    test = split_predictions(TEST_PREDICTIONS_FILENAME)
    if test is None:
        return
    validation = split_predictions(VALIDATION_PREDICTIONS_FILENAME)
    st.info(wording.TEST_VS_VALIDATION)
    threshold_explorer_ui(predictor, test, validation)


def prevalence_and_costs_ui(test: Predictions) -> tuple[float, float]:
    """Prevalence (default: the test set's, with 5%, 20% and 50% presets) and the cost of a miss in false alarms."""
    test_share = float(np.mean(test.labels))
    options = {f"test set ({test_share:.0%})": test_share, "5%": 0.05, "20%": 0.20, "50%": 0.50}
    left, right = st.columns(2)
    with left:
        choice = st.radio("Prevalence of pneumonia", list(options), horizontal=True, key="prevalence_choice",
                          help=wording.PREVALENCE_HELP)
        prevalence = options[choice]
    with right:
        ratio = st.slider("A missed pneumonia costs as much as … false alarms", 1, 50, 5, key="cost_ratio",
                          help=wording.COST_RATIO_HELP)
    return prevalence, float(ratio)


def cost_preset(validation: Predictions | None, prevalence: float, ratio: float) -> Threshold | None:
    """The validation threshold minimising expected cost at this prevalence and ratio, as a preset that keeps
    the numbers it came from (a report names them after the sliders have moved on)."""
    if validation is None:
        return None
    threshold, _ = cost_minimising_threshold(validation.labels, validation.probabilities, prevalence, ratio)
    return Threshold.from_preset({"name": "cost", "threshold": float(threshold), "rule": cost_rule(prevalence, ratio),
                                  "prevalence": prevalence, "cost_ratio": ratio}, ThresholdSource.COST)


def natural_frequencies_ui(test: Predictions, values: dict, threshold: float, prevalence: float, ratio: float) -> None:
    """Per 1,000 children at this prevalence, with the test set's sensitivity and specificity at the threshold
    (`values`, the explorer's own metrics at that threshold)."""
    frequencies = natural_frequencies(values["sensitivity"], values["specificity"], prevalence)
    counts = rounded_counts(frequencies)
    st.markdown(
        f"**Per 1,000 children** with {prevalence:.0%} pneumonia, at threshold {format_threshold(threshold)} "
        f"(test-set sensitivity {format_proportion(values['sensitivity'])}, "
        f"specificity {format_proportion(values['specificity'])}):"
    )
    shown = [("Pneumonias caught", "caught"), ("Pneumonias missed", "missed"), ("False alarms", "false_alarms"),
             ("True all-clears", "all_clear")]
    for column, (label, key) in zip(st.columns(4), shown):
        column.metric(label, f"{counts[key]:,}")
    ppv, npv = frequencies["ppv"], frequencies["npv"]
    st.caption(
        f"Of the children flagged, {_share(ppv)} have pneumonia (PPV); of those cleared, {_share(npv)} are truly "
        f"clear (NPV). Expected harm per child, counting a missed pneumonia as {ratio:g} false alarms: "
        f"{expected_cost(test.labels, test.probabilities, threshold, prevalence, ratio):.3f} false alarms."
    )
    st.html(natural_frequency_html(counts))  # reflows to fewer columns on a phone; plotly ran icons together


def _share(value: float) -> str:
    return format_percent(value)


CELLS = {
    "TP": "true positives: pneumonia, flagged",
    "FP": "false positives: normal, flagged",
    "FN": "false negatives: pneumonia, missed",
    "TN": "true negatives: normal, cleared",
}


def case_gallery_ui(test: Predictions, threshold: float) -> None:
    """The test images in one confusion-matrix cell at the current threshold, highest score first."""
    st.subheader("Case gallery")
    cell = st.segmented_control("Cell of the confusion matrix", list(CELLS), default="FP", key="gallery_cell",
                                format_func=lambda c: c, help="; ".join(f"{k}: {v}" for k, v in CELLS.items()))
    cell = cell or "FP"
    teaching = set(teaching_indices(test.files, test.labels).tolist())  # a reader study's films are never shown
    indices = [i for i in cell_indices(test.labels, test.probabilities, threshold, cell) if i in teaching]
    st.caption(f"{len(indices)} {CELLS[cell]} at threshold {format_threshold(threshold)}, highest score first (the films kept "
               "for reader studies are never shown here).")
    shown = indices[:GALLERY_LIMIT]
    # Tiles of a fixed width in a wrapping row: six or more abreast on a desktop, three on a phone, where
    # st.columns would stack them one per screen.
    with st.container(horizontal=True, gap="small"):
        for index in shown:
            path = thumbnail_path(test.files[index])
            caption = f"{format_probability(float(test.probabilities[index]))} · {test.subtypes[index]}"
            with st.container(width=GALLERY_TILE_PX):
                if path.is_file():
                    st.image(path.read_bytes(), caption=caption, width="stretch")
                else:
                    st.caption(caption)
    if len(indices) > GALLERY_LIMIT:
        st.caption(f"Showing the first {GALLERY_LIMIT} of {len(indices)}.")


SITE_PRESET = "site_preset"  # session state: the site threshold and its summary only, never the films
SITE_ROUND = "site_round"


def site_calibration_ui(predictor) -> Threshold | None:
    """Upload the site's own normal films; a threshold flagging at most a chosen share of them becomes a
    preset for this session. The films are scored in memory and dropped; only the threshold and its rule stay."""
    with st.expander("Site calibration: a threshold from your own normal films", icon=":material/local_hospital:"):
        st.caption(wording.SITE_CALIBRATION_HELP)
        with st.form("site_calibration", border=False):
            # A new key after each use drops the films from the session: only the threshold is kept.
            films = st.file_uploader("Films known to be normal (20 or more)", accept_multiple_files=True,
                                     key=f"site_normals_{st.session_state.get(SITE_ROUND, 0)}")
            share = st.slider("Share of them the threshold may flag", 0.01, 0.30, 0.10, 0.01, format="%.2f",
                              key="site_max_flagged")
            derive = st.form_submit_button("Derive site threshold")
        if derive and films:
            try:
                with st.spinner(f"Scoring {len(films)} films…"):
                    site = calibrate_site_from_sources(predictor, [(f.name, f.getvalue()) for f in films], share,
                                                       model_slot=lambda: queued("Site calibration"))
            except SiteCalibrationError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                st.session_state[SITE_PRESET] = (site.as_threshold(), site.summary())
                st.session_state[THRESHOLD] = site.as_threshold()
                st.session_state[SITE_ROUND] = st.session_state.get(SITE_ROUND, 0) + 1  # drops the films
                st.rerun()
        elif derive:
            st.warning("Add the site's normal films first.", icon=":material/warning:")
        preset, summary = st.session_state.get(SITE_PRESET, (None, ""))
        if preset:
            st.success(summary[:1].upper() + summary[1:], icon=":material/check:")
    return preset


@st.fragment
def threshold_explorer_ui(predictor, test: Predictions, validation: Predictions | None) -> None:
    """Presets, slider and everything computed from them; a change reruns only this fragment."""
    prevalence, ratio = prevalence_and_costs_ui(test)
    cost = cost_preset(validation, prevalence, ratio)
    site = site_calibration_ui(predictor)
    st.markdown("**Presets** (computed on validation, except a site-derived one):")
    presets_ui([*predictor.metadata.presets, *([cost] if cost else []), *([site] if site else [])])
    applied = threshold_ui("explorer_threshold")
    threshold = applied.value
    values = threshold_metrics(test.labels, test.probabilities, threshold)
    st.markdown(f"**Test set, {len(test.labels)} images, threshold {applied.text}**")
    shown = [
        ("Sensitivity (recall)", "sensitivity"),
        ("Specificity", "specificity"),
        ("Precision (PPV)", "precision"),
        ("NPV", "npv"),
        ("F1", "f1"),
        ("Accuracy", "accuracy"),
    ]
    for column, (label, key) in zip(st.columns(len(shown)), shown):
        column.metric(label, format_proportion(values[key]))
    counts = confusion_at(test.labels, test.probabilities, threshold)
    (tn, fp), (fn, tp) = counts
    st.caption(f"Confusion matrix at {applied.text}: TN {tn}, FP {fp}, FN {fn}, TP {tp}")
    left, right = st.columns(2)
    left.plotly_chart(plots.confusion_heatmap(counts), width="stretch", key="confusion_counts")
    right.plotly_chart(plots.confusion_heatmap(counts, normalise=True), width="stretch", key="confusion_share")
    left.plotly_chart(plots.roc_figure(test.labels, test.probabilities, threshold), width="stretch", key="roc")
    right.plotly_chart(plots.pr_figure(test.labels, test.probabilities, threshold), width="stretch", key="pr")
    natural_frequencies_ui(test, values, threshold, prevalence, ratio)
    case_gallery_ui(test, threshold)
