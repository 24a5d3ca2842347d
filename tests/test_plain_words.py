"""One plain voice: what a clinician reads on the Screen, Threshold, Reader mode and About pages, and in the PDF,
carries no statistics or machine-learning jargon. The names and numbers of statistics may appear only inside an
expander (in the app) or under the report's "How this is computed" heading (in the PDF).

Renders every page with AppTest on the committed model, with a radiograph, a refused photograph and a scored
sample on the Screen page, and one reading revealed in Reader mode.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pypdf
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from pneumonia.config import ASSETS_DIR
from pneumonia.reports.pdf import TECHNICAL_HEADING, image_report

APP = Path(__file__).resolve().parents[1] / "app.py"
SAMPLE = ASSETS_DIR / "samples" / "bacterial_person100_bacteria_475.jpeg"
TIMEOUT = 180

JARGON = [
    r"unusualness", r"features lie far", r"calibration error", r"\bECE\b", r"Jaccard", r"Spearman", r"surrogate",
    r"R²", r"stress-shifted", r"stress copies", r"\bpooled\b", r"max_f1", r"sensitivity_9\d", r"\byouden",
    r"site-derived: site-derived", r"false-alarm units", r"\bqueued\b", r"Platt", r"sigmoid",
    r"\blogits?\b", r"block\d_relu", r"Mahalanobis", r"class-conditional", r"fine detail or noise",
]
"""Every term the issue quotes, and the code names behind them."""

pytestmark = [pytest.mark.integration]


def jargon_in(text: str) -> list[str]:
    return sorted({match.group(0) for term in JARGON for match in re.finditer(term, text, re.IGNORECASE)})


HIDDEN = ("help:", "id:", "form_id:")
"""Proto fields a reader never sees as text: tooltips (opened on purpose, like an expander) and widget ids."""


def visible_text(node, found: list[str]) -> list[str]:
    """The text of every element outside an expander: markdown, captions, alerts, metrics, labels, tables.
    Tooltips (help) are left out like expanders: both are opened on purpose."""
    if getattr(node, "type", None) == "expander":
        return found
    proto = getattr(node, "proto", None)
    if proto is not None and not hasattr(node, "children"):
        if node.type in ("arrow_data_frame", "arrow_table"):
            found.append(node.value.to_string())
        elif node.type != "plotly_chart":
            found.append("\n".join(line for line in str(proto).splitlines() if not line.strip().startswith(HIDDEN)))
    for child in getattr(node, "children", {}).values():
        visible_text(child, found)
    return found


def open_page(monkeypatch, url_path: str) -> AppTest:
    monkeypatch.delenv("PNEUMONIA_MODEL_DIR", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if url_path:  # function pages are addressed by the hash of their url_path; the Screen page is the default
        at._page_hash = calc_hash(url_path)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def assert_plain(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    text = "\n".join(visible_text(at._tree, []))
    assert jargon_in(text) == [], text[:4000]


def photo_png() -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_jargon_list_catches_what_the_issue_quoted():
    quoted = ("unusualness 8.3; refused above 4.1", "expected calibration error 0.162", "mean Jaccard overlap",
              "LIME surrogate fit R²", "validation and its 6 stress-shifted copies, pooled", "max_f1, youden",
              "Stability check queued: 1 ahead", "Platt scaling, sigmoid(logit / T + b)", "block3_relu",
              "class-conditional Mahalanobis distance", "false-alarm units")
    assert all(jargon_in(text) for text in quoted)
    assert jargon_in("Probability of pneumonia 0.93, labelled PNEUMONIA at the threshold 0.911") == []


def test_screen_page_speaks_plainly(monkeypatch):
    at = open_page(monkeypatch, "")
    at.file_uploader[0].set_value([("film.jpeg", SAMPLE.read_bytes(), "image/jpeg"),
                                   ("photo.png", photo_png(), "image/png")])
    at.run()
    assert [c for c in at.caption if "film.jpeg" in str(c.value)] or at.metric, "nothing was scored"
    assert_plain(at)


def test_threshold_page_speaks_plainly(monkeypatch):
    assert_plain(open_page(monkeypatch, "threshold"))


def test_about_page_speaks_plainly(monkeypatch):
    assert_plain(open_page(monkeypatch, "about"))


def test_reader_mode_speaks_plainly_after_a_reveal(monkeypatch):
    at = open_page(monkeypatch, "reader")
    at.radio(key="reader_call").set_value("PNEUMONIA")
    [submit] = [b for b in at.button if b.label == "Commit and reveal"]
    submit.click().run()
    assert_plain(at)


def test_the_report_is_plain_above_its_technical_section(committed_predictor):
    (screening,) = committed_predictor.screen([(SAMPLE.name, SAMPLE)], keep_images=True)
    report = image_report(committed_predictor, screening, committed_predictor.default_threshold)
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(report)).pages)
    plain, heading, technical = " ".join(text.split()).partition(TECHNICAL_HEADING)
    assert heading, "the report has no technical section"
    assert jargon_in(plain) == [], plain
    assert jargon_in(technical), "the technical section lost the statistics' names"
