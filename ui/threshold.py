"""The Threshold explorer: validation presets, the shared slider, and the test-set metrics, confusion
matrices and curves that follow it."""

from __future__ import annotations

import streamlit as st

from pneumonia import plots, ui_text
from pneumonia.artifacts import Predictions
from pneumonia.config import TEST_PREDICTIONS_FILENAME
from pneumonia.metrics import confusion_at, threshold_metrics
from ui.common import predictor_or_stop, presets_ui, split_predictions, threshold_ui


def threshold_page() -> None:
    predictor = predictor_or_stop()
    st.title("Threshold explorer")
    test = split_predictions(TEST_PREDICTIONS_FILENAME)
    if test is None:
        return
    st.info(ui_text.TEST_VS_VALIDATION)
    threshold_explorer_ui(predictor.metadata["threshold"]["presets"], test)


@st.fragment
def threshold_explorer_ui(presets: list[dict], test: Predictions) -> None:
    """Presets, slider and everything computed from them; a change reruns only this fragment."""
    st.markdown("**Presets** (computed on validation):")
    presets_ui(presets)
    threshold = threshold_ui("explorer_threshold")
    values = threshold_metrics(test.labels, test.probabilities, threshold)
    st.markdown(f"**Test set, {len(test.labels)} images, threshold {threshold:.3f}**")
    shown = [
        ("Sensitivity (recall)", "sensitivity"),
        ("Specificity", "specificity"),
        ("Precision (PPV)", "precision"),
        ("NPV", "npv"),
        ("F1", "f1"),
        ("Accuracy", "accuracy"),
    ]
    for column, (label, key) in zip(st.columns(len(shown)), shown):
        column.metric(label, f"{values[key]:.3f}")
    counts = confusion_at(test.labels, test.probabilities, threshold)
    (tn, fp), (fn, tp) = counts
    st.caption(f"Confusion matrix at {threshold:.3f}: TN {tn}, FP {fp}, FN {fn}, TP {tp}")
    left, right = st.columns(2)
    left.plotly_chart(plots.confusion_heatmap(counts), width="stretch", key="confusion_counts")
    right.plotly_chart(plots.confusion_heatmap(counts, normalise=True), width="stretch", key="confusion_share")
    left.plotly_chart(plots.roc_figure(test.labels, test.probabilities, threshold), width="stretch", key="roc")
    right.plotly_chart(plots.pr_figure(test.labels, test.probabilities, threshold), width="stretch", key="pr")
