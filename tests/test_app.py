"""The Streamlit app, driven headlessly by AppTest on the committed model (no data set needed).

Every expected value is computed here independently: probabilities by the package's predictor,
confusion counts and rates with pandas/numpy straight from models/test_predictions.csv.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from inputs import PHI, PHI_UIDS, PRIVATE_VALUE, dicom_bytes, encode, radiograph_grey, twelve_bit
from PIL import Image
from scipy.stats import percentileofscore
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from pneumonia.config import MODELS_DIR, TEST_PREDICTIONS_FILENAME
from pneumonia.formatting import format_probability, format_threshold, margin_text
from pneumonia.io.bundle import read_test_predictions
from pneumonia.reports.tables import (
    class_percentiles,
    displayed_table,
    results_csv,
    results_html,
    results_table,
)
from pneumonia.screening.predictor import Predictor, Screening
from pneumonia.threshold import Threshold, label_at
from pneumonia.wording import preset_name
from ui.about import teaching_cases

APP = Path(__file__).resolve().parents[1] / "app.py"
SAMPLES = sorted((APP.parent / "assets" / "samples").glob("*.jpeg"))
TIMEOUT = 180  # the first run loads TensorFlow and the model on a shared 2-core machine

pytestmark = [pytest.mark.integration, pytest.mark.score_sensitive]


@pytest.fixture
def app(monkeypatch) -> AppTest:
    monkeypatch.delenv("PNEUMONIA_MODEL_DIR", raising=False)
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


@pytest.fixture(scope="module")
def test_table() -> pd.DataFrame:
    return pd.read_csv(MODELS_DIR / TEST_PREDICTIONS_FILENAME)


def open_page(at: AppTest, url_path: str, title: str) -> AppTest:
    """AppTest.switch_page() only reaches file-based pages; these pages are functions in app.py, which
    st.navigation identifies by the hash of their url_path, so request that hash directly."""
    at._page_hash = calc_hash(url_path)
    at.run()
    assert [t.value for t in at.title] == [title], "page switch did not land on the requested page"
    return at


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader[0].set_value([(name, data, "image/jpeg") for name, data in files])
    return at.run()


def codes(*datas: bytes) -> list[str]:
    """The pseudonyms a batch gets by default: its SHA-256's first 8 hex digits and its place in the upload."""
    import hashlib

    return [f"{hashlib.sha256(d).hexdigest()[:8]}_{i}" for i, d in enumerate(datas, start=1)]


def downloads(at: AppTest) -> dict[str, bytes]:
    """Every download the page offers now, by the file name the browser saves it under, with its bytes."""
    import gc

    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    ids = {b.proto.url.rsplit("/", 1)[-1].split(".")[0] for b in at.get("download_button")}
    return {f.filename: f.content for o in gc.get_objects() if isinstance(o, MemoryMediaFileStorage)
            for key, f in list(o._files_by_id.items()) if key in ids}


def metric(at: AppTest, label_start: str):
    found = [m for m in at.metric if m.label.startswith(label_start)]
    assert len(found) == 1, [m.label for m in at.metric]
    return found[0]


def chart(at: AppTest, key: str) -> dict:
    found = [e for e in at.get("plotly_chart") if e.key == key]
    assert len(found) == 1
    return json.loads(found[0].proto.spec)


def array(value) -> np.ndarray:
    """A plotly JSON array: plain lists, or the typed {dtype, bdata, shape} form plotly uses for numpy data."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = [int(n) for n in str(value.get("shape", flat.size)).split(",")]
        return flat.reshape(shape)
    return np.asarray(value)


def counts_by_hand(table: pd.DataFrame, threshold: float) -> list[list[int]]:
    called = table["probability"].to_numpy() >= threshold
    truth = table["label"].to_numpy() == 1
    return [
        [int(np.sum(~truth & ~called)), int(np.sum(~truth & called))],
        [int(np.sum(truth & ~called)), int(np.sum(truth & called))],
    ]


def shown_results(at: AppTest) -> pd.DataFrame:
    """The Screen page's results table as drawn (HTML, so it fits a phone), one row per file, read back from
    the cells' data-row and data-col names."""
    import html
    import re

    (body,) = [e.proto.body for e in at.get("html") if "pneumonia-results" in e.proto.body and "<table" in e.proto.body]
    cells: dict[int, dict[str, str]] = {}
    for row, column, text in re.findall(r'<td[^>]*data-row="(\d+)" data-col="(\w+)"[^>]*>(.*?)</td>', body):
        cells.setdefault(int(row), {"reason": ""})[column] = html.unescape(text)
    return pd.DataFrame([cells[row] for row in sorted(cells)], columns=["file", "status", "label", "probability", "reason"])


def page_text(at: AppTest) -> str:
    """Every element's protobuf on the page, main area and sidebar, as text."""
    found: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            found.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(found)


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ---------------------------------------------------------------- Screen page


def test_sample_upload_shows_the_packages_own_prediction_and_explanations(app, committed_predictor):
    from pneumonia.explain.maps import LimeSettings, explain_lime, grad_cam, lime_heatmap, map_agreement

    data = SAMPLES[0].read_bytes()
    upload(app, ("xray.jpeg", data))
    assert_no_exception(app)
    probability = committed_predictor.predict_bytes(data)
    threshold = committed_predictor.default_threshold
    assert metric(app, "P(pneumonia)").value == format_probability(probability, threshold)
    shown_label = metric(app, "Label at")
    assert shown_label.label == f"Label at {threshold.text}"
    assert shown_label.value == label_at(probability, threshold)
    assert shown_label.proto.delta == margin_text(probability, threshold.value)

    captions = [caption for image in app.image for caption in image.captions]
    assert captions[0] == codes(data)[0]  # a pseudonym, not the file name
    assert any(c.startswith("LIME (") for c in captions) and any(c.startswith("Grad-CAM") for c in captions)
    # The agreement shown is that of LIME with default settings on this very image.
    image = committed_predictor.decode(data)
    expected = map_agreement(lime_heatmap(explain_lime(committed_predictor, image, LimeSettings())), grad_cam(
        committed_predictor, image))
    assert metric(app, "Agreement").value == f"{expected:.2f}"
    # The readout is the package's own, sentence for sentence (the PDF prints the same one).
    from pneumonia.explain.readout import explanation_readout, flip_sentence

    made = explanation_readout(committed_predictor, image, LimeSettings(), probability, threshold,
                               committed_predictor.metadata.presets)
    readout = [m.value for m in app.markdown if m.value.startswith("**Explanation readout**")]
    assert readout == ["**Explanation readout**\n" + "\n".join(f"- {s}" for s in made.sentences)]
    assert flip_sentence(probability, threshold) in [c.value for c in app.caption]
    assert [b.label for b in app.button if b.label.startswith("Prepare report")] == ["Prepare report (PDF)"]

    sidebar = " ".join(c.value for c in app.sidebar.caption)
    assert committed_predictor.metadata.short_sha in sidebar
    assert committed_predictor.device in sidebar
    assert "not a medical device" in app.sidebar.warning[0].value


def test_sample_picker_scores_bundled_images(app, committed_predictor):
    app.multiselect(key="samples").set_value([p.name for p in SAMPLES]).run()
    assert_no_exception(app)
    shown = [m.value for m in app.metric if m.label == "P(pneumonia)"]
    assert shown == [format_probability(committed_predictor.predict_bytes(p.read_bytes())) for p in SAMPLES]
    table = shown_results(app)
    assert list(table["file"]) == codes(*[p.read_bytes() for p in SAMPLES])
    assert list(table["label"]) == [
        label_at(committed_predictor.predict_bytes(p.read_bytes()), committed_predictor.default_threshold)
        for p in SAMPLES
    ]


def test_a_cards_histogram_is_drawn_only_once_its_expander_is_opened(app, committed_predictor):
    app.multiselect(key="samples").set_value([SAMPLES[0].name]).run()
    assert_no_exception(app)
    assert [e.label for e in app.expander].count("Where this score falls in the test set") == 1
    assert "plotly_chart" not in page_text(app)  # closed: no figure sent, so the browser shows the score sooner
    app.session_state["where_0"] = True  # what opening it in the browser sets
    app.run()
    assert_no_exception(app)
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    score = committed_predictor.predict_bytes(SAMPLES[0].read_bytes())
    assert any(shape.get("x0") == pytest.approx(score) for shape in figure["layout"].get("shapes", []))


def test_bad_uploads_get_one_line_reasons_while_the_good_one_is_shown(app, committed_predictor):
    good = SAMPLES[0].read_bytes()
    upload(
        app,
        ("truncated.jpeg", good[: len(good) // 3]),
        ("good.jpeg", good),
        ("notes.jpg", b"just text"),
        ("empty.png", b""),
    )
    assert_no_exception(app)
    errors = [e.value for e in app.error]
    assert errors == [
        "Not scored: the file is cut short (truncated): part of the image is missing; export the file again from the "
        "viewer or PACS",
        "Not scored: not an image file this app can read (not a JPEG, PNG, TIFF, BMP, GIF, WebP or DICOM)",
        "Not scored: the file is empty",
    ]
    assert [m.value for m in app.metric if m.label == "P(pneumonia)"] == [
        format_probability(committed_predictor.predict_bytes(good))
    ]
    table = shown_results(app)
    assert list(table["file"]) == codes(good[: len(good) // 3], good, b"just text", b"")
    assert list(table["status"]) == ["refused", "ok", "refused", "refused"]
    assert table["probability"].tolist() == ["", format_probability(committed_predictor.predict_bytes(good)), "", ""]


def test_a_16_bit_png_a_dicom_and_a_photo_in_one_batch(app, committed_predictor):
    import skimage.data

    grey = radiograph_grey(SAMPLES[0])
    sixteen = encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG")
    dicom = dicom_bytes(twelve_bit(grey), age="045Y")
    photo = encode(Image.fromarray(skimage.data.chelsea()), "JPEG")
    app.file_uploader[0].set_value(
        [("sixteen.png", sixteen, "image/png"), ("scan", dicom, "application/octet-stream"),
         ("cat.jpg", photo, "image/jpeg")]
    )
    app.run()
    assert_no_exception(app)
    expected = committed_predictor.screen([("sixteen.png", sixteen), ("scan", dicom), ("cat.jpg", photo)])
    assert [r.status for r in expected] == ["ok", "caution", "refused"]
    table = shown_results(app)
    assert list(table["file"]) == codes(sixteen, dicom, photo)
    assert list(table["status"]) == ["ok", "caution", "refused"]
    assert list(table["reason"]) == [r.reason for r in expected]
    assert table["probability"].tolist() == [format_probability(r.probability) for r in expected[:2]] + [""]
    assert table["label"].tolist()[2] == ""
    # Cards: the 16-bit PNG and the DICOM are scored, the photo shows "Not scored" and no number.
    assert [m.value for m in app.metric if m.label == "P(pneumonia)"] == [
        format_probability(r.probability) for r in expected[:2]
    ]
    assert [w.value for w in app.warning if w.value.startswith("Caution:")] == [
        f"Caution: {expected[1].reason}. The score is shown, but means less."
    ]
    assert "adult patient" in expected[1].reason
    assert [e.value for e in app.error] == [f"Not scored: {expected[2].reason}"]
    assert "DICOM: modality DX, view PA, body part CHEST, age adult (18 or over)" in [c.value for c in app.caption]
    # Every card shows the decoded grey image the model saw, the refused photo included.
    assert [c for image in app.image for c in image.captions][:3] == codes(sixteen, dicom, photo)
    # The explanation picker offers only the scored images.
    assert app.selectbox(key="explain_image").options == codes(sixteen, dicom, photo)[:2]


def test_a_dicom_full_of_identifying_data_leaves_no_trace_on_the_page_or_in_the_logs(app, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    dicom = dicom_bytes(twelve_bit(radiograph_grey(SAMPLES[1])), age="004Y")
    app.file_uploader[0].set_value([("study.dcm", dicom, "application/dicom")])
    app.run()
    assert_no_exception(app)
    assert [m.value for m in app.metric if m.label == "P(pneumonia)"]  # it was scored
    page = page_text(app)
    assert "DICOM: modality DX, view PA, body part CHEST, age 1–5 years" in page  # the walk does reach the cards
    table_csv = results_csv(shown_results(app))
    for secret in [*PHI.values(), *PHI_UIDS, PRIVATE_VALUE, "20210314", "004Y"]:
        assert secret not in page and secret not in table_csv and secret not in caplog.text


def test_moving_the_threshold_relabels_without_running_the_model(app, committed_predictor, monkeypatch):
    data = SAMPLES[0].read_bytes()
    upload(app, ("xray.jpeg", data))
    probability = committed_predictor.predict_bytes(data)
    calls = []
    original = Predictor.predict_arrays
    monkeypatch.setattr(Predictor, "predict_arrays", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))

    for threshold in (max(probability - 0.05, 0.0), min(probability + 0.05, 1.0)):
        app.slider(key="screen_threshold").set_value(threshold).run()
        assert_no_exception(app)
        shown = metric(app, "Label at")
        assert shown.label == f"Label at {format_threshold(threshold)}"  # as applied, every digit
        assert shown.value == label_at(probability, threshold)
        assert shown.proto.delta == margin_text(probability, threshold)
    assert app.session_state["threshold"].value == pytest.approx(threshold)
    assert calls == [], "a threshold change re-ran the model (or LIME)"


def report_downloads(at: AppTest) -> list[str]:
    return [b.proto.url for b in at.get("download_button") if b.proto.label == "Download report (PDF)"]


def test_a_report_is_built_once_per_threshold_when_asked_and_served_as_bytes(app, committed_predictor, monkeypatch):
    """Seconds of LIME and Grad-CAM: built on request only, kept for the session, and offered as bytes, whose
    file outlives the rerun a threshold move starts (a deferred download's file id did not)."""
    import pneumonia.reports.pdf

    built = []
    monkeypatch.setattr(pneumonia.reports.pdf, "image_report",
                        lambda predictor, item, threshold, *rest, **kw: built.append(threshold) or b"%PDF-1.4 fake")
    upload(app, ("xray.jpeg", SAMPLES[0].read_bytes()))
    default = committed_predictor.default_threshold
    assert report_downloads(app) == [] and built == []  # nothing is built before it is asked for
    app.button(key="prepare_0").click().run()
    assert_no_exception(app)
    first = report_downloads(app)
    assert built == [default] and len(first) == 1 and first[0].endswith(".pdf")
    assert not [b for b in app.button if b.label.startswith("Prepare report")]

    app.slider(key="screen_threshold").set_value(0.25).run()  # another threshold: another report, when asked
    assert report_downloads(app) == [] and built == [default]
    app.button(key="prepare_0").click().run()
    second = report_downloads(app)
    assert built == [default, Threshold.by_hand(0.25)] and len(second) == 1
    app.slider(key="screen_threshold").set_value(0.6).run()
    app.slider(key="screen_threshold").set_value(0.25).run()  # back: the same bytes, the same file, not rebuilt
    assert report_downloads(app) == second and built == [default, Threshold.by_hand(0.25)]
    # Slid back onto the default's value, the threshold is one set by hand: its report says so, so it is new.
    app.slider(key="screen_threshold").set_value(default.value).run()
    assert report_downloads(app) == [] and built[-1] == Threshold.by_hand(0.25)


def test_lime_settings_reach_lime_which_reports_progress_and_is_cached(app, monkeypatch):
    import pneumonia.explain.maps

    calls = []
    original = pneumonia.explain.maps.explain_lime

    def recording(predictor, image, settings, progress=None):
        if progress is None:  # the readout's stability runs, not the displayed explanation
            return original(predictor, image, settings)
        fractions = []
        calls.append((settings, fractions))
        return original(predictor, image, settings, progress=lambda f: (fractions.append(f), progress(f)))

    monkeypatch.setattr(pneumonia.explain.maps, "explain_lime", recording)
    upload(app, ("xray.jpeg", SAMPLES[1].read_bytes()))
    app.slider(key="lime_samples").set_value(300).run()
    app.slider(key="lime_segments").set_value(25).run()
    assert_no_exception(app)
    settings, fractions = calls[-1]
    assert (settings.num_samples, settings.n_segments) == (300, 25)
    assert fractions and fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions)
    assert any(c.startswith("LIME (25 superpixels, 300 samples)") for image in app.image for c in image.captions)

    count = len(calls)
    app.slider(key="lime_top_k").set_value(2).run()  # only the drawing changes
    assert len(calls) == count
    app.slider(key="lime_segments").set_value(30).run()  # new settings: one new explanation
    app.slider(key="lime_segments").set_value(25).run()  # back to settings already explained
    assert len(calls) == count + 1


# ---------------------------------------------------------------- Threshold explorer


def test_slider_drives_confusion_matrix_and_metrics(app, committed_predictor, test_table):
    open_page(app, "threshold", "Threshold explorer")
    assert_no_exception(app)
    default = committed_predictor.default_threshold.value
    assert app.slider(key="explorer_threshold").value == pytest.approx(default)
    assert np.array_equal(array(chart(app, "confusion_counts")["data"][0]["z"]), counts_by_hand(test_table, default))

    for threshold in (0.1, 0.9):
        app.slider(key="explorer_threshold").set_value(threshold).run()
        (tn, fp), (fn, tp) = counts = counts_by_hand(test_table, threshold)
        assert np.array_equal(array(chart(app, "confusion_counts")["data"][0]["z"]), counts)
        shares = array(chart(app, "confusion_share")["data"][0]["z"])
        assert np.allclose(shares, [[tn / (tn + fp), fp / (tn + fp)], [fn / (fn + tp), tp / (fn + tp)]])
        assert metric(app, "Sensitivity").value == f"{tp / (tp + fn):.3f}"
        assert metric(app, "Specificity").value == f"{tn / (tn + fp):.3f}"
        assert metric(app, "Precision").value == f"{tp / (tp + fp):.3f}"
        assert metric(app, "NPV").value == f"{tn / (tn + fn):.3f}"
        assert metric(app, "Accuracy").value == f"{(tp + tn) / len(test_table):.3f}"
        roc_marker = chart(app, "roc")["data"][2]
        assert array(roc_marker["x"])[0] == pytest.approx(fp / (fp + tn))
        assert array(roc_marker["y"])[0] == pytest.approx(tp / (tp + fn))
    assert counts_by_hand(test_table, 0.1) != counts_by_hand(test_table, 0.9)


def test_presets_set_the_slider(app, committed_predictor, test_table):
    open_page(app, "threshold", "Threshold explorer")
    presets = committed_predictor.metadata.presets
    assert {p.name for p in presets} >= {"default", "max_f1", "youden"}
    for preset in reversed(presets):  # end on the default so every click is a change
        button = app.button(key=f"preset_{preset.name}")
        assert button.label == f"{preset_name(preset.name)}: {preset.text}"  # the value as applied, e.g. 0.2441
        assert button.help == preset.plain_rule  # plain words on the button; the rule as recorded in the expander
        assert f"{preset_name(preset.name)}**: {preset.recorded_rule}" in " ".join(
            c.value for c in next(e for e in app.expander if e.label == "How the presets are computed").caption)
        button.click().run()
        assert_no_exception(app)
        assert app.slider(key="explorer_threshold").value == preset.value
        assert f"Applied: {preset.text}, {preset.provenance}." in [c.value for c in app.caption]
        shown = array(chart(app, "confusion_counts")["data"][0]["z"])
        assert np.array_equal(shown, counts_by_hand(test_table, preset.value))


def test_threshold_is_shared_between_pages(app, committed_predictor):
    open_page(app, "threshold", "Threshold explorer")
    app.slider(key="explorer_threshold").set_value(0.123).run()
    open_page(app, "screen", "Screen chest X\u2011rays")
    data = SAMPLES[0].read_bytes()
    upload(app, ("xray.jpeg", data))
    assert app.slider(key="screen_threshold").value == pytest.approx(0.123)
    shown = metric(app, "Label at")
    assert shown.label == "Label at 0.123"
    assert shown.value == label_at(committed_predictor.predict_bytes(data), 0.123)
    open_page(app, "threshold", "Threshold explorer")
    assert app.slider(key="explorer_threshold").value == pytest.approx(0.123)


# ---------------------------------------------------------------- About page


def test_model_card_reports_the_metadata(app, committed_predictor):
    open_page(app, "about", "About this model")
    assert_no_exception(app)
    metadata = committed_predictor.metadata
    test = metadata.test_metrics
    table = app.dataframe[0].value.set_index("metric")
    assert table.loc["ROC AUC", "value"] == pytest.approx(test["auc"])
    low, high = test["intervals_95"]["sensitivity"]
    assert table.loc["Sensitivity (recall)", "95% interval"] == f"{low:.3f} – {high:.3f}"
    assert table.loc["Recall, viral pneumonia", "value"] == pytest.approx(test["recall_virus"])
    hardest = [image for image in app.image if "truly" in image.captions[0]]
    shown_cases = teaching_cases(test["hardest_cases"], read_test_predictions(MODELS_DIR))  # no study film
    assert len(hardest) == len(shown_cases) > 0
    first = shown_cases[0]
    assert hardest[0].captions[0].startswith(first["source"])
    assert format_probability(first["probability"]) in hardest[0].captions[0]
    keys = {e.key for e in app.get("plotly_chart")}
    assert {"history", "reliability"} <= keys
    text = " ".join(m.value for m in app.markdown)
    assert "not a medical device" in text and "10.17632/rscbjbr9sj.2" in text
    assert f"T = {metadata.calibration['temperature']:.3f}" in text  # the model card itself, rendered once


# ---------------------------------------------------------------- a broken model


@pytest.mark.parametrize("page", [("screen", None), ("threshold", "Threshold explorer"), ("about", "About this model")])
def test_missing_model_names_the_fix_on_every_page(tmp_path, monkeypatch, page):
    monkeypatch.setenv("PNEUMONIA_MODEL_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page[1]:
        at._page_hash = calc_hash(page[0])
        at.run()
    assert_no_exception(at)
    assert len(at.error) == 1
    assert "python -m pneumonia train" in at.error[0].value
    assert not at.file_uploader and not at.metric
    assert "not a medical device" in at.sidebar.warning[0].value


def test_corrupt_model_names_the_fix(tmp_path, monkeypatch):
    (tmp_path / "pneumonia_cnn.json").write_text((MODELS_DIR / "pneumonia_cnn.json").read_text())
    (tmp_path / "pneumonia_cnn.keras").write_bytes(b"truncated")
    monkeypatch.setenv("PNEUMONIA_MODEL_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert_no_exception(at)
    assert len(at.error) == 1 and "corrupt" in at.error[0].value
    assert "python -m pneumonia train" in at.error[0].value


# ---------------------------------------------------------------- the pure helpers behind the page


def test_class_percentiles_match_scipy():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    probabilities = np.array([0.1, 0.2, 0.5, 0.5, 0.4, 0.5, 0.9])
    result = class_percentiles(0.5, labels, probabilities)
    assert result["NORMAL"] == pytest.approx(percentileofscore([0.1, 0.2, 0.5, 0.5], 0.5, kind="mean"))
    assert result["PNEUMONIA"] == pytest.approx(percentileofscore([0.4, 0.5, 0.9], 0.5, kind="mean"))


def test_results_table_has_status_and_reason_and_no_score_for_refusals():
    rows = [
        Screening("a.png", "ok", "", 0.5),
        Screening("b.png", "caution", "view LL: lateral", 0.4999),
        Screening("c.png", "refused", "the file is empty"),
    ]
    table = results_table(rows, Threshold.by_hand(0.5))
    assert list(table["label"]) == ["PNEUMONIA", "NORMAL", ""]
    # 0.4999 is NORMAL at 0.5, so it is never shown as "0.500", which would read as PNEUMONIA.
    assert list(displayed_table(table)["probability"]) == ["0.500", "0.4999", ""]
    assert list(table["reason"]) == ["", "view LL: lateral", "the file is empty"]
    csv = results_csv(table).splitlines()
    assert csv[0] == "file,status,probability,label,threshold,reason"
    assert csv[2] == "b.png,caution,0.4999,NORMAL,0.5,view LL: lateral"
    assert csv[3] == "c.png,refused,,,0.5,the file is empty"
    shown = displayed_table(results_table(rows, Threshold.by_hand(0.91083)))
    assert list(shown["threshold"]) == ["0.91083"] * 3  # exactly the threshold applied, as in the CSV
    assert "0.91083" in results_csv(results_table(rows, Threshold.by_hand(0.91083)))
    assert list(shown["probability"]) == ["0.500", "0.500", ""]
    assert [format_probability(p) for p in (0.9995, 0.999, 0.5, 0.001, 0.0004)] == [
        "> 0.999", "0.999", "0.500", "0.001", "< 0.001"
    ]
    assert margin_text(0.4999, 0.5) == "less than 0.001 (below threshold 0.500)"


def test_results_html_shows_four_columns_per_row_and_the_reason_in_full_below():
    rows = [
        Screening("a<b>.png", "ok", "", 0.9995),
        Screening("c.png", "refused", "a colour picture, not an X-ray film: radiographs are grey & <odd>"),
    ]
    html = results_html(displayed_table(results_table(rows, Threshold.by_hand(0.5))))
    header = re.findall(r"<th [^>]*>(.*?)</th>", html)
    assert header == ["file", "status", "label at 0.500", "probability"]  # the threshold once, not per row
    assert re.findall(r'<tr class="(\w+)">', html) == ["result", "result", "reason"]  # no empty reason row
    assert '<td class="col-file" data-row="0" data-col="file">a&lt;b&gt;.png</td>' in html  # escaped
    assert '<td class="col-probability" data-row="0" data-col="probability">&gt; 0.999</td>' in html
    assert ('data-row="1" data-col="reason">a colour picture, not an X-ray film: radiographs are grey &amp; '
            "&lt;odd&gt;</td>") in html  # whole: it wraps, never cut
    assert margin_text(0.75, 0.5) == "+0.250 (above threshold 0.500)"


def test_uploads_samples_choice_and_lime_settings_survive_a_visit_to_another_page(app, committed_predictor):
    app.checkbox(key="show_names").check().run()
    upload(app, ("first.jpeg", SAMPLES[0].read_bytes()), ("second.jpeg", SAMPLES[1].read_bytes()))
    app.multiselect(key="samples").set_value([SAMPLES[2].name]).run()
    app.selectbox(key="explain_image").set_value("second.jpeg").run()
    app.slider(key="lime_segments").set_value(25).run()
    app.slider(key="lime_top_k").set_value(3).run()
    before = [m.value for m in app.metric if m.label == "P(pneumonia)"]
    assert len(before) == 3

    open_page(app, "threshold", "Threshold explorer")
    open_page(app, "screen", "Screen chest X\u2011rays")
    assert_no_exception(app)
    assert [m.value for m in app.metric if m.label == "P(pneumonia)"] == before
    assert list(shown_results(app)["file"]) == ["first.jpeg", "second.jpeg", SAMPLES[2].name]
    assert app.checkbox(key="show_names").value
    assert "Still here from earlier in this session (in memory only): 2 uploaded files" in [
        c.value for c in app.caption]
    assert app.multiselect(key="samples").value == [SAMPLES[2].name]
    assert app.selectbox(key="explain_image").value == "second.jpeg"
    assert (app.slider(key="lime_segments").value, app.slider(key="lime_top_k").value) == (25, 3)
    assert any(c.startswith("LIME (25 superpixels") for image in app.image for c in image.captions)

    app.button(key="forget_uploads").click().run()
    assert list(shown_results(app)["file"]) == [SAMPLES[2].name]


def test_all_reports_come_in_one_zip_built_in_memory_reusing_prepared_ones(app, monkeypatch):
    import io
    import zipfile

    import pneumonia.reports.pdf

    built = []
    monkeypatch.setattr(pneumonia.reports.pdf, "image_report",
                        lambda predictor, item, threshold, *rest, **kw: built.append(item.name) or b"%PDF " + item.name.encode())
    app.checkbox(key="show_names").check().run()
    upload(app, ("a.jpeg", SAMPLES[0].read_bytes()), ("a.png", SAMPLES[1].read_bytes()), ("broken.png", b"\x89PNG no"))
    app.button(key="prepare_0").click().run()  # one card's report, prepared first
    app.button(key="prepare_all_reports").click().run()
    assert_no_exception(app)
    assert built == ["a.jpeg", "a.png", "broken.png"]  # the prepared one is reused, the refused file gets its own
    [button] = [b for b in app.get("download_button") if b.proto.label == "Download all reports (ZIP)"]
    data = app.session_state["all_reports_zip"][1]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["a.jpeg.pdf", "a.png.pdf", "broken.pdf"]  # clashing stems kept apart
        assert archive.read("a.png.pdf") == b"%PDF a.png"


def test_file_names_stay_off_the_page_csv_pdfs_and_zip_unless_asked_for(app, monkeypatch):
    """Issue 30: by default the table, the CSV, each card, each PDF's name and content and the ZIP's entries call a
    film by a pseudonym; "Show file names in reports" brings names back, except one that carries the DICOM's own
    patient name (or is a UID), which stays a pseudonym."""
    import io
    import zipfile

    import pneumonia.reports.pdf

    monkeypatch.setattr(pneumonia.reports.pdf, "image_report",
                        lambda predictor, item, threshold, *rest, **kw: b"%PDF " + item.name.encode())
    good = SAMPLES[0].read_bytes()
    dicom = dicom_bytes(twelve_bit(radiograph_grey(SAMPLES[1])))
    family = PHI["PatientName"].split("^")[0]
    files = [("DOE_JANE_chest.jpeg", good), (f"{family}_chest.dcm", dicom), ("DOE_JANE_chest.jpeg", good)]
    upload(app, *files)
    expected = codes(*[data for _, data in files])
    assert len(set(expected)) == 3  # the same file twice still gets two names
    assert list(shown_results(app)["file"]) == expected
    app.button(key="prepare_0").click().run()
    app.button(key="prepare_all_reports").click().run()
    assert_no_exception(app)
    offered = downloads(app)
    assert f"{expected[0]}_report.pdf" in offered and offered[f"{expected[0]}_report.pdf"] == f"%PDF {expected[0]}".encode()
    table = pd.read_csv(io.BytesIO(offered["pneumonia_screening.csv"]))
    assert list(table["file"]) == expected
    with zipfile.ZipFile(io.BytesIO(offered["pneumonia_reports.zip"])) as archive:
        assert archive.namelist() == [f"{code}.pdf" for code in expected]
    page = page_text(app)
    assert "DOE_JANE" not in page and f"{family}_chest" not in page

    app.checkbox(key="show_names").check().run()
    assert_no_exception(app)
    assert list(shown_results(app)["file"]) == ["DOE_JANE_chest.jpeg", expected[1], "DOE_JANE_chest.jpeg"]
    app.button(key="prepare_0").click().run()
    offered = downloads(app)
    assert offered["DOE_JANE_chest_report.pdf"] == b"%PDF DOE_JANE_chest.jpeg"
    assert list(pd.read_csv(io.BytesIO(offered["pneumonia_screening.csv"]))["file"]) == [
        "DOE_JANE_chest.jpeg", expected[1], "DOE_JANE_chest.jpeg"]
    assert f"{family}_chest" not in page_text(app)
