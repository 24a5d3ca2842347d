"""Sharing one model between many app sessions: a bounded, first-come-first-served slot for model work.

Without a bound, five users asking for LIME at once each run a full explanation in parallel on two
cores: all of them wait about five times longer and memory peaks. With it, work runs one (or
`capacity`) at a time, in arrival order, and each waiter can be told how many requests are ahead.
Work that nobody is waiting to see (the explanation readout's extra LIME seeds) asks with a lower
priority, so it never delays another user's score or first explanation.
"""

from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

SCORE = 0
"""Priority of scoring: a fraction of a second each, so every waiting user gets a score before anyone's explanation."""
INTERACTIVE = 1
"""Priority of explanations a user is waiting to see: the first LIME map, Grad-CAM."""
BACKGROUND = 2
"""Priority of extra work that can wait for every interactive request."""


class FairSlots:
    """At most `capacity` holders at once; waiters are served by priority, then in arrival order."""

    def __init__(self, capacity: int = 1):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._condition = threading.Condition()
        self._queue: list[tuple[int, int]] = []  # (priority, ticket), kept sorted
        self._running = 0
        self._tickets = itertools.count()

    @contextmanager
    def slot(
        self, on_wait: Callable[[int], None] | None = None, poll_seconds: float = 0.25, priority: int = INTERACTIVE
    ) -> Iterator[None]:
        """Hold a slot for the block. While waiting, `on_wait(ahead)` is called (outside the lock) whenever the
        number of requests ahead falls, so a page can show "queued: 2 ahead". A running holder is never
        interrupted: priority only orders the waiters.

        The place told never grows: when a request of higher priority overtakes this one, the waiter keeps the
        lowest number it has been told (a place that climbs from 1 back to 2 reads as a fault), and is told
        again once the real count falls below it."""
        with self._condition:
            ticket = (priority, next(self._tickets))
            self._queue.append(ticket)
            self._queue.sort()
        shown = None
        try:
            while True:
                with self._condition:
                    if self._queue[0] == ticket and self._running < self.capacity:
                        self._queue.pop(0)
                        self._running += 1
                        self._condition.notify_all()
                        break
                    ahead = self._running + self._queue.index(ticket)
                    if shown is not None:
                        ahead = min(ahead, shown)
                    if ahead == shown or on_wait is None:
                        self._condition.wait(poll_seconds)
                        continue
                shown = ahead
                on_wait(ahead)
        except BaseException:
            with self._condition:
                if ticket in self._queue:
                    self._queue.remove(ticket)
                    self._condition.notify_all()
            raise
        try:
            yield
        finally:
            with self._condition:
                self._running -= 1
                self._condition.notify_all()
