"""How responsive the app is, measured in one run on this machine with the committed model.

    .venv/bin/python benchmarks/bench_app.py

Prints a markdown table and writes it to docs/app_benchmark.md. Server-side times come from
Streamlit's AppTest (the whole script, so an upper bound on a fragment-only rerun in the browser).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from live_app import CHROMIUM, CHROMIUM_ARGS, PROBABILITY, ProtocolSession, running_server  # noqa: E402

from pneumonia.config import ASSETS_DIR, MODELS_DIR  # noqa: E402

REPEATS = 7
START_REPEATS = 3  # cold server starts, each measured once; the table gives their median
SAMPLES = sorted((ASSETS_DIR / "samples").glob("*.jpeg"))
COLD_START = """
import json, sys, time
t0 = time.perf_counter()
from pneumonia.screening.predictor import load_predictor
predictor = load_predictor(sys.argv[1])
t1 = time.perf_counter()
predictor.warm_up()
t2 = time.perf_counter()
predictor.predict_bytes(open(sys.argv[2], "rb").read())
t3 = time.perf_counter()
print(json.dumps({"load": t1 - t0, "warm_up": t2 - t1, "first": t3 - t2, "total": t3 - t0}))
"""


def browser_start() -> dict[str, float]:
    """A cold `streamlit run`, then one Chromium visit: seconds until the page is usable (title, disclaimer,
    uploader and samples drawn) from the first visit, and until the first score from the server's launch."""
    import tempfile

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch, running_server(Path(scratch) / "server.log") as server:
        healthy = server.wait_healthy()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            visit = time.perf_counter()
            page.goto(server.url, wait_until="commit")
            for locator in (
                page.get_by_role("heading", name="Screen chest X\u2011rays"),
                page.get_by_text("Not a medical device", exact=False).first,
                page.get_by_text("try bundled sample X-rays", exact=False),
            ):
                locator.wait_for(timeout=120_000)
            page.locator("input[type=file]").first.wait_for(state="attached", timeout=120_000)
            usable = time.perf_counter() - visit
            page.locator("input[type=file]").first.set_input_files(str(SAMPLES[0]))
            page.locator(PROBABILITY).first.wait_for(timeout=120_000)
            first_score = time.perf_counter() - server.started
            browser.close()
    return {"healthy": healthy, "usable": usable, "first_score": first_score}


def protocol_start() -> float:
    """A cold `streamlit run`, then one session over Streamlit's websocket protocol (no browser, so nothing
    renders on the 2 cores): seconds from the server's launch to the first score of an upload made as soon
    as the page has been sent."""
    import asyncio
    import tempfile

    async def visit(server) -> float:
        session = ProtocolSession(server.url)
        began = time.perf_counter()
        task = asyncio.create_task(session.open())
        await session.wait_for(lambda: session.uploader_id)
        await session.upload(SAMPLES[0])
        await session.wait_for(lambda: session.shown_since(began, "P(pneumonia)"))
        scored = time.perf_counter() - server.started
        await task
        await session.close()
        return scored

    with tempfile.TemporaryDirectory() as scratch, running_server(Path(scratch) / "server.log") as server:
        server.wait_healthy()
        return asyncio.run(visit(server))


def median_seconds(action, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_start() -> dict[str, float]:
    """A fresh interpreter: imports, loading and hash check, warm-up, then the first real prediction."""
    output = subprocess.run(
        [sys.executable, "-c", COLD_START, str(MODELS_DIR), str(SAMPLES[0])],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def threshold_reruns() -> dict[str, float]:
    """Rerun times of the threshold page with and without a slider move, and of the Screen page after one."""
    from streamlit.testing.v1 import AppTest
    from streamlit.util import calc_hash

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    at._page_hash = calc_hash("threshold")  # AppTest.switch_page only reaches file-based pages
    at.run()
    values = iter([0.2, 0.8] * REPEATS)
    changed = median_seconds(lambda: at.slider(key="explorer_threshold").set_value(next(values)).run())
    baseline = median_seconds(lambda: at.run())

    screen = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    screen.file_uploader[0].set_value([(p.name, p.read_bytes(), "image/jpeg") for p in SAMPLES])
    start = time.perf_counter()
    screen.run()
    first_upload = time.perf_counter() - start
    values = iter([0.2, 0.8] * REPEATS)
    screen_changed = median_seconds(lambda: screen.slider(key="screen_threshold").set_value(next(values)).run())
    trivial = AppTest.from_string("import streamlit as st\nst.write('hi')").run()
    harness = median_seconds(lambda: trivial.run())
    assert not at.exception and not screen.exception
    return {"changed": changed, "baseline": baseline, "screen_changed": screen_changed, "first_upload": first_upload,
            "harness": harness}


def fragment_work() -> float:
    """What the threshold fragment computes on a slider move: metrics, confusion matrix, four figures as JSON."""
    from pneumonia.decision.metrics import confusion_at, threshold_metrics
    from pneumonia.io.bundle import read_test_predictions
    from pneumonia.reports import plots

    test = read_test_predictions(MODELS_DIR)
    thresholds = iter([0.2, 0.8] * 20)

    def work() -> None:
        t = next(thresholds)
        threshold_metrics(test.labels, test.probabilities, t)
        counts = confusion_at(test.labels, test.probabilities, t)
        for figure in (
            plots.confusion_heatmap(counts),
            plots.confusion_heatmap(counts, normalise=True),
            plots.roc_figure(test.labels, test.probabilities, t),
            plots.pr_figure(test.labels, test.probabilities, t),
        ):
            figure.to_json()

    work()  # plotly builds its validators on first use
    return median_seconds(work, repeats=15)


def explanation_times() -> dict[str, float]:
    from pneumonia.explain.maps import LimeSettings, explain_lime, grad_cam
    from pneumonia.screening.predictor import load_predictor

    predictor = load_predictor(MODELS_DIR)
    predictor.warm_up()
    images = [predictor.decode(p.read_bytes()) for p in SAMPLES]
    warm = median_seconds(lambda: predictor.predict_bytes(SAMPLES[0].read_bytes()), repeats=21)
    lime = []
    for image in images:
        start = time.perf_counter()
        explain_lime(predictor, image, LimeSettings())
        lime.append(time.perf_counter() - start)
    start = time.perf_counter()
    grad_cam(predictor, images[0])
    cam_first = time.perf_counter() - start
    cam = statistics.median(median_seconds(lambda: grad_cam(predictor, image), repeats=5) for image in images)
    return {"warm": warm, "lime": statistics.median(lime), "cam_first": cam_first, "cam": cam,
            "settings": LimeSettings(), "device": predictor.device}


def main() -> None:
    starts = [browser_start() for _ in range(START_REPEATS)]
    start = {key: statistics.median(run[key] for run in starts) for key in starts[0]}
    protocol = statistics.median(protocol_start() for _ in range(START_REPEATS))
    cold = cold_start()
    explain = explanation_times()
    reruns = threshold_reruns()
    fragment = fragment_work()
    settings = explain["settings"]
    ms = lambda seconds: f"{seconds * 1000:,.0f} ms"  # noqa: E731
    met = lambda ok: "met" if ok else "missed"  # noqa: E731
    rows = [
        (f"Browser, cold server: launch to health check answering (median of {START_REPEATS} starts)",
         ms(start["healthy"])),
        ("Browser, cold server: first visit to a usable page (title, disclaimer, uploader, samples)",
         f"{ms(start['usable'])}; target <= 3 s: {met(start['usable'] <= 3)}"),
        ("Browser, cold server: launch to the first score of an upload made as soon as the page is usable",
         f"{ms(start['first_score'])}; target <= 10 s: {met(start['first_score'] <= 10)}"),
        ("Websocket protocol, no browser, cold server: launch to the first score of an upload made as soon as "
         "the page is sent", f"{ms(protocol)}; target <= 10 s: {met(protocol <= 10)}"),
        ("Threshold page rerun after a slider move (AppTest, median of 7)", ms(reruns["changed"])),
        ("Threshold page rerun with no change (baseline)", ms(reruns["baseline"])),
        ("Ratio slider move / baseline", f"{reruns['changed'] / reruns['baseline']:.2f}x"),
        ("Threshold fragment's own work (metrics + 4 figures to JSON, median of 15)", ms(fragment)),
        ("AppTest rerun of a one-line script (the test harness's own overhead)", ms(reruns["harness"])),
        (f"Screen page rerun after a slider move, {len(SAMPLES)} images shown (no model or LIME call)",
         ms(reruns["screen_changed"])),
        (f"Screen page first run with {len(SAMPLES)} new images (scores + LIME + Grad-CAM of one)",
         ms(reruns["first_upload"])),
        ("Cold start: imports + load + hash check", ms(cold["load"])),
        ("Cold start: warm-up call", ms(cold["warm_up"])),
        ("Cold start: first prediction after warm-up", ms(cold["first"])),
        ("Cold start total (fresh process to first prediction)", ms(cold["total"])),
        ("Warm prediction, one image from bytes (median of 21)", ms(explain["warm"])),
        (f"LIME, default settings ({settings.num_samples} samples, {settings.n_segments} superpixels; "
         f"median over {len(SAMPLES)} samples)", ms(explain["lime"])),
        ("Grad-CAM, first call (builds the gradient models)", ms(explain["cam_first"])),
        ("Grad-CAM, later calls (median)", ms(explain["cam"])),
    ]
    table = "\n".join(["| Measurement | Time |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)])
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {explain['device']}"
    print(table)
    report = (
        "# App responsiveness\n\n"
        f"Measured with `.venv/bin/python benchmarks/bench_app.py` on {time.strftime('%Y-%m-%d')} "
        f"({machine}; model `{json.loads((MODELS_DIR / 'pneumonia_cnn.json').read_text())['model_sha256'][:12]}`). "
        "The first three rows drive a real browser (Chromium on the same 2 cores as the server); the fourth "
        "speaks Streamlit's websocket protocol without rendering, so it shows the server's part; the rest are "
        "server-side: "
        "AppTest reruns the whole script, so a fragment-only rerun in the browser is at most this long. Other jobs "
        "sharing the machine add noise.\n\n" + table + "\n"
    )
    (REPO / "docs" / "app_benchmark.md").write_text(report)


if __name__ == "__main__":
    main()
