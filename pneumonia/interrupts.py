"""Ctrl-C during a long command (`predict`, `pacs scan|watch`): the first press finishes the work in hand."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def first_ctrl_c_finishes_the_chunk():
    """The first Ctrl-C sets the event it yields, and the command stops once the chunk in hand is written; a second
    one interrupts at once. Raised inside the model's native code, a KeyboardInterrupt could come back as another
    error and refuse a chunk of films that were fine, so the first press never raises."""
    stop = threading.Event()

    def first_press(*_) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first_press)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
