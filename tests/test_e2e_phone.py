"""Issue 19 in a real browser, at a phone's 390 px and a desktop's 1400 px: nothing a user needs is cut off.

`streamlit run app.py` driven by headless Chromium (the fixtures and helpers of test_e2e.py). Every check reads
element bounding boxes: each results row shows file, status, label and probability inside the viewport, the
reason wraps instead of being cut, the reader tally shows every count, every page carries the disclaimer in its
body and a title not broken inside a word, the reader's point on the ROC is neither clipped nor under the legend,
and the icon array stays an array of separate, square icons. Screenshots of each page at both widths go to
PHONE_SHOTS (default /tmp/phone_shots). The server's own output is kept apart, and the last test checks that a
start on a machine without a GPU printed only Streamlit's lines.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import pytest
from test_e2e import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SAMPLES,
    UI_TIMEOUT_MS,
    _awkward_files,
    _read_reader_case,
    _screenshot,
    _wait_idle,
    running_app,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

WIDTHS = (390, 1400)
SHOTS = Path(os.environ.get("PHONE_SHOTS", "/tmp/phone_shots"))
DISCLAIMER = "not a medical device"
NOISE = (
    "cuInit",
    "absl",
    "oneDNN",
    "cudart",
    "cuda drivers",
    "TF_ENABLE_ONEDNN_OPTS",
    "missing ScriptRunContext",
)
"""Lines a quiet start must not print: TensorFlow's start-up chatter and Streamlit's off-thread warning."""


@pytest.fixture(scope="module")
def server(sync_playwright, tmp_path_factory):
    """The app on a free port, its stdout and stderr in two files, as `make app` starts it (minus the port)."""
    folder = tmp_path_factory.mktemp("phone_server")
    env = {k: v for k, v in os.environ.items() if k not in ("PNEUMONIA_MODEL_DIR", "PNEUMONIA_VERBOSE")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as on a fresh shell
    with (folder / "stdout.log").open("w") as out, (folder / "stderr.log").open("w") as err, \
            running_app(env, out, err) as url:
        yield {"url": url, "stdout": Path(out.name), "stderr": Path(err.name)}


@pytest.fixture(scope="module")
def page(sync_playwright, server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_context(viewport={"width": WIDTHS[0], "height": 900}).new_page()
        browser.close()


# ---------------------------------------------------------------- measuring in the page

BOX = "e => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, " \
      "bottom: r.bottom, width: r.width, height: r.height, scroll: e.scrollWidth, client: e.clientWidth}; }"

WORDS_BROKEN = """e => {
  const walker = document.createTreeWalker(e, NodeFilter.SHOW_TEXT), broken = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const m of node.textContent.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (lines.size > 1) broken.push(m[0]);
    }
  }
  return broken;
}"""


CLIPPED = """points => points.filter(p => {
  for (let e = p; e && e.tagName !== 'svg'; e = e.parentElement) {
    const clip = e.getAttribute('clip-path') || getComputedStyle(e).clipPath;
    if (clip && clip !== 'none') return true;
  }
  return false;
}).map(p => p.getAttribute('transform'))"""


def boxes(locator) -> list[dict]:
    return [element.evaluate(BOX) for element in locator.all()]


def inside(box: dict, width: int) -> bool:
    """Whole, in the viewport's width, and not wider than its own box (nothing cut or scrolled sideways)."""
    return box["width"] > 0 and box["left"] >= -0.5 and box["right"] <= width + 0.5 and box["scroll"] <= box["client"] + 1


def overlaps(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def open_at(page, url: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(url, wait_until="networkidle")
    page.get_by_role("heading", level=1).first.wait_for(timeout=UI_TIMEOUT_MS)


def relayout(page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_timeout(1500)  # Streamlit and plotly redraw on resize


def assert_head_of_page(page, width: int, where: str) -> None:
    """The title is whole words on each line, and the disclaimer is in the page body, in view and whole."""
    title = page.get_by_role("heading", level=1).first
    assert title.evaluate(WORDS_BROKEN) == [], f"{where} at {width} px: title broken inside a word"
    disclaimer = page.locator("[data-testid=stMain] .st-key-disclaimer").first
    disclaimer.wait_for(timeout=UI_TIMEOUT_MS)
    assert DISCLAIMER in disclaimer.inner_text().lower(), where
    assert disclaimer.is_visible() and inside(disclaimer.evaluate(BOX), width), f"{where} at {width} px: disclaimer"


def shoot(page, name: str, width: int) -> None:
    _screenshot(page, SHOTS / f"{name}_{width}.png", width=width)


# ---------------------------------------------------------------- the pages


def test_screen_rows_show_file_status_label_and_probability_at_both_widths(page, server, tmp_path):
    files = [*SAMPLES[:2], _awkward_files(tmp_path)[1]]  # two films and a photo the gate refuses, with a reason
    open_at(page, server["url"], WIDTHS[0])
    page.locator("input[type=file]").first.set_input_files([str(p) for p in files])
    rows = page.locator("table.pneumonia-results tr.result")
    rows.nth(len(files) - 1).wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("Grad-CAM: evidence", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    _wait_idle(page)
    for width in WIDTHS:
        relayout(page, width)
        assert_head_of_page(page, width, "Screen")
        assert rows.count() == len(files)
        for number in range(len(files)):
            for column in ("file", "status", "label", "probability"):
                cell = page.locator(f'table.pneumonia-results td[data-row="{number}"][data-col="{column}"]')
                assert inside(cell.evaluate(BOX), width), (width, number, column)
                # a pseudonym (the default; a file name may wrap anywhere), a word, a label or a number never wraps
                assert cell.evaluate(WORDS_BROKEN) == [], (width, number, column)
        reasons = page.locator("table.pneumonia-results td[data-col=reason]")
        assert reasons.count() >= 1  # the photo's
        for box in boxes(reasons):
            assert inside(box, width) and box["height"] > 0, (width, "reason cut off", box)
        visible = page.locator("[data-testid=stMain]").inner_text()  # the upload box's list included (issue 30)
        assert not [p.name for p in files if p.name in visible]
        chips = page.locator("[data-testid=stFileChipName]")
        assert chips.count() == len(files)
        assert {c.evaluate("e => getComputedStyle(e, '::before').content") for c in chips.all()} == {'"name hidden"'}
        shown = page.locator('table.pneumonia-results td[data-col="file"]').all_inner_texts()
        assert shown == [f"{hashlib.sha256(p.read_bytes()).hexdigest()[:8]}_{i}" for i, p in enumerate(files, 1)]
        shoot(page, "screen", width)


def test_threshold_page_icon_array_stays_separate_square_icons(page, server):
    for width in WIDTHS:
        open_at(page, f"{server['url']}/threshold", width)
        icons = page.locator(".nf-grid i")
        icons.nth(999).wait_for(state="attached", timeout=UI_TIMEOUT_MS)
        _wait_idle(page)
        assert_head_of_page(page, width, "Threshold explorer")
        assert icons.count() == 1000
        grid = page.locator(".nf-grid").evaluate(BOX)
        assert inside(grid, width)
        first, second = icons.nth(0).evaluate(BOX), icons.nth(1).evaluate(BOX)
        assert first["width"] >= 4 and abs(first["width"] - first["height"]) <= 1, (width, first)
        assert second["left"] >= first["right"], "icons run together"
        tops = page.evaluate("() => [...document.querySelectorAll('.nf-grid i')].map(e => e.getBoundingClientRect().top)")
        columns = tops.count(tops[0])
        assert (columns == 40) if width == 1400 else (8 <= columns < 40), (width, columns)
        last = icons.nth(999).evaluate(BOX)
        assert inside(last, width) and abs(last["width"] - last["height"]) <= 1
        shoot(page, "threshold", width)


def read_cases(page, calls: list[str]) -> None:
    for case, call in enumerate(calls, start=1):
        _read_reader_case(page, case, call)
        page.get_by_text("Truth", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
        if case < len(calls):
            page.get_by_role("button", name="Next case").click()


def test_reader_tally_and_roc_at_both_widths(page, server):
    open_at(page, f"{server['url']}/reader", WIDTHS[0])
    read_cases(page, ["PNEUMONIA"] * 3)  # every case called PNEUMONIA: the reader's point sits at x = 1
    page.get_by_text("Your tally: 3 cases read").wait_for(timeout=UI_TIMEOUT_MS)
    roc = page.locator(".js-plotly-plot", has=page.locator(".gtitle", has_text="Reader vs model"))
    roc.locator(".legend .bg").first.wait_for(state="attached", timeout=UI_TIMEOUT_MS)
    _wait_idle(page)
    for width in WIDTHS:
        relayout(page, width)
        assert_head_of_page(page, width, "Reader mode")
        table = page.locator("[data-testid=stMain] [data-testid=stTable]").last
        cells = table.locator("th, td")
        assert cells.count() == 3 * 8  # a header row and 7 measures, for the reader and the model
        assert table.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
        for box in boxes(cells):
            assert inside(box, width), (width, box)
        counts = table.locator("tbody tr").all_inner_texts()
        assert [row.split()[0] for row in counts] == ["sensitivity", "specificity", "accuracy", "TP", "FP", "FN", "TN"]
        plot_area = roc.locator(".nsewdrag").first.evaluate(BOX)
        legend = roc.locator(".legend .bg").first.evaluate(BOX)
        points = boxes(roc.locator(".scatterlayer .point"))
        assert len(points) >= 2  # the model's point and the reader's (and the reader's curve, if confident)
        for point in points:
            assert not overlaps(point, legend), (width, "a legend covers a point", point, legend)
            middle = ((point["left"] + point["right"]) / 2, (point["top"] + point["bottom"]) / 2)
            assert plot_area["left"] <= middle[0] <= plot_area["right"], (width, point, plot_area)
            assert plot_area["top"] <= middle[1] <= plot_area["bottom"], (width, point, plot_area)
        clipped = roc.locator(".scatterlayer .point").evaluate_all(CLIPPED)
        assert clipped == [], (width, "points drawn under a clip path (cut at the plot's edge)", clipped)
        reader = roc.locator(".scatterlayer .trace").last.locator(".point").evaluate(BOX)  # the star, drawn last
        assert reader["width"] >= 10 and reader["right"] > plot_area["right"] - 0.2 * plot_area["width"], (
            width, "the reader who called every case PNEUMONIA sits at x = 1", reader, plot_area)
        shoot(page, "reader", width)


@pytest.mark.parametrize("url_path, name", [("about", "about"), ("study", "study")])
def test_every_other_page_carries_the_disclaimer_and_a_whole_title(page, server, url_path, name):
    for width in WIDTHS:
        open_at(page, f"{server['url']}/{url_path}", width)
        _wait_idle(page)
        assert_head_of_page(page, width, name)
        shoot(page, name, width)


def test_a_start_without_a_gpu_prints_only_streamlits_lines(page, server):
    """Runs last: by now every page was drawn and the model loaded (the sidebar names it), so TensorFlow's
    import and first device query are behind us. A test run alone opens a page itself."""
    open_at(page, server["url"], WIDTHS[1])
    page.wait_for_function(
        "() => (document.querySelector('[data-testid=stSidebar]')?.textContent || '').includes('SHA-256')",
        timeout=UI_TIMEOUT_MS,
    )
    time.sleep(2)
    stderr, stdout = server["stderr"].read_text(), server["stdout"].read_text()
    noisy = [line for line in (stderr + stdout).splitlines() if any(word in line for word in NOISE)]
    assert noisy == [], "\n".join(noisy)
    assert stderr.strip() == "", stderr
    assert re.search(r"You can now view your Streamlit app in your browser", stdout), stdout


PAGES = {"screen": "Screen chest X", "threshold": "Threshold explorer", "reader": "Reader mode",
         "study": "Reader study", "about": "About"}


def test_every_page_opens_from_its_own_address(page, server):
    """Issue 30: opening /screen directly showed a "Page not found" dialog. Every page's address opens that page,
    with no such dialog; the Screen page at / too."""
    for url_path, title in {"": "Screen chest X", **PAGES}.items():
        open_at(page, f"{server['url']}/{url_path}", WIDTHS[0])
        _wait_idle(page)
        assert page.get_by_role("heading", level=1).first.inner_text().startswith(title), url_path
        assert page.get_by_text("Page not found").count() == 0, url_path
        assert page.get_by_role("dialog").count() == 0, url_path
        if url_path in ("", "screen"):
            assert page.locator("[data-testid=stFileUploader]").count() == 1


TOOLBARS = ".modebar-container, .modebar, [data-testid=stElementToolbar]"


def test_no_chart_toolbar_covers_a_title_on_a_phone(page, server):
    """Issue 30: at 390 px plotly's toolbar (shown on hover or touch) covered chart titles. On the Threshold
    explorer, the page with most charts, each titled chart is hovered and its toolbars must miss its title."""
    for width in WIDTHS:
        open_at(page, f"{server['url']}/threshold", width)
        charts = page.locator(".js-plotly-plot", has=page.locator(".gtitle"))
        charts.first.wait_for(timeout=UI_TIMEOUT_MS)
        _wait_idle(page)
        assert charts.count() >= 4
        for index in range(charts.count()):
            chart = charts.nth(index)
            chart.scroll_into_view_if_needed()
            chart.hover()
            page.wait_for_timeout(300)
            title = chart.locator(".gtitle").first.evaluate(BOX)
            element = chart.locator("xpath=ancestor::*[@data-testid='stElementContainer'][1]")
            bars = [b for b in boxes(chart.locator(".modebar")) + boxes(element.locator(TOOLBARS)) if b["width"] > 0]
            assert bars, (width, index, "no toolbar showed on hover")
            for bar in bars:
                assert not overlaps(bar, title), (width, index, "a toolbar covers the title", bar, title)
        shoot(page, "threshold_toolbar", width)
