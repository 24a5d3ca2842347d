"""N users at once: real browser sessions against one `streamlit run app.py` on localhost.

    .venv/bin/python benchmarks/bench_load.py --sessions 10 [--out docs/load_benchmark.md]

Each session is its own Chromium context (its own Streamlit session). One session first runs alone, as
the single-user baseline of this same run; then N sessions each upload a different test image at the
same moment and wait for its score and its LIME map. Every session must show its own file and the
score the package computes for that file, and no other session's file (a leak). The server's resident
memory is polled throughout. The last line is exactly `sessions N, errors E, leaks L, peak RSS X MB`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live_app import CHROMIUM, CHROMIUM_ARGS, LIME_CAPTION, PROBABILITY, PeakMemory, running_server  # noqa: E402
from pneumonia.artifacts import read_test_predictions  # noqa: E402
from pneumonia.config import DATA_ENV_VAR, MODELS_DIR  # noqa: E402
from pneumonia.screening import format_probability  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/bench_load.py --sessions N"
TIMEOUT_MS = 600_000
TARGETS = {"peak_rss_mb": 2048, "lime_ratio": 1.2}


def chosen_images(data_dir: Path, count: int, seed: int = 0) -> list[tuple[Path, str]]:
    """`count` distinct test images, alternating classes, with the score the package gives each."""
    test = read_test_predictions(MODELS_DIR)
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(test.labels == label)) for label in (0, 1)]
    picked = [by_class[i % 2][i // 2] for i in range(count)]
    return [(data_dir / test.files[i], format_probability(float(test.probabilities[i]))) for i in picked]


async def open_session(browser, url: str):
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    await page.goto(url, wait_until="domcontentloaded")
    await page.locator("input[type=file]").first.wait_for(state="attached", timeout=TIMEOUT_MS)
    return context, page


async def screen_one(page, image: Path, expected: str, others: list[str], start: asyncio.Event) -> dict:
    """Upload at the signal; seconds to the score and to the LIME map; does the page show only this image?"""
    await start.wait()
    began = time.perf_counter()
    result = {"file": image.name, "error": None, "leak": False}
    try:
        await page.locator("input[type=file]").first.set_input_files(str(image))
        score = page.locator(PROBABILITY).first
        await score.wait_for(timeout=TIMEOUT_MS)
        result["score_s"] = time.perf_counter() - began
        await page.get_by_text(LIME_CAPTION, exact=False).first.wait_for(timeout=TIMEOUT_MS)
        result["lime_s"] = time.perf_counter() - began
        shown = (await score.inner_text()).strip()
        text = await page.locator("[data-testid=stMain]").inner_text()
        if await page.locator("[data-testid=stException]").count():
            result["error"] = "the page shows an exception"
        result["leak"] = shown != expected or image.name not in text or any(name in text for name in others)
    except Exception as exc:  # a timeout or a crashed page counts as an error, and the run goes on
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return result


async def run(sessions: int, data_dir: Path, log: Path) -> dict:
    from playwright.async_api import async_playwright

    images = chosen_images(data_dir, sessions + 2)
    warm_image = images.pop()
    with running_server(log) as server:
        server.wait_healthy()
        with PeakMemory(server) as memory:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                # Warm-up: the first visit loads the model and the first LIME compiles its forward pass;
                # nobody's timing should include that.
                context, page = await open_session(browser, server.url)
                await page.locator("input[type=file]").first.set_input_files(str(warm_image[0]))
                await page.get_by_text("Explanation readout").wait_for(timeout=TIMEOUT_MS)
                await context.close()
                rss_before = server.rss_mb()

                go = asyncio.Event()
                context, page = await open_session(browser, server.url)
                single_task = asyncio.create_task(screen_one(page, *images[0], [], go))
                go.set()
                single = await single_task
                await page.get_by_text("Explanation readout").wait_for(timeout=TIMEOUT_MS)  # its background work too
                await context.close()

                opened = [await open_session(browser, server.url) for _ in range(sessions)]
                go = asyncio.Event()
                names = [path.name for path, _ in images[1:]]
                tasks = [
                    asyncio.create_task(
                        screen_one(page, path, expected, [n for n in names if n != path.name], go)
                    )
                    for (_, page), (path, expected) in zip(opened, images[1:])
                ]
                go.set()
                results = await asyncio.gather(*tasks)
                for context, _ in opened:
                    await context.close()
                await browser.close()
            await asyncio.sleep(2.0)
            rss_after = server.rss_mb()
    return {"single": single, "results": results, "peak_mb": memory.peak_mb, "rss_before": rss_before,
            "rss_after": rss_after}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(sessions: int, outcome: dict) -> tuple[str, str]:
    single, results = outcome["single"], outcome["results"]
    errors = sum(r["error"] is not None for r in results) + (single["error"] is not None)
    leaks = sum(r["leak"] for r in results if r["error"] is None) + (single["leak"] and single["error"] is None)
    score = [r["score_s"] for r in results if "score_s" in r]
    lime = [r["lime_s"] for r in results if "lime_s" in r]
    single_lime = single.get("lime_s", float("nan"))
    budget = TARGETS["lime_ratio"] * sessions * single_lime
    rows = [
        ("Single user alone: score / LIME map (s)", f"{single.get('score_s', float('nan')):.2f} / {single_lime:.2f}", ""),
        (f"{sessions} users at once: score p50 / p95 (s)", f"{percentile(score, 50):.2f} / {percentile(score, 95):.2f}", ""),
        (f"{sessions} users at once: LIME map p50 / p95 (s)", f"{percentile(lime, 50):.2f} / {percentile(lime, 95):.2f}",
         f"p95 <= {TARGETS['lime_ratio']:.1f} x {sessions} x single = {budget:.1f} s: "
         f"{'met' if percentile(lime, 95) <= budget else 'missed'}"),
        ("p95 LIME / (N x single LIME)", f"{percentile(lime, 95) / (sessions * single_lime):.2f}", ""),
        ("Errors (timeouts, exceptions)", str(errors), f"0: {'met' if errors == 0 else 'missed'}"),
        ("Leaks (a session showing another's file or a wrong score)", str(leaks), f"0: {'met' if leaks == 0 else 'missed'}"),
        ("Server RSS before / after the load (MB)", f"{outcome['rss_before']:.0f} / {outcome['rss_after']:.0f}", ""),
        ("Peak server RSS (MB)", f"{outcome['peak_mb']:.0f}",
         f"<= {TARGETS['peak_rss_mb']}: {'met' if outcome['peak_mb'] <= TARGETS['peak_rss_mb'] else 'missed'}"),
    ]
    for r in results:
        if r["error"]:
            rows.append((f"error in the session for {r['file']}", r["error"], ""))
    table = "\n".join(["| Measure | Result | Target |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)])
    last = f"sessions {sessions}, errors {errors}, leaks {leaks}, peak RSS {outcome['peak_mb']:.0f} MB"
    return table, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(DATA_ENV_VAR, "../shared/data/chest_xray")))
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        outcome = asyncio.run(run(args.sessions, args.data.resolve(), Path(scratch) / "server.log"))
    table, last = report(args.sessions, outcome)
    if args.out:
        args.out.write_text(
            "# Load benchmark: concurrent users\n\n"
            f"Generated by `{COMMAND.replace('N', str(args.sessions))} --out {args.out}` on "
            f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, with the server and Chromium on the same "
            "machine. Each session uploads a different test image at the same moment and waits for its score "
            "and LIME map; the single-user baseline is measured in the same run.\n\n"
            f"{table}\n\n`{last}`\n"
        )
    print(table)
    print(last)


if __name__ == "__main__":
    main()
