"""A real `streamlit run app.py` on localhost, driven by headless Chromium or by Streamlit's own websocket
protocol, for the benchmarks.

Chromium is Debian's (/usr/bin/chromium) driven by Playwright; nothing is downloaded. `ProtocolSession`
speaks to the server as the browser's JavaScript does (protobuf messages on `/_stcore/stream`, uploads by
HTTP PUT) but renders nothing, so many sessions at once cost the server's 2 cores almost nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SERVER_ENV = {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
"""As `make app` sets it: few malloc arenas, so memory freed by one session's thread serves the next."""
PROBABILITY = "[data-testid=stMetric]:has-text('P(pneumonia)') [data-testid=stMetricValue]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` in a child process; `started` is when it was launched (time.perf_counter)."""

    def __init__(self, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **SERVER_ENV},
        )

    def wait_healthy(self, timeout: float = 120.0) -> float:
        """Seconds from launch until the health endpoint answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        return time.perf_counter() - self.started
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"streamlit did not start; see {self._log.name}")

    def rss_mb(self) -> float:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


class PeakMemory:
    """Polls the server's resident memory in a thread and keeps the peak."""

    def __init__(self, server: Server, interval: float = 0.1):
        self.server, self.interval, self.peak_mb = server, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, self.server.rss_mb())
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def running_server(log: Path):
    server = Server(log)
    try:
        yield server
    finally:
        server.stop()


class ProtocolSession:
    """One Streamlit session over the websocket protocol: open the app, upload a file as the uploader widget
    does, click a button, fetch a download, and record every element the server sends with the time it
    arrived. The page's text is the protobuf text of those elements, so a check for a file name or a score
    sees what a browser would draw."""

    XSRF_COOKIE = "_streamlit_xsrf"

    def __init__(self, url: str):
        self.url = url
        self.http = requests.Session()
        self.elements: list[tuple[float, object]] = []
        self.session_id = self.page_hash = self.uploader_id = None
        self._file_urls = None  # the server's answer to the latest upload request
        self._widgets = {}  # widget id -> the state a browser sends back with every rerun (here: the uploader's)
        self._buttons: dict[str, tuple[str, str]] = {}  # label -> (widget id, fragment id) of the latest drawn
        self._arrived = asyncio.Event()
        self.finished_runs = 0  # script runs (whole page or one fragment) the server has reported finished
        self._reader: asyncio.Task | None = None

    async def open(self, timeout: float = 120.0) -> None:
        """Connect and run the page once; return when the first run has finished."""
        import websockets
        from streamlit.proto.BackMsg_pb2 import BackMsg

        await asyncio.to_thread(self.http.get, f"{self.url}/_stcore/health")  # sets the XSRF cookie
        token = self.http.cookies.get(self.XSRF_COOKIE)
        self.ws = await websockets.connect(
            self.url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit", token],
            additional_headers={"Cookie": f"{self.XSRF_COOKIE}={token}"}, max_size=None,
        )
        self._reader = asyncio.create_task(self._read())
        message = BackMsg()
        message.rerun_script.query_string = ""
        await self.ws.send(message.SerializeToString())
        await self.wait_for(lambda: self.finished_runs >= 1 and self.uploader_id, timeout)

    async def _read(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        async for raw in self.ws:
            message = ForwardMsg()
            message.ParseFromString(raw)
            kind = message.WhichOneof("type")
            if kind == "new_session":
                self.session_id = message.new_session.initialize.session_id
                self.page_hash = message.new_session.page_script_hash
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                element = message.delta.new_element
                self.elements.append((time.perf_counter(), element))
                if element.WhichOneof("type") == "file_uploader":
                    self.uploader_id = element.file_uploader.id
                elif element.WhichOneof("type") == "button":
                    self._buttons[element.button.label] = (element.button.id, message.delta.fragment_id)
            elif kind == "file_urls_response":
                self._file_urls = message.file_urls_response
            elif kind == "script_finished":
                self.finished_runs += 1
            self._arrived.set()

    async def wait_for(self, condition, timeout: float = 600.0):
        """Wait until `condition()` is true after some message; return its value."""
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if self._reader is not None and self._reader.done():
                raise RuntimeError("the server closed the session")
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), max(0.0, deadline - time.monotonic()))
        return value

    async def upload(self, path: Path) -> None:
        """What the uploader widget does: ask for an upload URL, PUT the file, then rerun with the widget's state."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        self._file_urls = None  # so the wait below sees this request's answer, not an earlier one
        request = BackMsg()
        request.file_urls_request.request_id = path.name
        request.file_urls_request.file_names.append(path.name)
        request.file_urls_request.session_id = self.session_id
        await self.ws.send(request.SerializeToString())
        urls = (await self.wait_for(lambda: self._file_urls)).file_urls[0]
        data = path.read_bytes()
        response = await asyncio.to_thread(
            self.http.put, self.url + urls.upload_url, files={"file": (path.name, data)},
            headers={"X-Xsrftoken": self.http.cookies.get(self.XSRF_COOKIE)},
        )
        response.raise_for_status()
        state = WidgetState(id=self.uploader_id)
        info = state.file_uploader_state_value.uploaded_file_info.add()
        info.name, info.size, info.file_id = path.name, len(data), urls.file_id
        info.file_urls.CopyFrom(urls)
        self._widgets[state.id] = state
        await self._rerun()

    async def click(self, label: str, timeout: float = 600.0) -> None:
        """What a click on a button does: rerun (only its fragment, if it is drawn in one) with the button's
        trigger set and every other widget's state as it was."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        widget_id, fragment_id = await self.wait_for(lambda: self._buttons.get(label), timeout)
        await self._rerun(fragment_id, WidgetState(id=widget_id, trigger_value=True))

    async def _rerun(self, fragment_id: str = "", *extra) -> None:
        """Run the page (or one fragment of it) again with the kept widget states and any `extra` ones."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        rerun.rerun_script.page_script_hash = self.page_hash
        rerun.rerun_script.fragment_id = fragment_id
        rerun.rerun_script.widget_states.widgets.extend([*self._widgets.values(), *extra])
        await self.ws.send(rerun.SerializeToString())

    async def download(self, label: str, since: float, timeout: float = 600.0) -> bytes:
        """The file behind the first download button with this label drawn after `since`, fetched as a browser
        does when it is clicked."""
        url = await self.wait_for(lambda: next(
            (e.download_button.url for t, e in self.elements
             if t >= since and e.WhichOneof("type") == "download_button" and e.download_button.label == label), None),
            timeout)
        response = await asyncio.to_thread(self.http.get, self.url + url)
        response.raise_for_status()
        return response.content

    def metric(self, label: str) -> str | None:
        """The latest value shown under a metric's label."""
        values = [e.metric.body for _, e in self.elements if e.WhichOneof("type") == "metric" and e.metric.label == label]
        return values[-1] if values else None

    def shown_since(self, since: float, text: str) -> float | None:
        """When an element containing `text` first arrived after `since` (time.perf_counter), or None."""
        return next((t for t, e in self.elements if t >= since and text in str(e)), None)

    def text(self) -> str:
        return "\n".join(str(e) for _, e in self.elements)

    async def close(self) -> None:
        """Leave, as a closed tab does; nothing to do if the session never connected."""
        if self._reader is not None:
            await self.ws.close()
            self._reader.cancel()
