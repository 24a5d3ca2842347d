"""What the server does once, when it starts (not per session): keep uploads in memory, and load the model
before anyone asks for it. `app.py` hands `lifespan` to `st.App`.

Importing TensorFlow holds Python's GIL for long stretches (about 5 s of CPU here), which would stall a
first visitor's page while it is being drawn. So the model starts loading as soon as a page has drawn its
first part (the page then waits for the model itself, behind a spinner), or PRELOAD_AFTER_S after the
start if nobody has visited yet."""

from __future__ import annotations

import importlib
import threading
from contextlib import asynccontextmanager

PAGE_MODULES = ("ui.screen", "ui.threshold", "ui.reader_mode", "ui.reader_study", "ui.about")
PRELOAD_AFTER_S = 3.0
M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024


def keep_uploads_in_memory() -> None:
    """Starlette parses an upload into a temporary file on disk once it passes 1 MB, and a DICOM often does.
    No upload may touch the disk, so the spool limit is raised to the largest upload the server accepts."""
    from starlette.formparsers import MultiPartParser
    from streamlit import config

    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size,
                                         config.get_option("server.maxUploadSize") * 1024 * 1024)


def preload_model() -> None:
    """Fill the model cache that the pages read, outside any session. The page modules are imported at once
    (quick), so a first visit does not wait on them; the model once a page is drawn or PRELOAD_AFTER_S have
    passed. A broken model is left for the pages to report in their own words. ui.common is imported here,
    not at the top: app.py imports this module before Streamlit's runtime exists, and ui.common's caches
    would warn that there is none."""
    from pneumonia.errors import PneumoniaError
    from ui.common import FIRST_PAGE_DRAWN, current_predictor

    for page in PAGE_MODULES:
        importlib.import_module(page)
    FIRST_PAGE_DRAWN.wait(PRELOAD_AFTER_S)
    try:
        current_predictor()
    except PneumoniaError:
        pass


def quiet_start() -> None:
    """Keep the server's output to Streamlit's own lines: TensorFlow's start-up chatter (oneDNN, cudart, absl,
    "failed call to cuInit" on a machine without a GPU) goes, as on the command line (pneumonia.tensorflow_logs). The
    first `import tensorflow`, on whichever thread, runs with file descriptor 2 silenced; Python's own
    errors after it are untouched. PNEUMONIA_VERBOSE=1 keeps every line."""
    import os

    from pneumonia.tensorflow_logs import quiet_logs

    quiet_logs(verbose=os.environ.get("PNEUMONIA_VERBOSE") == "1")


def keep_large_blocks_out_of_the_heap() -> bool:
    """Pin glibc's mmap threshold at its 128 KiB default. glibc raises the threshold each time a large mmapped
    block is freed, after which LIME's 20 MB batches and the reports' buffers come from the heap and can stay
    there once freed (tests/test_server.py: 19 MB kept against 0.3 MB). A pinned threshold gives each large
    block its own mapping, returned to the system when freed. False where malloc is not glibc's (macOS, musl),
    which has nothing to pin."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1


@asynccontextmanager
async def lifespan(_app):
    quiet_start()
    keep_large_blocks_out_of_the_heap()
    keep_uploads_in_memory()
    threading.Thread(target=preload_model, name="model-preload", daemon=True).start()
    yield
