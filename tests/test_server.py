"""The server's start-up hooks (ui/server.py): uploads stay in memory, the model loads before the first visit,
and `streamlit run app.py` finds the server object that runs them."""

from __future__ import annotations

import asyncio
import runpy
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from starlette.formparsers import MultiPartParser
from starlette.requests import Request
from streamlit import config

import ui.common
from ui import server

REPO = Path(__file__).resolve().parents[1]


def spooled_to_disk(size: int) -> bool:
    """Parse a multipart upload of `size` bytes as the upload route does; did Starlette move it to a file?"""
    boundary = "testboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.dcm\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + b"\0" * size + f"\r\n--{boundary}--\r\n".encode()
    scope = {"type": "http", "method": "PUT", "path": "/", "query_string": b"",
             "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())]}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def parse() -> bool:
        form = await Request(scope, receive).form()
        upload = form["file"]
        assert await upload.read() == b"\0" * size
        rolled = upload.file._rolled  # SpooledTemporaryFile: True once the data went to a temporary file
        await form.close()
        return rolled

    return asyncio.run(parse())


def test_a_large_upload_stays_in_memory(monkeypatch):
    monkeypatch.setattr(MultiPartParser, "spool_max_size", MultiPartParser.spool_max_size)  # restored afterwards
    five_mb = 5 * 1024 * 1024
    assert spooled_to_disk(five_mb)  # Starlette's default: a 5 MB DICOM would be written to disk
    server.keep_uploads_in_memory()
    assert MultiPartParser.spool_max_size == config.get_option("server.maxUploadSize") * 1024 * 1024
    assert not spooled_to_disk(five_mb)


class CountingPredictor:
    loads = 0

    def __init__(self):
        CountingPredictor.loads += 1

    def warm_up(self):
        pass


@pytest.fixture
def counting_loader(monkeypatch):
    CountingPredictor.loads = 0
    monkeypatch.setattr(ui.common, "load_predictor", lambda directory: CountingPredictor())
    ui.common.load_model.clear()
    yield
    ui.common.load_model.clear()
    ui.common.FIRST_PAGE_DRAWN.clear()


def test_preloading_fills_the_cache_the_pages_read(counting_loader):
    ui.common.FIRST_PAGE_DRAWN.set()
    server.preload_model()
    loaded = ui.common.current_predictor()
    assert isinstance(loaded, CountingPredictor) and CountingPredictor.loads == 1  # the page did not load it again


def test_the_model_waits_for_the_first_page_then_loads(counting_loader, monkeypatch):
    monkeypatch.setattr(server, "PRELOAD_AFTER_S", 30.0)
    ui.common.FIRST_PAGE_DRAWN.clear()
    thread = threading.Thread(target=server.preload_model)
    thread.start()
    time.sleep(0.5)
    assert CountingPredictor.loads == 0  # no page yet: TensorFlow's import would stall its drawing
    ui.common.FIRST_PAGE_DRAWN.set()
    thread.join(timeout=10)
    assert not thread.is_alive() and CountingPredictor.loads == 1


def test_with_no_visitor_the_model_loads_after_a_short_wait(counting_loader, monkeypatch):
    monkeypatch.setattr(server, "PRELOAD_AFTER_S", 0.2)
    ui.common.FIRST_PAGE_DRAWN.clear()
    started = time.perf_counter()
    server.preload_model()
    assert CountingPredictor.loads == 1 and time.perf_counter() - started >= 0.2


def test_streamlit_run_finds_the_server_with_its_start_up_hooks():
    from streamlit.starlette import App
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(REPO / "app.py")
    assert found.is_asgi_app and found.import_string.endswith(":app")
    namespace = runpy.run_path(str(REPO / "app.py"), run_name="app")  # imported as a module, not run as a page
    assert isinstance(namespace["app"], App)
    assert namespace["app"]._user_lifespan is server.lifespan


@pytest.mark.parametrize("name", server.PAGE_MODULES)
def test_the_preloaded_modules_are_the_pages_app_py_imports(name):
    assert f"from {name} import" in (REPO / "app.py").read_text()


def test_a_page_that_has_drawn_its_first_part_lets_the_model_load():
    from streamlit.testing.v1 import AppTest

    ui.common.FIRST_PAGE_DRAWN.clear()
    page = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert page.title[0].value == "Screen chest X\u2011rays" and page.get("file_uploader")  # a non-breaking hyphen
    assert ui.common.FIRST_PAGE_DRAWN.is_set()


def test_the_server_imports_the_pages_helpers_never_the_reverse():
    """ui.common, which every page imports, must not pull in the server's start-up hooks (an import cycle)."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, ui.common; print('ui.server' in sys.modules)"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert loaded == ["False"]


RETAINED_AFTER_FREE = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
def rss_mb():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1]) / 1024
if {pin}:
    from ui.server import keep_large_blocks_out_of_the_heap
    assert keep_large_blocks_out_of_the_heap()
base = rss_mb()
for _ in range(3):  # a 20 MB array (LIME's batch), small objects made meanwhile, then the array freed
    batch = np.ones(20_000_000 // 8)
    small = [bytearray(100) for _ in range(1000)]
    del batch
print(rss_mb() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
                    reason="the mmap threshold is glibc's")
def test_a_freed_large_array_goes_back_to_the_system():
    """glibc's default keeps a freed 20 MB array in the heap (its mmap threshold rises after the first free);
    the server pins the threshold, so the memory is returned."""
    root = str(Path(__file__).resolve().parents[1])
    retained = {pin: float(subprocess.run([sys.executable, "-c", RETAINED_AFTER_FREE.format(root=root, pin=pin)],
                                          capture_output=True, text=True, check=True).stdout)
                for pin in (False, True)}
    assert retained[False] > 10  # what the server suffered: the test can tell the difference
    assert retained[True] < 5
