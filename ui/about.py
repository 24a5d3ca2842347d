"""About / model card: data, model, calibration, test results with intervals, the input gate, the hardest
cases and intended use, all filled in from the model's metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pneumonia import wording
from pneumonia.config import (
    CLASS_NAMES,
    EVALUATE_COMMAND,
    HISTORY_FILENAME,
    TEST_PREDICTIONS_FILENAME,
    VALIDATION_PREDICTIONS_FILENAME,
)
from pneumonia.decision.metrics import confusion_at, reliability_curve
from pneumonia.formatting import format_probability, format_threshold
from pneumonia.io.bundle import ModelMetadata
from pneumonia.reports import plots
from pneumonia.reports.model_card import METRIC_LABELS, gate_section, recalibration_text
from pneumonia.reports.tables import metrics_table
from ui.common import (
    file_stamp,
    load_history,
    load_predictions,
    model_dir,
    page_header_ui,
    predictor_or_stop,
    split_predictions,
)


def about_page() -> None:
    page_header_ui("About this model")  # before the model: on a cold start, title and disclaimer show at once
    predictor = predictor_or_stop()
    metadata = predictor.metadata
    directory = model_dir()
    test = split_predictions(TEST_PREDICTIONS_FILENAME)
    validation_path = directory / VALIDATION_PREDICTIONS_FILENAME
    validation = load_predictions(str(validation_path), file_stamp(validation_path)) if validation_path.is_file() else None
    test_report = metadata.test_metrics
    training = metadata.training

    st.markdown(wording.about_summary(training, _test_counts(test, metadata.default_threshold.value)))
    st.header("Data")
    st.markdown(wording.DATA)
    counts = {
        "fit (training)": f"{training['n_fit']:,} images, {training['n_fit_patients']:,} patients",
        "validation": f"{training['n_validation']:,} images, {training['n_validation_patients']:,} patients",
    }
    if test is not None:
        per_class = ", ".join(f"{int(np.sum(test.labels == i)):,} {name}" for i, name in enumerate(CLASS_NAMES))
        counts["test"] = f"{len(test.labels):,} images ({per_class})"
    st.table(pd.DataFrame({"split": list(counts), "size": list(counts.values())}))

    st.header("Model")
    st.markdown(
        f"**Input.** One frontal chest film, read as grey levels at {metadata.input_size}x"
        f"{metadata.input_size} pixels.\n\n"
        f"**Default threshold.** {metadata.default_threshold.text}: {metadata.default_threshold.plain_rule}."
    )
    if test_report:
        st.markdown(f"**The score.** {wording.score_honesty(test_report['ece'])}")
    with st.expander("How the model is built, trained and calibrated"):
        model_details_ui(metadata, directory, test, validation)

    st.header("Results on the test split")
    if test_report:
        st.caption(
            f"At the default threshold {format_threshold(test_report['threshold'])}, chosen before the test films "
            f"were read. The range beside each number shows how far it could move with another set of test films of "
            f"the same size (a 95% interval)."
        )
        table = metrics_table(test_report)
        plain = table["metric"] != METRIC_LABELS["ece"]
        st.dataframe(
            table[plain],
            hide_index=True,
            column_config={"value": st.column_config.NumberColumn(format="%.3f")},
        )
        with st.expander("How this is computed"):
            st.caption(f"95% intervals from {test_report['bootstrap']}.")
            st.dataframe(table[~plain], hide_index=True,
                         column_config={"value": st.column_config.NumberColumn(format="%.3f")})
        hardest_cases_ui(teaching_cases(test_report.get("hardest_cases", []), test), directory)
    else:
        st.info(f"No test metrics yet. Command: `{EVALUATE_COMMAND}`.")

    st.header("Input check")
    st.markdown(wording.GATE_SUMMARY)
    with st.expander("How the input check works"):
        st.markdown(gate_section(metadata))
    st.header("Use")
    st.markdown(wording.INTENDED_USE)


def _test_counts(test, threshold: float) -> dict | None:
    """Caught and cleared films on the test split at `threshold`, for the page's first sentence."""
    if test is None:
        return None
    (tn, fp), (fn, tp) = confusion_at(test.labels, test.probabilities, threshold)
    return {"threshold": threshold, "caught": int(tp), "pneumonias": int(tp + fn), "cleared": int(tn),
            "normals": int(tn + fp)}


def model_details_ui(metadata: ModelMetadata, directory: Path, test, validation) -> None:
    """The model card itself (the same text `python -m pneumonia card` prints), with the training curves and the
    reliability diagram it cannot draw."""
    import re

    from pneumonia.reports.model_card import model_card

    if metadata.test_metrics is not None:
        # One heading level under the page's own: the card's title becomes a subheading inside the expander.
        st.markdown(re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", model_card(metadata), flags=re.M))
    else:
        st.markdown(f"**Architecture.** {metadata.architecture}.\n\n{recalibration_text(metadata)}")
    history_path = directory / HISTORY_FILENAME
    if history_path.is_file():
        history = load_history(str(history_path), file_stamp(history_path))
        st.plotly_chart(plots.training_curves(history, metadata.training["best_epoch"]), width="stretch",
                        key="history")
    curves = {
        name: reliability_curve(split.labels, split.probabilities)
        for name, split in (("validation", validation), ("test", test))
        if split is not None
    }
    if curves:
        st.plotly_chart(plots.reliability_figure(curves), width="stretch", key="reliability")


def teaching_cases(cases: list[dict], test) -> list[dict]:
    """The hardest cases less any film kept for reader studies (`pneumonia.studies.pool`), which no page shows."""
    from pneumonia.studies.pool import study_pool_names

    kept = set() if test is None else study_pool_names(test.files, test.labels)
    return [case for case in cases if case["source"] not in kept]


def hardest_cases_ui(cases: list[dict], directory: Path) -> None:
    """The test images the model got most confidently wrong: the best material for teaching its limits."""
    present = [case for case in cases if (directory / case["image"]).is_file()]
    if not present:
        return
    st.subheader("Hardest test cases (highest loss)")
    per_row = 4
    for start in range(0, len(present), per_row):
        for column, case in zip(st.columns(per_row), present[start : start + per_row]):
            truth = CLASS_NAMES[case["label"]] + ("" if case["subtype"] == "normal" else f" ({case['subtype']})")
            column.image(
                str(directory / case["image"]),
                caption=f"{case['source']}: truly {truth}, P(pneumonia) {format_probability(case['probability'])}",
                width="stretch",
            )
