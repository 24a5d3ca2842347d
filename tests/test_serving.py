"""The shared model slot: bounded, first come first served, and able to tell a waiter its place."""

from __future__ import annotations

import threading
import time

import pytest

from pneumonia.screening.serving import BACKGROUND, INTERACTIVE, SCORE, FairSlots


def test_no_more_than_capacity_hold_a_slot_at_once():
    slots = FairSlots(capacity=2)
    lock, inside, peak = threading.Lock(), [0], [0]

    def work():
        with slots.slot():
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert peak[0] == 2 and inside[0] == 0


def served_behind_a_holder(arrivals: list[tuple[str, int]]) -> tuple[list[str], dict[str, list[int]]]:
    """One request holds the only slot while the others arrive in the given order, 50 ms apart; then it lets
    go. Returns the order they were served in and the places each was told while waiting."""
    slots = FairSlots(capacity=1)
    order, places = [], {}
    release = threading.Event()

    def holder():
        with slots.slot():
            release.wait(10)

    def waiter(name: str, priority: int):
        with slots.slot(on_wait=lambda ahead: places.setdefault(name, []).append(ahead), poll_seconds=0.01,
                        priority=priority):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    time.sleep(0.05)
    waiters = []
    for name, priority in arrivals:
        waiters.append(threading.Thread(target=waiter, args=(name, priority)))
        waiters[-1].start()
        time.sleep(0.05)  # a fixed arrival order
    release.set()
    for t in [first, *waiters]:
        t.join(timeout=10)
    return order, places


def test_waiters_are_served_in_arrival_order_and_told_how_many_are_ahead():
    order, seen = served_behind_a_holder([("a", INTERACTIVE), ("b", INTERACTIVE), ("c", INTERACTIVE)])
    assert order == ["a", "b", "c"]
    assert seen["a"][0] == 1 and seen["b"][0] == 2 and seen["c"][0] == 3  # the holder plus those queued before
    assert all(values == sorted(values, reverse=True) for values in seen.values())  # the place only improves


def test_scores_then_explanations_then_background_work_whatever_the_arrival_order():
    order, places = served_behind_a_holder([("stability", BACKGROUND), ("lime", INTERACTIVE), ("score", SCORE)])
    assert order == ["score", "lime", "stability"]
    assert places["stability"] == [1]  # overtaken twice, but never told a worse place than it was once told
    assert places["score"][0] == 1  # only the holder: a score overtakes the explanations waiting


def test_a_waiters_place_never_grows_when_newer_requests_overtake_it():
    """Issue 19: one user saw "1 ahead", then "2 ahead" for the same request, as scores jumped the queue."""
    order, places = served_behind_a_holder(
        [("lime", INTERACTIVE), ("score 1", SCORE), ("score 2", SCORE), ("grad-cam", INTERACTIVE)]
    )
    assert order == ["score 1", "score 2", "lime", "grad-cam"]  # priorities still order the work
    assert places["lime"] == [1]  # the holder only, when it arrived; two scores then overtook it
    for name, told in places.items():
        assert told == sorted(set(told), reverse=True), (name, told)  # each new place is strictly better


def test_a_waiter_that_gives_up_leaves_the_queue():
    slots = FairSlots(capacity=1)

    def give_up(ahead: int) -> None:
        raise KeyboardInterrupt

    with slots.slot():
        with pytest.raises(KeyboardInterrupt):
            with slots.slot(on_wait=give_up):
                pass
    with slots.slot():  # would hang if the abandoned ticket still blocked the head of the queue
        pass


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        FairSlots(capacity=0)
