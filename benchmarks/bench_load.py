"""N users at once: concurrent Streamlit sessions against one `streamlit run app.py` on localhost.

    .venv/bin/python benchmarks/bench_load.py --sessions 10 [--out docs/load_benchmark.md]

Each session speaks Streamlit's websocket protocol (`live_app.ProtocolSession`): it opens the app, uploads a
file as the uploader widget does and receives every element the page would draw, but renders nothing, so
the clients cost the 2 cores almost nothing and the latencies are the server's. (Ten Chromium pages on the
same 2 cores measured the browsers' rendering more than the server.) Three sessions first run alone, one
after another, on different images; their median is the single-user baseline of this same run. Then N
sessions each upload a different test image at the same moment and wait for its score and its LIME map.
Every session must show its own file and the score the package computes for that file, and no other
session's file (a leak). The server's resident memory is
polled throughout. The last line is exactly `sessions N, errors E, leaks L, peak RSS X MB`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live_app import PeakMemory, ProtocolSession, running_server  # noqa: E402

from pneumonia.config import DATA_ENV_VAR, MODELS_DIR  # noqa: E402
from pneumonia.formatting import format_probability  # noqa: E402
from pneumonia.io.bundle import read_test_predictions  # noqa: E402
from pneumonia.io.pseudonyms import shown_names  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/bench_load.py --sessions N"
TIMEOUT_S = 600.0
TARGETS = {"peak_rss_mb": 2048, "lime_ratio": 1.2}
SINGLE_RUNS = 3  # the single-user baseline is the median of this many sessions, one after another
SCORE_LABEL, LIME_CAPTION, DONE = "P(pneumonia)", "LIME (", "Explanation readout"
QUEUE_NOTICE = re.compile(r"waiting for the model, \d+ ahead")


def chosen_images(data_dir: Path, count: int, seed: int = 0) -> list[tuple[Path, str]]:
    """`count` distinct test images, alternating classes, with the score the package gives each."""
    test = read_test_predictions(MODELS_DIR)
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(test.labels == label)) for label in (0, 1)]
    picked = [by_class[i % 2][i // 2] for i in range(count)]
    return [(data_dir / test.files[i], format_probability(float(test.probabilities[i]))) for i in picked]


def shown_as(image: Path) -> str:
    """What the page calls a film uploaded alone, names being off: the package's own rule, not a copy of it."""
    return shown_names([image.name], [image.read_bytes()])[0]


async def screen_one(session: ProtocolSession, image: Path, expected: str, others: list[str],
                     start: asyncio.Event) -> dict:
    """Upload at the signal; seconds to the score and to the LIME map; does the page show only this image?"""
    await start.wait()
    began = time.perf_counter()
    result = {"file": image.name, "error": None, "leak": False}
    try:
        await session.upload(image)
        result["score_s"] = await session.wait_for(lambda: session.shown_since(began, SCORE_LABEL), TIMEOUT_S) - began
        result["lime_s"] = await session.wait_for(lambda: session.shown_since(began, LIME_CAPTION), TIMEOUT_S) - began
        await session.wait_for(lambda: session.shown_since(began, DONE), TIMEOUT_S)  # its background work too
        text = session.text()
        if "exception {" in text:
            result["error"] = "the page shows an exception"
        shown = session.metric(SCORE_LABEL)
        result["told_place"] = QUEUE_NOTICE.search(text) is not None
        # The page calls a film by its pseudonym (its own, and nobody else's), never by its file name.
        result["leak"] = (shown != expected or shown_as(image) not in text or image.name in text
                          or any(name in text for name in others))
    except Exception as exc:  # a timeout or a dropped session counts as an error, and the run goes on
        result["error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    return result


async def opened(url: str) -> ProtocolSession:
    session = ProtocolSession(url)
    await session.open()
    return session


async def run(sessions: int, data_dir: Path, log: Path) -> dict:
    images = chosen_images(data_dir, sessions + SINGLE_RUNS + 1)
    warm_image = images.pop()
    alone_images, images = images[:SINGLE_RUNS], images[SINGLE_RUNS:]
    with running_server(log) as server:
        server.wait_healthy()
        with PeakMemory(server) as memory:
            # Warm-up: the first session loads the model and the first LIME compiles its forward pass;
            # nobody's timing should include that.
            warm = await opened(server.url)
            go = asyncio.Event()
            go.set()
            await screen_one(warm, *warm_image, [], go)
            await warm.close()
            rss_before = server.rss_mb()

            singles = []
            for path, expected in alone_images:  # different images: a repeated one would come from the cache
                alone = await opened(server.url)
                singles.append(await screen_one(alone, path, expected, [], go))
                await alone.close()

            crowd = [await opened(server.url) for _ in range(sessions)]
            go = asyncio.Event()
            shown = {path: shown_as(path) for path, _ in images}
            tasks = [
                asyncio.create_task(screen_one(session, path, expected,
                                               [label for other in shown if other != path
                                                for label in (other.name, shown[other])], go))
                for session, (path, expected) in zip(crowd, images)
            ]
            go.set()
            results = await asyncio.gather(*tasks)
            for session in crowd:
                await session.close()
            await asyncio.sleep(2.0)
            rss_after = server.rss_mb()
    return {"singles": singles, "results": results, "peak_mb": memory.peak_mb, "rss_before": rss_before,
            "rss_after": rss_after}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(sessions: int, outcome: dict) -> tuple[str, str]:
    singles, results = outcome["singles"], outcome["results"]
    everyone = singles + results
    errors = sum(r["error"] is not None for r in everyone)
    leaks = sum(r["leak"] for r in everyone if r["error"] is None)
    score = [r["score_s"] for r in results if "score_s" in r]
    lime = [r["lime_s"] for r in results if "lime_s" in r]
    single_score = percentile([r["score_s"] for r in singles if "score_s" in r], 50)
    single_lime = percentile([r["lime_s"] for r in singles if "lime_s" in r], 50)
    budget = TARGETS["lime_ratio"] * sessions * single_lime
    rows = [
        (f"Single user alone: score / LIME map (s), median of {len(singles)} sessions one after another",
         f"{single_score:.2f} / {single_lime:.2f}", ""),
        (f"{sessions} users at once: score p50 / p95 (s)", f"{percentile(score, 50):.2f} / {percentile(score, 95):.2f}", ""),
        (f"{sessions} users at once: LIME map p50 / p95 (s)", f"{percentile(lime, 50):.2f} / {percentile(lime, 95):.2f}",
         f"p95 <= {TARGETS['lime_ratio']:.1f} x {sessions} x single = {budget:.1f} s: "
         f"{'met' if percentile(lime, 95) <= budget else 'missed'}"),
        ("p95 LIME / (N x single LIME)", f"{percentile(lime, 95) / (sessions * single_lime):.2f}", ""),
        ("Sessions shown their place in a queue (\"…: waiting for the model, k ahead\")",
         f"{sum(r.get('told_place', False) for r in results)} of {sessions}", ""),
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
            f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, with the server and its clients on the same "
            "machine. The sessions speak Streamlit's websocket protocol and render nothing. Each session uploads a different test image at the same moment and waits for its score "
            "and LIME map; the single-user baseline is measured in the same run.\n\n"
            f"{table}\n\n`{last}`\n"
        )
    print(table)
    print(last)


if __name__ == "__main__":
    main()
