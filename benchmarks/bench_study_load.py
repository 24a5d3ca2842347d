"""A classroom at once: one teacher and N readers run an AI-aided reader study against one `streamlit run app.py`
on localhost, and the server is killed and restarted in the middle.

    .venv/bin/python benchmarks/bench_study_load.py --readers 30 --cases 20 [--out docs/study_load.md]

Every client speaks Streamlit's websocket protocol (`live_app.ProtocolSession`, extended here with text inputs,
radios, toggles and forms): it renders nothing, so the clients cost the 2 cores little and the latencies are
the server's. The teacher creates the study on the Reader study page and opens the dashboard with the teacher
code. Each reader joins with the join code, a pseudonym and a PIN, reads every case alone (a call and a
confidence), then with the AI (after the page has shown the model's score and maps), with a few seconds' thought
between readings. A simulated reader is right alone about 3 times in 4, and with the AI follows the model more
often when it is right than when it is wrong.

A reading's commit latency is the time from the click (the form's message leaving the client) to the page saying
"Saved: ..." (which the page says only after the database has committed the reading). When half the readings
are in, the server is killed (SIGKILL, nothing flushed) and started again on the same database; every reader
reconnects, comes back with the same join code, pseudonym and PIN, and carries on where the page says.

At the end: every reading acknowledged to a reader is in the database with the call and confidence sent, no
reading is there twice, every reader finished, and the teacher's dashboard states the MRMC numbers that
`python -m pneumonia study analyse` gives on the `study export` CSV. The last line is exactly
`readers N, readings R, lost L, duplicated D, p95 commit X ms, restart lost K`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live_app import REPO, ProtocolSession, Server  # noqa: E402

from pneumonia.studies.design import next_step, reader_positions  # noqa: E402
from pneumonia.studies.store import AIDED, UNAIDED, StudyStore  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/bench_study_load.py --readers N --cases K"
TARGET_P95_MS = 300
TIMEOUT_S = 300.0
STUDY_NAME = "Load test"
WORDS = {UNAIDED: "alone", AIDED: "with the AI"}
CONFIDENCE_LABELS = {1: "1 a guess", 2: "2 unsure", 3: "3 fairly sure", 4: "4 sure", 5: "5 certain"}
FINDINGS = """## What this benchmark found

The first run missed the latency target by fifty times: p50 4,094 ms and p95 15,468 ms (with another 200-session
soak benchmark sharing the two cores), though no reading was lost. The server sat at one full core, and a profile
of one rerun of the reading page showed why: after every script run Streamlit calls `keras.backend.clear_session()`
(whenever keras is imported) and then its own post-run `gc.collect(2)`, and each full collection walked
TensorFlow's ~400,000 objects for ~200 ms with the interpreter lock held: ~300 ms of every rerun of every session,
on every page of the app. `ui/common.load_model` now freezes the heap (`gc.collect(); gc.freeze()`) once the model
is loaded, so those collections skip it: one rerun of the reading page went from ~330 ms to ~30 ms, and the table
above is the same benchmark afterwards.
"""
PROGRESS = re.compile(r"Case (\d+) of (\d+)(?:, (alone|with the AI))?")


class Dropped(Exception):
    """The server went away (killed): reconnect and carry on."""


class StudySession(ProtocolSession):
    """A ProtocolSession on the Reader study page, with the widgets that page uses."""

    last_run_started = 0.0  # when this session's latest reading was sent: what the page shows now came after

    async def open_study(self, timeout: float = 120.0) -> None:
        """Connect straight to /study (as a browser opening that address does) and wait for its first run."""
        import websockets
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.util import calc_hash

        await asyncio.to_thread(self.http.get, f"{self.url}/_stcore/health")
        token = self.http.cookies.get(self.XSRF_COOKIE)
        self.ws = await websockets.connect(
            self.url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit", token],
            additional_headers={"Cookie": f"{self.XSRF_COOKIE}={token}"}, max_size=None,
        )
        self._reader = asyncio.create_task(self._read())
        message = BackMsg()
        message.rerun_script.query_string = ""
        message.rerun_script.page_name = "study"
        message.rerun_script.page_script_hash = calc_hash("study")
        await self.ws.send(message.SerializeToString())
        await self.wait_for(lambda: self.finished_runs >= 1, timeout)

    async def _read(self) -> None:
        """As the base class reads, and wakes every waiter when the connection ends, so that a killed server is
        noticed at once rather than at a wait's timeout."""
        try:
            await super()._read()
        finally:
            self._arrived.set()

    def latest(self, kind: str, label: str | None = None, since: float = 0.0):
        """The newest element of this type (and label) that arrived after `since`, or None."""
        for t, element in reversed(self.elements):
            if t < since:
                break
            if element.WhichOneof("type") == kind:
                inner = getattr(element, kind)
                if label is None or getattr(inner, "label", None) == label:
                    return inner
        return None

    async def run(self, *states, timeout: float = TIMEOUT_S) -> float:
        """Rerun the page with these widget states (a click or a form); return when it was sent, once the run
        has finished."""
        runs = self.finished_runs
        sent = time.perf_counter()
        await self._rerun("", *states)
        await self.wait_for(lambda: self.finished_runs > runs, timeout)
        return sent

    async def choose(self, label: str, option: str) -> None:
        """A radio outside any form: its state is kept for every later run, as the browser keeps it."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        radio = self.latest("radio", label)
        self._widgets[radio.id] = WidgetState(id=radio.id, string_value=option)
        await self.run()

    async def check(self, label: str) -> None:
        """A checkbox outside any form, ticked and kept for every later run."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        box = self.latest("checkbox", label)
        self._widgets[box.id] = WidgetState(id=box.id, bool_value=True)
        await self.run()

    def step_shown(self, since: float) -> re.Match | None:
        """The reader's step as the latest progress bar after `since` states it ("Case 3 of 20, with the AI");
        the LIME progress bar, also a progress element, is skipped."""
        for t, element in reversed(self.elements):
            if t < since:
                return None
            if element.WhichOneof("type") == "progress" and (match := PROGRESS.match(element.progress.text)):
                return match
        return None

    def state(self, kind: str, label: str, **value):
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        return WidgetState(id=self.latest(kind, label).id, **value)

    def trigger(self, label: str):
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        return WidgetState(id=self.latest("button", label).id, trigger_value=True)


async def wait_for_text(session: StudySession, since: float, text: str, timeout: float = TIMEOUT_S) -> float:
    return await session.wait_for(lambda: session.shown_since(since, text), timeout)


# ---------------------------------------------------------------- the teacher


async def teacher_creates(url: str, cases: int) -> tuple[StudySession, str, str]:
    teacher = StudySession(url)
    await teacher.open_study()
    await teacher.choose("Role", "I am the teacher")
    sent = await teacher.run(
        teacher.state("text_input", "Study name", string_value=STUDY_NAME),
        teacher.state("number_input", "Number of cases", double_value=cases),
        teacher.state("number_input", "Seed for drawing the cases", double_value=0),
        teacher.trigger("Create the study"),
    )
    # Step 1: the teacher code alone; step 2, once it is confirmed saved: the class screen with the join code.
    await wait_for_text(teacher, sent, "Step 1 of 2: save your teacher code")
    await teacher.wait_for(lambda: any(t >= sent and e.WhichOneof("type") == "code" for t, e in teacher.elements))
    teacher_code = [e.code.code_text for t, e in teacher.elements if t >= sent and e.WhichOneof("type") == "code"][0]
    saved = "I have saved the teacher code somewhere private"
    await teacher.wait_for(lambda: teacher.latest("checkbox", saved) is not None)
    await teacher.check(saved)
    sent = await teacher.run(teacher.trigger("Continue to the class screen (join code)"))
    await wait_for_text(teacher, sent, "Join code for the readers")
    join_pattern = re.compile(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}")

    def join_codes() -> list[str]:  # the run that left step 1 drew the teacher code once more: skip it
        return [e.code.code_text.strip() for t, e in teacher.elements if t >= sent and e.WhichOneof("type") == "code"
                and join_pattern.fullmatch(e.code.code_text.strip())]

    await teacher.wait_for(lambda: bool(join_codes()))
    join_code = join_codes()[-1]
    return teacher, join_code, teacher_code


async def teacher_opens(url: str, teacher_code: str) -> StudySession:
    teacher = StudySession(url)
    await teacher.open_study()
    await teacher.choose("Role", "I am the teacher")
    await teacher.choose("What would you like to do?", "Open my study's dashboard")
    sent = await teacher.run(teacher.state("text_input", "Teacher code", string_value=teacher_code),
                             teacher.trigger("Open the dashboard"))
    await wait_for_text(teacher, sent, f"Dashboard: {STUDY_NAME}")
    return teacher


# ---------------------------------------------------------------- a reader


class SimulatedReader:
    """Right alone about 3 times in 4; with the AI, takes the model's call 70% of the time when the model is
    right and 30% when it is wrong. Confidence is higher when right."""

    def __init__(self, index: int, store: StudyStore, study, cases, think: tuple[float, float], seed: int):
        self.pseudonym, self.pin = f"Reader {index:02d}", f"{1000 + index}"
        self.store, self.study, self.cases = store, study, cases
        self.by_position = {c.position: c for c in cases}
        self.rng = np.random.default_rng(seed * 1000 + index)
        self.think = think
        self.reader = None
        self.acknowledged: list[dict] = []
        self.latencies_ms: list[float] = []
        self.reconnects = 0
        self.first_calls: dict[int, tuple[int, int]] = {}

    def decide(self, position: int, modality: str) -> tuple[int, int]:
        case = self.by_position[position]
        if modality == UNAIDED:
            right = self.rng.random() < 0.75
            call = case.truth if right else 1 - case.truth
            confidence = int(self.rng.integers(3, 6) if right else self.rng.integers(1, 4))
            self.first_calls[position] = (call, confidence)
            return call, confidence
        call, confidence = self.first_calls.get(position, (case.truth, 3))
        model_call = int(case.probability >= self.study.threshold)
        follow = self.rng.random() < (0.7 if model_call == case.truth else 0.3)
        if follow and call != model_call:
            return model_call, max(1, confidence - 1)
        if follow:
            return call, min(5, confidence + 1)
        return call, confidence

    async def join(self, url: str, join_code: str) -> StudySession:
        session = StudySession(url)
        await session.open_study()
        sent = await session.run(
            session.state("text_input", "Join code", string_value=join_code),
            session.state("text_input", "Pseudonym (not your real name)", string_value=self.pseudonym),
            session.state("text_input", "PIN (4 to 8 digits)", string_value=self.pin),
            session.trigger("Join"),
        )
        await wait_for_text(session, sent, "Welcome")
        if self.reader is None:
            (self.reader,) = [r for r in self.store.readers(self.study.id) if r.pseudonym == self.pseudonym]
            self.order = reader_positions(self.cases, self.reader)
        return session

    async def read_all(self, server_url, join_code: str) -> None:
        session = await self.join(server_url(), join_code)
        while True:
            try:
                if not await self.read_one(session):
                    break
            except Dropped:
                await session.close()
                self.reconnects += 1
                while True:  # until the restarted server answers
                    try:
                        session = await self.join(server_url(), join_code)
                        break
                    except Exception:  # noqa: BLE001 - the server is still starting
                        await asyncio.sleep(1.0)
        await session.close()

    async def read_one(self, session: StudySession) -> bool:
        """Read the step the page shows; False once the page says every case is read."""
        try:
            since = session.last_run_started
            done = "You have read all the cases"
            await session.wait_for(lambda: session.shown_since(since, done) or (
                session.step_shown(since) and session.latest("button", "Save my reading", since)),
                TIMEOUT_S)  # the whole form of the step the page now shows
            if session.shown_since(since, done):
                return False
            match = session.step_shown(since)
            number, modality = int(match.group(1)), AIDED if match.group(3) == WORDS[AIDED] else UNAIDED
            position = self.order[number - 1]
            call, confidence = self.decide(position, modality)
            await asyncio.sleep(self.rng.uniform(*self.think))
            runs = session.finished_runs
            sent = time.perf_counter()
            session.last_run_started = sent
            await session._rerun(
                "",
                session.state("radio", "Your call", string_value=("NORMAL", "PNEUMONIA")[call]),
                session.state("radio", "How sure are you?", string_value=CONFIDENCE_LABELS[confidence]),
                session.trigger("Save my reading"),
            )
            acked = await wait_for_text(session, sent, f"Saved: case {number}, {WORDS[modality]}: ")
            self.latencies_ms.append((acked - sent) * 1000)
            self.acknowledged.append({"position": position, "modality": modality, "call": call,
                                      "confidence": confidence, "number": number})
            await session.wait_for(lambda: session.finished_runs > runs, TIMEOUT_S)  # the maps, then the form
            return True
        except (RuntimeError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
            raise Dropped() from exc
        except Exception as exc:
            if type(exc).__module__.startswith("websockets"):
                raise Dropped() from exc
            raise


# ---------------------------------------------------------------- the run


async def run(readers: int, cases: int, think: tuple[float, float], db: str, folder: Path) -> dict:
    """The study, with every server it started stopped at the end, however it ends."""
    servers: list[Server] = []
    try:
        return await _study(readers, cases, think, db, folder, servers)
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.stop()


async def _study(readers: int, cases: int, think: tuple[float, float], db: str, folder: Path,
                 servers: list[Server]) -> dict:
    os.environ["PNEUMONIA_DB"] = db  # the server inherits it
    server = Server(folder / "server1.log")
    servers.append(server)
    server.wait_healthy()
    current = {"url": server.url}
    started = time.perf_counter()
    teacher, join_code, teacher_code = await teacher_creates(server.url, cases)
    await teacher.close()
    store = StudyStore(db)
    (study,) = store.studies()
    study_cases = store.cases(study.id)

    simulated = [SimulatedReader(i + 1, store, study, study_cases, think, seed=0) for i in range(readers)]
    total = readers * cases * 2
    restart = {"done": False, "at_acknowledged": None, "down_s": None}

    async def restarter():
        nonlocal server
        while sum(len(r.acknowledged) for r in simulated) < total // 2:
            await asyncio.sleep(0.2)
        restart["at_acknowledged"] = sum(len(r.acknowledged) for r in simulated)
        print(f"{restart['at_acknowledged']} readings acknowledged: killing the server", file=sys.stderr)
        killed = time.perf_counter()
        server.process.kill()  # SIGKILL: nothing is flushed or closed cleanly
        server.process.wait()
        server._log.close()
        server = Server(folder / "server2.log")
        servers.append(server)
        await asyncio.to_thread(server.wait_healthy)
        current["url"] = server.url
        restart["down_s"] = time.perf_counter() - killed
        restart["done"] = True
        print(f"server back after {restart['down_s']:.1f} s", file=sys.stderr)

    tasks = [asyncio.create_task(r.read_all(lambda: current["url"], join_code)) for r in simulated]
    restart_task = asyncio.create_task(restarter())
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=3600)
    finally:
        restart_task.cancel()
    reading_s = time.perf_counter() - started
    print(f"every reader finished after {reading_s:.0f} s; checking the dashboard", file=sys.stderr)

    # The teacher's dashboard on the restarted server, against `study export` + `study analyse`.
    dashboard = await teacher_opens(current["url"], teacher_code)
    since = time.perf_counter() - 3600
    await wait_for_text(dashboard, since, f"Progress: {readers} of {readers} readers finished", timeout=120)
    await wait_for_text(dashboard, since, "finished all", timeout=120)
    dashboard_text = dashboard.text()
    await dashboard.close()
    export, analysis = folder / "readings.csv", folder / "analysis.json"
    for args in (["study", "export", STUDY_NAME, "--csv", str(export), "--db", db],
                 ["study", "analyse", str(export), "--json", str(analysis)]):
        subprocess.run([sys.executable, "-m", "pneumonia", *args], cwd=REPO, check=True, capture_output=True)
    analysed = json.loads(analysis.read_text())

    stored = store.readings(study.id)
    keys = [(r.reader_id, r.position, r.modality) for r in stored]
    by_key = {k: r for k, r in zip(keys, stored)}
    lost = 0
    for reader in simulated:
        for ack in reader.acknowledged:
            reading = by_key.get((reader.reader.id, ack["position"], ack["modality"]))
            if reading is None or (reading.call, reading.confidence) != (ack["call"], ack["confidence"]):
                lost += 1
    unfinished = sum(next_step(study, study_cases, r.reader, store.reader_readings(r.reader.id)).case is not None
                     for r in simulated)
    store.close()
    comparison = analysed["comparisons"][0]
    mean_auc = analysed["mean_auc"]
    same = all(text in dashboard_text for text in (
        f"{mean_auc['unaided']:.2f} alone", f"{mean_auc['aided']:.2f} with the AI", _verdict_words(comparison)))
    return {
        "readers": simulated, "stored": len(stored), "duplicated": len(keys) - len(set(keys)), "lost": lost,
        "unfinished": unfinished, "total": total, "restart": restart, "reading_s": reading_s,
        "analysed": analysed, "dashboard_matches": same,
    }


def _ci_words(ci: list) -> str:
    return "undefined" if None in ci else f"{ci[0]:+.3f} to {ci[1]:+.3f}"


def _verdict_words(comparison: dict) -> str:
    """The dashboard's plain verdict for `study analyse`'s comparison (aided - unaided)."""
    p = comparison["p"]
    if p is None:
        return "cannot be worked out"
    if p >= 0.05:
        return "cannot tell whether the AI helps"
    return "The AI helped" if comparison["difference"] * (1 if comparison["modalities"][0] == "aided" else -1) > 0 \
        else "The AI made the readers worse"


def _p_words(p: float | None) -> str:
    """p as the dashboard writes it; an undefined p (readers' AUCs all equal) is not written there."""
    if p is None:
        return "cannot be tested"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def report(readers: int, cases: int, think: tuple[float, float], outcome: dict) -> tuple[str, str]:
    latencies = [ms for r in outcome["readers"] for ms in r.latencies_ms]
    acknowledged = sum(len(r.acknowledged) for r in outcome["readers"])
    p50, p95, worst = (float(np.percentile(latencies, q)) for q in (50, 95, 100))
    restart = outcome["restart"]
    analysed = outcome["analysed"]
    comparison = analysed["comparisons"][0]
    met = lambda ok: "met" if ok else "missed"  # noqa: E731
    rows = [
        ("Readers at once / cases each / readings each (alone + with the AI)", f"{readers} / {cases} / {2 * cases}",
         ""),
        ("Thinking time between readings (s, uniform)", f"{think[0]:g} to {think[1]:g}", ""),
        ("Readings acknowledged to readers", str(acknowledged), ""),
        ("Readings in the database at the end", f"{outcome['stored']} of {outcome['total']}",
         f"{outcome['total']}: {met(outcome['stored'] == outcome['total'])}"),
        ("Acknowledged readings missing or changed", str(outcome["lost"]), f"0: {met(outcome['lost'] == 0)}"),
        ("Readings stored twice", str(outcome["duplicated"]), f"0: {met(outcome['duplicated'] == 0)}"),
        ("Readers who did not finish", str(outcome["unfinished"]), f"0: {met(outcome['unfinished'] == 0)}"),
        ("Commit latency, click to \"Saved\": p50 / p95 / max (ms)", f"{p50:.0f} / {p95:.0f} / {worst:.0f}",
         f"p95 <= {TARGET_P95_MS}: {met(p95 <= TARGET_P95_MS)}"),
        ("Server killed (SIGKILL) after this many acknowledged readings", str(restart["at_acknowledged"]), ""),
        ("Server down until healthy again (s)", f"{restart['down_s']:.1f}" if restart["down_s"] else "n/a", ""),
        ("Readers who reconnected and came back with their PIN",
         str(sum(r.reconnects > 0 for r in outcome["readers"])), ""),
        ("Whole study, first join to last reading (s)", f"{outcome['reading_s']:.0f}", ""),
        ("Dashboard states `study analyse`'s numbers on the `study export` CSV",
         "yes" if outcome["dashboard_matches"] else "no", f"yes: {met(outcome['dashboard_matches'])}"),
        ("MRMC (study analyse): mean AUC alone / with the AI",
         f"{analysed['mean_auc']['unaided']:.3f} / {analysed['mean_auc']['aided']:.3f}", ""),
        (f"MRMC: {comparison['modalities'][0]} - {comparison['modalities'][1]}, 95% CI, p",
         f"{comparison['difference']:+.3f} ({_ci_words(comparison['ci'])}), {_p_words(comparison['p'])}", ""),
    ]
    table = "\n".join(["| Measure | Result | Target |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)])
    last = (f"readers {readers}, readings {outcome['stored']}, lost {outcome['lost']}, duplicated "
            f"{outcome['duplicated']}, p95 commit {p95:.0f} ms, restart lost {outcome['lost']}")
    return table, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=30)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--think", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN_S", "MAX_S"),
                        help="seconds a reader thinks before each reading, uniform (default 2 to 6)")
    parser.add_argument("--out", type=Path, help="also write the report here (markdown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        outcome = asyncio.run(run(args.readers, args.cases, tuple(args.think), str(folder / "studies.db"), folder))
    table, last = report(args.readers, args.cases, tuple(args.think), outcome)
    if args.out:
        command = COMMAND.replace("N", str(args.readers)).replace("K", str(args.cases))
        args.out.write_text(
            "# Reader study under load: a class at once, and a server killed mid-study\n\n"
            f"Generated by `{command} --out {args.out}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores "
            "shared with other work, with the server, its SQLite database (WAL, synchronous=FULL) and every client "
            "on the same machine. The clients speak Streamlit's websocket protocol and render nothing. A teacher "
            "creates an AI-aided study on the Reader study page; each reader joins with the join code, a pseudonym "
            "and a PIN and reads every case alone, then with the AI, thinking a few seconds before each reading. "
            "When half the readings are in, the server is killed with SIGKILL and started again on the same "
            "database; the readers reconnect, come back with their PIN and carry on. A reading counts as "
            "acknowledged when the page says \"Saved\", which it says only after the database has committed it.\n\n"
            f"{table}\n\n`{last}`\n\n{FINDINGS}"
        )
    print(table)
    print(last)


if __name__ == "__main__":
    main()
