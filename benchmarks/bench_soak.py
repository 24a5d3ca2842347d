"""No memory creep: N Streamlit sessions one after another against one `streamlit run app.py` on localhost.

    .venv/bin/python benchmarks/bench_soak.py --sessions 200

Each session speaks Streamlit's websocket protocol (`live_app.ProtocolSession`): it opens the app, uploads a
different test image, waits for its score and for the explanation (LIME, Grad-CAM and the readout, which the
Screen page draws for the first scored image), asks for the PDF report and downloads it, then leaves. A
session that fails is counted and the soak goes on. The server's resident memory (VmRSS in
/proc/<pid>/status) is read after every `--every` sessions (20 by default); the goal is that it grows by at
most 10% from the first reading to the last. By the first, the model is loaded, LIME's forward pass compiled,
and a full share of closed sessions held: Streamlit keeps each for `server.disconnectedSessionTTL` (120 s,
about 15 sessions here) in case its tab reconnects. The last line is exactly
`sessions N, errors E, RSS after F X MB, after N Y MB, growth G%`, F being the first reading's session count.
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

from bench_load import DONE, SCORE_LABEL, TIMEOUT_S, chosen_images  # noqa: E402
from live_app import ProtocolSession, running_server  # noqa: E402

from pneumonia.config import DATA_ENV_VAR  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/bench_soak.py --sessions {sessions} --every {every}"
MAX_GROWTH = 0.10
PREPARE, DOWNLOAD = "Prepare report (PDF)", "Download report (PDF)"


async def one_session(url: str, image: Path, expected: str) -> dict:
    """Open, upload, score, explanation, report, leave; the seconds each took, or what went wrong."""
    result = {"file": image.name, "error": None}
    session = ProtocolSession(url)
    try:
        await session.open()
        began = time.perf_counter()
        runs = session.finished_runs
        await session.upload(image)
        result["score_s"] = await session.wait_for(lambda: session.shown_since(began, SCORE_LABEL), TIMEOUT_S) - began
        await session.wait_for(lambda: session.shown_since(began, DONE) and session.finished_runs > runs, TIMEOUT_S)
        result["explained_s"] = time.perf_counter() - began
        asked = time.perf_counter()
        await session.click(PREPARE)
        pdf = await session.download(DOWNLOAD, asked, TIMEOUT_S)
        result["report_s"] = time.perf_counter() - asked
        if session.metric(SCORE_LABEL) != expected:
            result["error"] = f"score {session.metric(SCORE_LABEL)}, expected {expected}"
        elif not pdf.startswith(b"%PDF"):
            result["error"] = "the report is not a PDF"
        elif "exception {" in session.text():
            result["error"] = "the page shows an exception"
    except Exception as exc:  # a timeout or a dropped session counts as an error, and the soak goes on
        result["error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    finally:
        await session.close()
    return result


async def soak(sessions: int, every: int, data_dir: Path, log: Path) -> dict:
    images = chosen_images(data_dir, sessions)
    readings = []
    results = []
    with running_server(log) as server:
        server.wait_healthy()
        started = time.perf_counter()
        for done, (path, expected) in enumerate(images, start=1):
            results.append(await one_session(server.url, path, expected))
            if done % every == 0 or done == sessions:
                readings.append((done, server.rss_mb(), time.perf_counter() - started))
                print(f"{done} sessions: RSS {readings[-1][1]:.0f} MB, {readings[-1][2]:.0f} s", file=sys.stderr)
    return {"results": results, "readings": readings}


def report(sessions: int, outcome: dict) -> tuple[str, str]:
    results, readings = outcome["results"], outcome["readings"]
    errors = [r for r in results if r["error"]]
    (first_n, first_mb, _), (last_n, last_mb, elapsed) = readings[0], readings[-1]
    growth = last_mb / first_mb - 1.0

    def median(key: str) -> str:
        values = [r[key] for r in results if key in r]
        return f"{np.median(values):.1f}" if values else "n/a"

    rows = [
        ("Sessions, one after another", str(sessions), ""),
        ("Errors (timeouts, wrong scores, exceptions, no PDF)", str(len(errors)),
         f"0: {'met' if not errors else 'missed'}"),
        ("Median seconds: score / score to explanation drawn / report asked to PDF downloaded",
         f"{median('score_s')} / {median('explained_s')} / {median('report_s')}", ""),
        ("Wall time (min)", f"{elapsed / 60:.1f}", ""),
        (f"Server RSS after {first_n} sessions (MB)", f"{first_mb:.0f}", ""),
        (f"Server RSS after {last_n} sessions (MB)", f"{last_mb:.0f}", ""),
        (f"Growth from {first_n} to {last_n} sessions", f"{growth:+.1%}",
         f"<= {MAX_GROWTH:.0%}: {'met' if growth <= MAX_GROWTH else 'missed'}"),
        ("RSS (MB) after " + ", ".join(str(n) for n, _, _ in readings) + " sessions",
         ", ".join(f"{mb:.0f}" for _, mb, _ in readings), ""),
    ]
    rows += [(f"error in the session for {r['file']}", r["error"], "") for r in errors]
    table = "\n".join(["| Measure | Result | Target |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)])
    last = (f"sessions {sessions}, errors {len(errors)}, RSS after {first_n} {first_mb:.0f} MB, "
            f"after {last_n} {last_mb:.0f} MB, growth {growth:+.1%}")
    return table, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--every", type=int, default=20, help="read the server's RSS after every this many sessions")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(DATA_ENV_VAR, "../shared/data/chest_xray")))
    args = parser.parse_args()
    if not 0 < args.every < args.sessions:
        parser.error("--every must be at least 1 and below --sessions, so that there are two readings to compare")
    with tempfile.TemporaryDirectory() as scratch:
        outcome = asyncio.run(soak(args.sessions, args.every, args.data.resolve(), Path(scratch) / "server.log"))
    table, last = report(args.sessions, outcome)
    command = COMMAND.format(sessions=args.sessions, every=args.every)
    print(f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, with the server "
          "and its client on the same machine.\n")
    print(table)
    print(last)


if __name__ == "__main__":
    main()
