"""The study store under attack and load (issue 27): simultaneous wrong PINs, and readers saving while one client
rejoins in a loop. On SQLite (a temporary file) and, with --postgres, on a PostgreSQL server (a URL, or `auto` for
a throwaway cluster started as tests/test_study_store.py starts one).

    python benchmarks/bench_study_pins.py --postgres auto --seconds 10

Prints a markdown table (docs/mrmc.md quotes it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pneumonia.studies import store as store_module  # noqa: E402
from pneumonia.studies.design import commit_reading, draw_cases, next_step  # noqa: E402
from pneumonia.studies.store import MAX_PIN_FAILURES, StudyError, StudyStore  # noqa: E402


def fake_test_set(count: int = 120):
    from pneumonia.io.bundle import Predictions

    labels = np.array([i % 3 != 0 for i in range(count)], dtype=int)
    return Predictions(files=[f"test/x/image{i}.jpeg" for i in range(count)], labels=labels,
                       subtypes=np.array(["bacteria" if y else "normal" for y in labels]),
                       probabilities=np.linspace(0, 1, count))


def wrong_pins(store: StudyStore, name: str, guesses: int, waves: int = 1) -> dict:
    """`guesses` wrong PINs at once, `waves` times; how many were compared, and whether the lock held."""
    study, _ = store.create_study(name, draw_cases(fake_test_set(), 12, 0), aided=False, seed=0, threshold=0.5)
    store.join(study.join_code, "Ann", "1234")
    compared, lock = [0], threading.Lock()
    real = store_module.pin_matches

    def counting(pin, stored):
        with lock:
            compared[0] += 1
        return real(pin, stored)

    store_module.pin_matches = counting
    started = time.perf_counter()
    try:
        for wave in range(waves):
            barrier = threading.Barrier(guesses)

            def guess(i, wave=wave, barrier=barrier):
                barrier.wait()
                try:
                    store.join(study.join_code, "Ann", f"{5000 + wave * guesses + i}")
                except StudyError:
                    pass

            threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        store_module.pin_matches = real
    seconds = time.perf_counter() - started
    locked = bool(store.locked_readers(study.id))
    return {"compared": compared[0], "locked": locked, "seconds": seconds}


def saves_under_rejoin(store: StudyStore, name: str, readers: int, seconds: float) -> dict:
    """`readers` readers saving readings while one client rejoins (right PIN) in a loop: save latency, errors."""
    study, _ = store.create_study(name, draw_cases(fake_test_set(), 40, 1), aided=True, seed=1, threshold=0.5)
    cases = store.cases(study.id)
    store.join(study.join_code, "Looper", "1234")
    stop = time.monotonic() + seconds
    latencies, errors, joins = [], [], [0]

    def rejoin():
        while time.monotonic() < stop:
            try:
                store.join(study.join_code, "Looper", "1234")
                joins[0] += 1
            except StudyError as exc:
                errors.append(str(exc))

    def read(i):
        _, reader, _ = store.join(study.join_code, f"R{i}", "1234")
        while time.monotonic() < stop:
            step = next_step(study, cases, reader, store.reader_readings(reader.id))
            if step.case is None:
                break
            started = time.perf_counter()
            try:
                commit_reading(store, study, cases, reader, step.case.position, step.modality, 1, 3)
            except StudyError as exc:
                errors.append(str(exc))
                continue
            latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=rejoin)] + [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ms = np.array(latencies) * 1000
    return {"saves": len(ms), "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "joins": joins[0], "errors": len(errors)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL, or `auto` for a throwaway cluster")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--readers", type=int, default=10)
    args = parser.parse_args()

    targets, cluster = [("SQLite", str(Path(tempfile.mkdtemp()) / "studies.db"))], None
    if args.postgres == "auto":
        sys.path.insert(0, str(REPO / "tests"))
        from test_study_store import PostgresCluster, new_database

        cluster = PostgresCluster()
        targets.append(("PostgreSQL", new_database(cluster)))
    elif args.postgres:
        targets.append(("PostgreSQL", args.postgres))
    print(f"| back end | 40 wrong PINs at once: compared, locked | 8 waves of 10: compared, locked | "
          f"{args.readers} readers saving while 1 rejoins ({args.seconds:.0f} s): saves, p50, p99, rejoins, errors |")
    print("|---|---|---|---|")
    try:
        for label, target in targets:
            store = StudyStore(target)
            burst = wrong_pins(store, "Burst", 40)
            waves = wrong_pins(store, "Waves", 10, waves=8)
            load = saves_under_rejoin(store, "Load", args.readers, args.seconds)
            store.close()
            print(f"| {label} | {burst['compared']} of 40 (limit {MAX_PIN_FAILURES}), "
                  f"{'locked' if burst['locked'] else 'NOT locked'} | {waves['compared']} of 80, "
                  f"{'locked' if waves['locked'] else 'NOT locked'} | {load['saves']} saves, {load['p50']:.0f} ms, "
                  f"{load['p99']:.0f} ms, {load['joins']} rejoins, {load['errors']} errors |")
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
