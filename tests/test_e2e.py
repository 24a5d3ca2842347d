"""The real app in a real browser: `streamlit run app.py` driven by headless Debian Chromium via Playwright.

Set SAVE_SCREENSHOTS=1 to refresh every screenshot the README embeds in docs/screenshots/ and, once all of them
are new, docs/screenshots/MODEL_SHA256 (the SHA-256 of the model they show); otherwise they go to a tmp dir.
The fast tests at the bottom fail when that file names another model than models/pneumonia_cnn.json, or when an
image the README references is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumonia.config import METADATA_FILENAME, MODELS_DIR, TEST_PREDICTIONS_FILENAME
from pneumonia.formatting import format_probability

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "assets" / "samples").glob("*.jpeg"))
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
START_TIMEOUT_S = 120
SCREENSHOTS = REPO / "docs" / "screenshots"
SCREENSHOT_MODEL_FILE = SCREENSHOTS / "MODEL_SHA256"
SCREENSHOTS_COMMAND = (
    "SAVE_SCREENSHOTS=1 python -m pytest tests/test_e2e.py -k 'upload_then_move or reader_mode_walkthrough'"
)
UI_TIMEOUT_MS = 120_000  # first prediction + LIME on a busy 2-core machine

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(env: dict, stdout, stderr=subprocess.STDOUT, options: tuple[str, ...] = ()):
    """`streamlit run app.py` on a free port, headless, with these extra options; yields its URL once
    /_stcore/health answers ok, and stops it afterwards. One way to start the app for every browser test."""
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port := _free_port()),
         "--server.headless", "true", *options],
        cwd=REPO, env=env, stdout=stdout, stderr=stderr,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start; see {getattr(stderr, 'name', stdout.name)}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server_url(sync_playwright, tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "PNEUMONIA_MODEL_DIR"}
    with (tmp_path_factory.mktemp("streamlit") / "server.log").open("w") as log, \
            running_app(env, log, options=("--browser.gatherUsageStats", "false")) as url:
        yield url


@pytest.fixture(scope="module")
def page(sync_playwright, server_url):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        yield context.new_page()
        browser.close()


def _committed_model_sha256() -> str:
    import json

    return json.loads((MODELS_DIR / METADATA_FILENAME).read_text())["model_sha256"]


def _readme_screenshots() -> list[Path]:
    """Every docs/screenshots/ image README.md embeds or links to."""
    text = (REPO / "README.md").read_text()
    return [REPO / name for name in dict.fromkeys(re.findall(r"\]\((docs/screenshots/[^)\s]+\.png)\)", text))]


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    if os.environ.get("SAVE_SCREENSHOTS") != "1":
        yield tmp_path_factory.mktemp("screenshots")
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    started = time.time() - 1
    yield SCREENSHOTS
    # Name the model only once every screenshot the README shows was taken with it in this run.
    stale = [p.name for p in _readme_screenshots() if not p.is_file() or p.stat().st_mtime < started]
    if stale:
        import warnings

        warnings.warn(f"{SCREENSHOT_MODEL_FILE.name} left as it was: not retaken in this run: {stale}", stacklevel=1)
    else:
        SCREENSHOT_MODEL_FILE.write_text(_committed_model_sha256() + "\n")


def _screenshot(page, path: Path, width: int = 1400) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it first (once its height
    has held still for a second: a page draws section by section, and an early measure cuts off the rest)."""
    measure = (
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stMainBlockContainer]')]"
        ".map(e => e.scrollHeight), document.body.scrollHeight)"
    )
    height, deadline = page.evaluate(measure), time.monotonic() + 60
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        height, before = page.evaluate(measure), height
        if height == before:
            break
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(800)
    # The sidebar (off screen when collapsed) names the model the picture shows: it must be the committed one.
    sha = _committed_model_sha256()[:12]
    try:
        page.wait_for_function(
            "sha => (document.querySelector('[data-testid=stSidebar]')?.textContent || '').includes(sha)",
            arg=sha, timeout=UI_TIMEOUT_MS,
        )
    except Exception:  # playwright's TimeoutError
        sidebar = page.locator("[data-testid=stSidebar]").text_content()
        pytest.fail(f"{path.name}: the sidebar does not name the committed model {sha}: {sidebar!r}")
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1000})


def _wait_idle(page) -> None:
    """Until Streamlit's 'Running…' indicator has gone."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=UI_TIMEOUT_MS
    )


def _tally(count: int) -> str:
    """Reader mode's tally line, as a reader reads it ("1 case", "2 cases")."""
    return f"Your tally: {count} case{'' if count == 1 else 's'} read"


def _read_reader_case(page, case: int, call: str) -> None:
    """Reader mode: read case `case` and wait until its reveal is the page's settled state. Each wait is on text
    only this run can show (the case number, then the tally's new count): while a run is under way the last run's
    elements stay on the page, so a stale "Truth" or "Next case" would let the next click land on the wrong run
    and be lost (seen once in CI, stuck on "Case 3 of" for two minutes)."""
    page.get_by_text(f"Case {case} of", exact=False).wait_for(timeout=UI_TIMEOUT_MS)
    # .first: the tally moves up when the reveal goes, so for a moment the last run's copy stands beside this one's
    page.get_by_text(_tally(case - 1)).first.wait_for(timeout=UI_TIMEOUT_MS)
    _wait_idle(page)
    page.locator("[data-testid=stRadio] label", has_text=call).first.click()
    page.get_by_role("button", name="Commit and reveal").click()
    page.get_by_text(_tally(case)).first.wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_role("button", name="Next case").first.wait_for(timeout=UI_TIMEOUT_MS)
    _wait_idle(page)


def _counts(text: str) -> tuple[int, int, int, int]:
    tn, fp, fn, tp = (int(v) for v in re.search(r"TN (\d+), FP (\d+), FN (\d+), TP (\d+)", text).groups())
    return tn, fp, fn, tp


def _counts_near(threshold: float) -> set[tuple[int, int, int, int]]:
    """Counts by hand from the committed test predictions for any threshold the 3-decimal display can stand for."""
    table = pd.read_csv(MODELS_DIR / TEST_PREDICTIONS_FILENAME)
    scores = table["probability"].to_numpy()
    truth = table["label"].to_numpy() == 1
    low, high = threshold - 5e-4, threshold + 5e-4
    candidates = [low, high, *scores[(scores >= low) & (scores <= high)]]
    found = set()
    for t in candidates:
        called = scores >= t
        found.add((int(np.sum(~truth & ~called)), int(np.sum(~truth & called)), int(np.sum(truth & ~called)),
                   int(np.sum(truth & called))))
    return found


def _awkward_files(folder: Path) -> list[Path]:
    """A DICOM with no extension (MONOCHROME1, 12-bit) and a colour photograph the gate must refuse."""
    import skimage.data
    from inputs import dicom_bytes, radiograph_grey, twelve_bit
    from PIL import Image

    dicom = folder / "scan_without_extension"
    dicom.write_bytes(dicom_bytes(4095 - twelve_bit(radiograph_grey(SAMPLES[2])), photometric="MONOCHROME1"))
    photo = folder / "cat.jpg"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    return [dicom, photo]


def _cut_off(page) -> list[str]:
    """Texts of labels, metric values, alerts and buttons on screen whose content is wider than their box
    (a collapsed sidebar lies off screen and is skipped)."""
    return page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=stMetricValue], [data-testid=stMetricLabel], "
        "[data-testid=stAlertContentError], [data-testid=stAlertContentWarning], button p')]"
        ".filter(e => { const r = e.getBoundingClientRect(); return e.offsetParent !== null && r.right > 0 "
        "&& r.left < window.innerWidth && e.scrollWidth > e.clientWidth + 1; }).map(e => e.innerText)"
    )


def test_upload_then_move_threshold_in_a_browser(page, server_url, shots, committed_predictor, tmp_path):
    files = [*SAMPLES, *_awkward_files(tmp_path)]
    page.goto(server_url, wait_until="networkidle")
    page.locator("input[type=file]").first.wait_for(state="attached", timeout=UI_TIMEOUT_MS)
    page.locator("input[type=file]").first.set_input_files([str(p) for p in files])

    screened = committed_predictor.screen([(p.name, p) for p in files])
    assert [r.status for r in screened] == ["ok"] * (len(files) - 1) + ["refused"]
    expected = [format_probability(r.probability) for r in screened if r.probability is not None]
    probabilities = page.locator("[data-testid=stMetric]", has_text="P(pneumonia)")
    probabilities.nth(len(expected) - 1).wait_for(timeout=UI_TIMEOUT_MS)
    shown = [m.locator("[data-testid=stMetricValue]").inner_text().strip() for m in probabilities.all()]
    assert shown == expected
    page.get_by_text(f"Not scored: {screened[-1].reason}").wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("DICOM: modality DX, view PA, body part CHEST, age 1–5 years").wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("Download results as CSV").wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("Grad-CAM: evidence", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("LIME (", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    _wait_idle(page)
    _screenshot(page, shots / "screen.png")
    report = _download(page, _prepared_report(page))
    assert f"P(pneumonia): {expected[0]}" in report and "Not a medical device" in report
    import hashlib

    code = f"{hashlib.sha256(files[0].read_bytes()).hexdigest()[:8]}_1"  # no file name in a report by default
    assert f"File: {code}" in report and files[0].stem not in report
    page.set_viewport_size({"width": 800, "height": 1000})
    page.wait_for_timeout(1500)
    assert _cut_off(page) == []
    _screenshot(page, shots / "screen_800.png", width=800)
    page.set_viewport_size({"width": 1400, "height": 1000})

    page.get_by_role("link", name=re.compile("Threshold explorer")).click()
    caption = page.get_by_text("Confusion matrix at", exact=False).first
    caption.wait_for(timeout=UI_TIMEOUT_MS)
    before = caption.inner_text()
    assert f"at {committed_predictor.default_threshold.text}:" in before

    threshold_slider = page.locator("[data-testid=stSlider]", has_text="Decision threshold on P(pneumonia)")
    slider = threshold_slider.get_by_role("slider")
    slider.focus()
    for _ in range(40):
        page.keyboard.press("ArrowLeft")
    # Streamlit reruns on intermediate values too: wait until the caption shows the slider's final value.
    page.wait_for_function(
        "() => { const v = Number([...document.querySelectorAll('[data-testid=stSlider]')].find(e => e.innerText"
        ".includes('Decision threshold')).querySelector('input[type=range]').value).toFixed(3);"
        " return !document.querySelector('[data-testid=stStatusWidget]') && [...document.querySelectorAll('p')]"
        ".some(p => p.innerText.startsWith('Confusion matrix at ' + v + ':')); }",
        timeout=UI_TIMEOUT_MS,
    )
    after = page.get_by_text("Confusion matrix at", exact=False).first.inner_text()
    shown = float(re.search(r"at ([0-9.]+):", after).group(1))
    assert shown == pytest.approx(float(slider.input_value()), abs=1e-3)
    assert shown < committed_predictor.default_threshold.value
    assert _counts(after) in _counts_near(shown)
    assert _counts(after) != _counts(before)
    _screenshot(page, shots / "threshold.png")

    page.get_by_role("link", name=re.compile("About")).click()
    page.get_by_text("Hardest test cases", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("Intended use.", exact=False).last.wait_for(timeout=UI_TIMEOUT_MS)  # the page's last section (the card in its expander has one too)
    _wait_idle(page)
    _screenshot(page, shots / "about.png")


def _download(page, button) -> str:
    """Click a download button and return the text of the PDF it delivers."""
    import io

    from pypdf import PdfReader

    with page.expect_download(timeout=UI_TIMEOUT_MS) as download:
        button.click()
    data = Path(download.value.path()).read_bytes()
    return " ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


def _prepared_report(page):
    """Ask the first card for its report; its download button once the PDF is built."""
    page.get_by_role("button", name=re.compile("Prepare report")).first.click()
    button = page.get_by_role("button", name=re.compile("Download report")).first
    button.wait_for(timeout=UI_TIMEOUT_MS)
    return button


def test_a_report_click_racing_a_threshold_move_still_downloads(page, server_url):
    """A move of the threshold reruns the cards; a click on the report at that very moment must still give a
    PDF (a button that built its file on click lost its file id to the rerun: no download, nothing said)."""
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(server_url, wait_until="networkidle")
    page.locator("input[type=file]").first.set_input_files([str(SAMPLES[0])])
    slider = page.locator("[data-testid=stSlider]", has_text="Decision threshold on P(pneumonia)").get_by_role("slider")
    slider.wait_for(timeout=UI_TIMEOUT_MS)
    for key in ("ArrowRight", "ArrowLeft"):  # back on the default's value, now a threshold set by hand
        slider.focus()
        page.keyboard.press(key)
        _wait_idle(page)
    _prepared_report(page)
    slider.focus()
    page.keyboard.press("ArrowRight")
    _wait_idle(page)
    button = _prepared_report(page)  # a report at each of the two thresholds the clicks race between
    pdfs = []
    for move in range(20):
        slider.focus()
        with page.expect_download(timeout=20_000) as download:  # the PDF is built: it comes at once or never
            page.keyboard.press("ArrowLeft" if move % 2 == 0 else "ArrowRight")
            page.wait_for_timeout(15 * move)  # 0 to 285 ms: the click lands before, during and after the rerun
            button.click()
        pdfs.append(Path(download.value.path()).read_bytes()[:5])
        _wait_idle(page)
    assert pdfs == [b"%PDF-"] * 20


def test_reader_mode_walkthrough_and_narrow_screens(page, server_url, shots, committed_predictor):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server_url}/reader", wait_until="networkidle")
    page.get_by_text("Case 1 of 416", exact=False).wait_for(timeout=UI_TIMEOUT_MS)  # the teaching pool
    for case, call in enumerate(("PNEUMONIA", "NORMAL"), start=1):
        _read_reader_case(page, case, call)
        page.get_by_text("Truth", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
        page.get_by_text("Grad-CAM: evidence", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
        if case == 1:
            page.get_by_role("button", name="Next case").click()
    page.get_by_text("Your tally: 2 cases read").wait_for(timeout=UI_TIMEOUT_MS)
    _screenshot(page, shots / "reader.png")

    # Issue 30: a reload is a new session with nothing in it; the code in the address brings back the place and tally
    assert "r=" in page.url, page.url
    page.reload(wait_until="networkidle")
    page.get_by_text("Case 2 of 416", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("Your tally: 2 cases read").first.wait_for(timeout=UI_TIMEOUT_MS)
    _wait_idle(page)
    assert page.get_by_text("Your tally: 0 cases read").count() == 0

    for url_path in ("", "threshold", "reader", "about"):
        page.set_viewport_size({"width": 390, "height": 900})
        page.goto(f"{server_url}/{url_path}", wait_until="networkidle")
        page.get_by_role("heading", level=1).first.wait_for(timeout=UI_TIMEOUT_MS)
        _wait_idle(page)
        page.wait_for_timeout(1500)
        assert _cut_off(page) == [], url_path
        _screenshot(page, shots / f"narrow_{url_path or 'screen'}_390.png", width=390)


def test_readme_screenshots_exist_at_the_project_widths():
    """Every image the README references is there, a PNG, as wide as its name says (1400 px unless _800/_390)."""
    from PIL import Image

    images = _readme_screenshots()
    assert len(images) >= 4, "README.md references no docs/screenshots/ images any more"
    missing = [str(p.relative_to(REPO)) for p in images if not p.is_file()]
    assert missing == [], f"README.md references missing screenshots; regenerate with `{SCREENSHOTS_COMMAND}`"
    for path in images:
        with Image.open(path) as image:
            assert image.format == "PNG", path.name
            width = re.search(r"_(\d+)\.png$", path.name)
            assert image.width == (int(width.group(1)) if width else 1400), path.name


def test_readme_screenshots_show_the_committed_model():
    """docs/screenshots/MODEL_SHA256 is written by the end-to-end test beside the screenshots it takes."""
    assert SCREENSHOT_MODEL_FILE.is_file(), f"no {SCREENSHOT_MODEL_FILE}; regenerate with `{SCREENSHOTS_COMMAND}`"
    shown = SCREENSHOT_MODEL_FILE.read_text().strip()
    committed = _committed_model_sha256()
    assert shown == committed, (
        f"the README screenshots show model {shown[:12]}, the committed model is {committed[:12]} "
        f"({MODELS_DIR / METADATA_FILENAME}); regenerate them with `{SCREENSHOTS_COMMAND}`"
    )
