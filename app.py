"""Streamlit front end: screen chest X-rays, explore the decision threshold, read the model card.

Run with `make app` (= `streamlit run app.py`). This file only lays out widgets; the numbers come from
the `pneumonia` package. Set PNEUMONIA_MODEL_DIR to serve a model other than the committed one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pneumonia import plots, ui_text
from pneumonia.artifacts import Predictions, read_predictions
from pneumonia.config import (
    ASSETS_DIR,
    CLASS_NAMES,
    EVALUATE_COMMAND,
    HISTORY_FILENAME,
    METADATA_FILENAME,
    MODELS_DIR,
    TEST_PREDICTIONS_FILENAME,
    VALIDATION_PREDICTIONS_FILENAME,
)
from pneumonia.errors import PneumoniaError
from pneumonia.gate import CAUTION, REFUSED
from pneumonia.inference import Predictor, Screening, label_at, load_predictor
from pneumonia.metrics import confusion_at, reliability_curve, threshold_metrics
from pneumonia.report import gate_section
from pneumonia.screening import (
    Upload,
    class_percentiles,
    displayed_table,
    facts_text,
    format_probability,
    margin_text,
    metrics_table,
    percentile_text,
    results_csv,
    results_table,
    sample_files,
)

MODEL_DIR_ENV = "PNEUMONIA_MODEL_DIR"
THRESHOLD = "threshold"  # the one session-state key holding the decision threshold that every page applies
SAMPLES_DIR = ASSETS_DIR / "samples"
PRESET_NAMES = {
    "default": "Model default",
    "max_f1": "Max F1",
    "youden": "Youden's J",
    "sensitivity_95": "Sensitivity ≥ 0.95",
}


def model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV) or MODELS_DIR)


def file_stamp(path: Path) -> int:
    """Modification time as a cache key part, so a retrained or re-evaluated model is picked up without a restart."""
    return path.stat().st_mtime_ns if path.is_file() else 0


# ---------------------------------------------------------------- cached work (never re-run by a widget move)


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def load_model(directory: str, stamp: int) -> Predictor:
    """Once per process and model version, warmed up so the first upload is answered quickly."""
    predictor = load_predictor(directory)
    predictor.warm_up()
    return predictor


@st.cache_data(show_spinner=False, max_entries=4)
def load_predictions(path: str, stamp: int) -> Predictions:
    return read_predictions(Path(path))


@st.cache_data(show_spinner=False, max_entries=4)
def load_history(path: str, stamp: int) -> pd.DataFrame:
    return pd.read_csv(path)


@st.cache_data(show_spinner=False, max_entries=512)
def screen_upload(_predictor: Predictor, model_sha: str, digest: str, name: str, _data: bytes) -> Screening:
    """Read, gate and score one upload, keyed on the model and the bytes' hash (in memory only):
    relabelling at a new threshold never re-runs the model."""
    return _predictor.screen([(name, _data)], keep_images=True)[0]


@st.cache_data(show_spinner=False, max_entries=64)
def lime_explanation(_predictor: Predictor, model_sha: str, digest: str, settings, _image: np.ndarray):
    """Seeded LIME keyed on model, image hash and settings. The progress bar is created and removed in here,
    so a cache hit replays nothing visible."""
    from pneumonia.explain import explain_lime

    text = "LIME: scoring {:.0%} of the perturbed copies of the image…"
    bar = st.progress(0.0, text=text.format(0.0))
    explanation = explain_lime(
        _predictor, _image, settings, progress=lambda done: bar.progress(min(max(done, 0.0), 1.0), text=text.format(done))
    )
    bar.empty()
    return explanation


@st.cache_data(show_spinner=False, max_entries=64)
def grad_cam_map(_predictor: Predictor, model_sha: str, digest: str, _image: np.ndarray) -> np.ndarray:
    from pneumonia.explain import grad_cam

    return grad_cam(_predictor, _image)


# ---------------------------------------------------------------- access to the model and its files


def current_predictor() -> Predictor:
    directory = model_dir()
    return load_model(str(directory), file_stamp(directory / METADATA_FILENAME))


def predictor_or_stop() -> Predictor:
    """The loaded model, or a one-line error naming the command that fixes it (never a traceback)."""
    try:
        predictor = current_predictor()
    except PneumoniaError as exc:
        st.error(f"The model could not be loaded: {exc}", icon=":material/error:")
        st.stop()
    st.session_state.setdefault(THRESHOLD, predictor.threshold)
    return predictor


def split_predictions(split_filename: str) -> Predictions | None:
    """A prediction table from the model folder, or None after an info line saying how to create it."""
    path = model_dir() / split_filename
    try:
        return load_predictions(str(path), file_stamp(path))
    except PneumoniaError as exc:
        st.info(f"{exc} Command: `{EVALUATE_COMMAND}`.", icon=":material/info:")
        return None


# ---------------------------------------------------------------- small widgets that return values


def _copy_to_shared(widget_key: str) -> None:
    st.session_state[THRESHOLD] = st.session_state[widget_key]


def _set_shared(value: float) -> None:
    st.session_state[THRESHOLD] = value


def threshold_ui(widget_key: str) -> float:
    """A slider bound to the shared threshold. Each page has its own widget key (Streamlit drops the state
    of widgets not drawn on a page), synced to the one THRESHOLD key before drawing and on every change."""
    st.session_state[widget_key] = st.session_state[THRESHOLD]
    st.slider(
        "Decision threshold on P(pneumonia)",
        min_value=0.0,
        max_value=1.0,
        step=0.001,
        format="%.3f",
        key=widget_key,
        on_change=_copy_to_shared,
        args=(widget_key,),
        help=ui_text.THRESHOLD_HELP,
    )
    return float(st.session_state[THRESHOLD])


def presets_ui(presets: list[dict]) -> None:
    """One button per validation-chosen threshold; clicking sets the shared threshold (and so the slider)."""
    columns = st.columns(len(presets))
    for column, preset in zip(columns, presets):
        column.button(
            f"{PRESET_NAMES.get(preset['name'], preset['name'])}: {preset['threshold']:.3f}",
            key=f"preset_{preset['name']}",
            help=f"Rule: {preset['rule']}",
            on_click=_set_shared,
            args=(float(preset["threshold"]),),
            width="stretch",
        )
        column.caption(preset["rule"])


def uploads_ui() -> list[Upload]:
    """Uploaded files plus any chosen samples, as bytes in memory."""
    files = st.file_uploader(
        "Drop chest X-rays here: JPEG, PNG, DICOM, TIFF, BMP, GIF or WebP, several at once",
        type=None,  # every file is accepted and recognised by its content, so a DICOM without .dcm still works
        accept_multiple_files=True,
        help=ui_text.UPLOAD_HELP,
    )
    samples = {path.name: path for path in sample_files(SAMPLES_DIR)}
    chosen = st.multiselect(
        "…or try bundled sample X-rays", list(samples), key="samples", help=ui_text.SAMPLES_HELP
    )
    return [Upload(f.name, f.getvalue()) for f in files or []] + [
        Upload(name, samples[name].read_bytes()) for name in chosen
    ]


def lime_settings_ui():
    """LIME knobs in an expander; returns (settings, regions to show)."""
    from pneumonia.explain import LimeSettings

    defaults = LimeSettings()
    with st.expander("LIME settings"):
        st.caption(ui_text.LIME_SETTINGS_HELP)
        n_segments = st.slider("Superpixels", 10, 100, defaults.n_segments, step=5, key="lime_segments")
        num_samples = st.slider("Samples", 100, 2000, defaults.num_samples, step=100, key="lime_samples")
        top_k = st.slider("Regions shown per direction", 1, 10, 5, key="lime_top_k")
    return LimeSettings(num_samples=num_samples, n_segments=n_segments, seed=defaults.seed), top_k


# ---------------------------------------------------------------- page parts


def result_card_ui(item: Screening, position: int, threshold: float, test: Predictions | None, ece: float | None) -> None:
    """One input, full width so nothing is cut off on a narrow screen: the gate's word first, then the grey
    image the model saw beside its score."""
    with st.container(border=True):
        if item.status == REFUSED:
            st.error(f"Not scored: {item.reason}", icon=":material/block:")
        elif item.status == CAUTION:
            st.warning(f"Caution: {item.reason}. The score is shown, but means less.", icon=":material/warning:")
        picture, numbers = st.columns([1, 2])
        if item.image is not None:
            picture.image(item.image, caption=item.name, width="stretch")
        else:
            picture.markdown(f"**{item.name}**")
        with numbers:
            if item.facts or item.source_format == "DICOM":
                st.caption(facts_text(item.facts))
            if item.probability is None:
                return
            p = item.probability
            st.metric("P(pneumonia)", format_probability(p))
            if ece is not None:
                st.caption(f"Calibration on the test set: expected calibration error {ece:.3f}.")
            st.metric(
                f"Label at {threshold:.3f}", label_at(p, threshold), delta=margin_text(p, threshold), delta_color="off"
            )
            if test is not None:
                st.caption(percentile_text(class_percentiles(p, test.labels, test.probabilities)))
        if test is not None:
            with st.expander("Where this score falls in the test set"):
                st.plotly_chart(
                    plots.score_histogram(test.labels, test.probabilities, p, threshold),
                    width="stretch",
                    key=f"histogram_{position}",
                )


@st.fragment
def results_ui(results: list[Screening], test: Predictions | None, ece: float | None) -> None:
    """Everything on the Screen page that depends on the threshold; a slider move reruns only this."""
    threshold = threshold_ui("screen_threshold")
    table = results_table(results, threshold)
    st.dataframe(displayed_table(table), hide_index=True, width="stretch")
    st.download_button(
        "Download results as CSV",
        data=results_csv(table),
        file_name="pneumonia_screening.csv",
        mime="text/csv",
        on_click="ignore",
    )
    for position, item in enumerate(results):
        result_card_ui(item, position, threshold, test, ece)


def explanation_ui(predictor: Predictor, scored: list[tuple[Upload, Screening]]) -> None:
    """LIME and Grad-CAM for one chosen image, both cached, so threshold moves never recompute them."""
    from pneumonia.explain import heatmap_overlay, lime_heatmap, lime_overlay, map_agreement

    st.subheader("Why this score? LIME and Grad-CAM")
    st.caption(ui_text.EXPLAIN_INTRO)
    index = 0
    if len(scored) > 1:
        index = st.selectbox(
            "Image to explain (scored images only)",
            range(len(scored)),
            format_func=lambda i: scored[i][1].name,
            key="explain_image",
        )
    upload, item = scored[index]
    settings, top_k = lime_settings_ui()
    image = item.model_input
    sha = predictor.metadata["model_sha256"]
    lime_column, cam_column = st.columns(2)
    with lime_column:
        explanation = lime_explanation(predictor, sha, upload.digest, settings, image)
        st.image(
            lime_overlay(image, explanation, top_k=top_k),
            caption=f"LIME ({settings.n_segments} superpixels, {settings.num_samples} samples): "
            "red pushes towards pneumonia, blue away",
            width="stretch",
        )
    with cam_column:
        cam = grad_cam_map(predictor, sha, upload.digest, image)
        st.image(heatmap_overlay(image, cam), caption="Grad-CAM: evidence for pneumonia (red = most)", width="stretch")
    st.metric(
        "Agreement of LIME and Grad-CAM (Spearman)",
        f"{map_agreement(lime_heatmap(explanation), cam):.2f}",
        help=ui_text.AGREEMENT_HELP,
    )
    st.caption(f"LIME surrogate fit R² = {explanation.score:.2f}; low values mean the linear story is a rough one.")


# ---------------------------------------------------------------- pages


def screen_page() -> None:
    predictor = predictor_or_stop()
    st.title("Screen chest X-rays")
    st.warning(ui_text.SCREEN_DISCLAIMER, icon=":material/warning:")
    uploads = uploads_ui()
    if not uploads:
        st.info("Upload one or more X-rays, or pick a sample above, to see the model's scores.")
        return
    sha = predictor.metadata["model_sha256"]
    results = [screen_upload(predictor, sha, upload.digest, upload.name, upload.data) for upload in uploads]
    test_report = predictor.metadata["metrics"].get("test")
    results_ui(results, split_predictions(TEST_PREDICTIONS_FILENAME), test_report["ece"] if test_report else None)
    scored = [(upload, item) for upload, item in zip(uploads, results) if item.probability is not None]
    if scored:
        explanation_ui(predictor, scored)


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


def about_page() -> None:
    predictor = predictor_or_stop()
    metadata = predictor.metadata
    directory = model_dir()
    test = split_predictions(TEST_PREDICTIONS_FILENAME)
    validation_path = directory / VALIDATION_PREDICTIONS_FILENAME
    validation = load_predictions(str(validation_path), file_stamp(validation_path)) if validation_path.is_file() else None
    test_report = metadata["metrics"].get("test")
    training = metadata["training"]

    st.title("About this model")
    st.header("Data")
    st.markdown(ui_text.DATA)
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
        f"**Architecture.** {metadata['architecture']}.\n\n"
        f"**Input.** {metadata['input']['size']}x{metadata['input']['size']} grey levels; "
        f"{metadata['input']['preprocessing']}.\n\n"
        f"**Training.** {training['epochs_run']} epochs run, best epoch {training['best_epoch']} "
        f"({training['checkpoint_rule']}), {training['seconds'] / 60:.1f} minutes on {training['backend']}.\n\n"
        f"**Default threshold.** {metadata['threshold']['default']:.3f}: {metadata['threshold']['rule']} "
        f"(chosen on {metadata['threshold']['chosen_on']})."
    )
    history_path = directory / HISTORY_FILENAME
    if history_path.is_file():
        history = load_history(str(history_path), file_stamp(history_path))
        st.plotly_chart(plots.training_curves(history, training["best_epoch"]), width="stretch", key="history")
    calibration = metadata["calibration"]
    validation_metrics = metadata["metrics"]["validation"]
    ece_line = (
        f"validation ECE {validation_metrics['ece_before_calibration']:.3f} before and "
        f"{validation_metrics['ece']:.3f} after"
    )
    if test_report:
        ece_line += f"; test ECE {test_report['ece']:.3f}"
    st.markdown(f"**Calibration.** {calibration['method']}; temperature {calibration['temperature']:.2f}, bias {calibration.get('bias', 0.0):+.2f}; {ece_line}.")
    curves = {
        name: reliability_curve(split.labels, split.probabilities)
        for name, split in (("validation", validation), ("test", test))
        if split is not None
    }
    if curves:
        st.plotly_chart(plots.reliability_figure(curves), width="stretch", key="reliability")

    st.header("Results on the test split")
    if test_report:
        st.caption(
            f"At the default threshold {test_report['threshold']:.3f} ({test_report['threshold_source']}); "
            f"95% intervals from {test_report['bootstrap']}."
        )
        st.dataframe(
            metrics_table(test_report),
            hide_index=True,
            column_config={"value": st.column_config.NumberColumn(format="%.3f")},
        )
        hardest_cases_ui(test_report.get("hardest_cases", []), directory)
    else:
        st.info(f"No test metrics yet. Command: `{EVALUATE_COMMAND}`.")

    st.markdown(gate_section(metadata))
    st.header("Use")
    st.markdown(ui_text.INTENDED_USE)


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


def sidebar_ui() -> None:
    """Device, model identity and the disclaimer, on every page."""
    with st.sidebar:
        st.warning(ui_text.SIDEBAR_DISCLAIMER)
        try:
            predictor = current_predictor()
        except PneumoniaError:
            st.caption("No model loaded.")
            return
        metadata = predictor.metadata
        st.caption(
            f"**Device:** {predictor.device}  \n"
            f"**Model:** v{metadata['package_version']}, created {metadata['created']}  \n"
            f"**SHA-256:** `{metadata['model_sha256'][:12]}`"
        )


def main() -> None:
    st.set_page_config(page_title="Pneumonia screening demo", page_icon="🫁", layout="wide")
    pages = [
        st.Page(screen_page, title="Screen", icon=":material/radiology:", url_path="screen", default=True),
        st.Page(threshold_page, title="Threshold explorer", icon=":material/tune:", url_path="threshold"),
        st.Page(about_page, title="About / model card", icon=":material/description:", url_path="about"),
    ]
    page = st.navigation(pages)
    sidebar_ui()
    page.run()


main()
