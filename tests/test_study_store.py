"""The reader-study store, its rules and its numbers: on SQLite (a temporary file) and on a real PostgreSQL server
(a throwaway cluster started here with Debian's initdb and pg_ctl; those tests skip, saying why, where the server
is not installed or cannot start). A process killed while writing loses no reading it acknowledged."""

from __future__ import annotations

import base64
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pneumonia.io.bundle import Predictions
from pneumonia.studies import store as store_module
from pneumonia.studies.design import (
    case_id,
    commit_reading,
    draw_cases,
    is_finished,
    next_step,
    rating,
    reader_positions,
)
from pneumonia.studies.results import (
    EXPORT_COLUMNS,
    analyse_csv,
    class_mean,
    export_csv,
    operating_points,
    plain_words,
    progress_rows,
    snapshot,
)
from pneumonia.studies.store import (
    AIDED,
    CLOSED,
    JOIN_ALPHABET,
    MAX_PIN_FAILURES,
    OPEN,
    UNAIDED,
    StudyError,
    StudyStore,
    clean_text,
    normalise_join_code,
)

REPO = Path(__file__).resolve().parents[1]


def fake_test_set(count: int = 40, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    labels = np.array([i % 3 != 0 for i in range(count)], dtype=int)  # 2 PNEUMONIA to 1 NORMAL, as the test set
    return Predictions(
        files=[f"test/{'PNEUMONIA' if y else 'NORMAL'}/image{i}.jpeg" for i, y in enumerate(labels)],
        labels=labels,
        subtypes=np.array(["bacteria" if y else "normal" for y in labels]),
        probabilities=np.clip(labels * 0.5 + rng.uniform(0, 0.5, count), 0, 1),
    )


# ---------------------------------------------------------------- a throwaway PostgreSQL server


def _postgres_binaries() -> tuple[str, str] | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{folder}/initdb", os.X_OK) and os.access(f"{folder}/pg_ctl", os.X_OK):
            return f"{folder}/initdb", f"{folder}/pg_ctl"
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return (initdb, pg_ctl) if initdb and pg_ctl else None


class PostgresCluster:
    """initdb in a temporary folder and a server on a Unix socket there (no TCP port), as a non-root user
    (PostgreSQL refuses to run as root): `postgres` where Debian's package created it."""

    def __init__(self):
        binaries = _postgres_binaries()
        if binaries is None:
            pytest.skip("PostgreSQL is not installed (`make test` installs Debian's `postgresql`; apt-get failed?)")
        self.initdb, self.pg_ctl = binaries
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no `postgres` user to run the PostgreSQL server as")
        self.folder = Path(tempfile.mkdtemp(prefix="pneumonia-pg-"))
        self.data = self.folder / "data"
        with socket.socket() as s:  # a port number only names the socket file; nothing listens on TCP
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        if self.user:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "study", "--no-sync", "-E", "UTF8")
        self.start()
        self.url = f"postgresql+psycopg://study@/postgres?host={self.folder}&port={self.port}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(args, capture_output=True, text=True, timeout=120,
                                user=self.user.pw_uid if self.user else None,
                                group=self.user.pw_gid if self.user else None)
        if result.returncode:
            shutil.rmtree(self.folder, ignore_errors=True)
            pytest.skip(f"PostgreSQL could not start: {' '.join(args[:2])}: {result.stderr.strip()[-300:]}")

    def start(self) -> None:
        options = f"-k {self.folder} -p {self.port} -c listen_addresses='' -c fsync=on"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")

    def crash(self) -> None:
        """Stop at once, as a power cut would: no checkpoint, recovery from the WAL on the next start."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        subprocess.run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"], capture_output=True,
                       timeout=60, user=self.user.pw_uid if self.user else None,
                       group=self.user.pw_gid if self.user else None)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "studies.db")
    return new_database(request.getfixturevalue("postgres"))


def new_database(cluster: PostgresCluster) -> str:
    engine = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    name = f"t{time.monotonic_ns()}"
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return cluster.url.replace("/postgres?", f"/{name}?")


@pytest.fixture
def store(target):
    opened = StudyStore(target)
    yield opened
    opened.close()


def new_study(store: StudyStore, aided: bool = True, count: int = 12, name: str = "Ward round 3"):
    cases = draw_cases(fake_test_set(max(40, 3 * count + 3)), count, seed=5)
    study, teacher_code = store.create_study(name, cases, aided=aided, seed=5, threshold=0.5)
    return study, teacher_code, cases


def read_everything(store, study, cases, reader, call_of=lambda case, modality: case.truth, confidence=4):
    """Read every case in the reader's order, in every modality; returns how many readings were stored."""
    stored = 0
    while (step := next_step(study, cases, reader, store.reader_readings(reader.id))).case is not None:
        _, new = commit_reading(store, study, cases, reader, step.case.position, step.modality,
                                call_of(step.case, step.modality), confidence)
        stored += new
    return stored


# ---------------------------------------------------------------- codes and free text


def test_codes_are_long_random_and_the_teacher_code_is_never_stored(store, target):
    studies = [store.create_study(f"Study {i}", draw_cases(fake_test_set(), 6, i), aided=True, seed=i,
                                  threshold=0.5) for i in range(20)]
    joins = {s.join_code for s, _ in studies}
    teachers = {code for _, code in studies}
    assert len(joins) == len(teachers) == 20
    for study, code in studies:
        assert len(base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))) * 8 >= 128
        assert normalise_join_code(study.join_code) == study.join_code
        symbols = study.join_code.replace("-", "")
        assert len(symbols) == 12 and set(symbols) <= set(JOIN_ALPHABET)  # 12 x log2(31) = 59 bits
        assert store.study_for_teacher(code).id == study.id
    assert store.study_for_teacher("") is None and store.study_for_teacher(studies[0][0].join_code) is None
    assert store.study_for_teacher(studies[0][1][:-1]) is None
    if target.endswith(".db"):  # the SQLite file, WAL included, holds no teacher code and no PIN
        store.join(studies[0][0].join_code, "Ann", "482915")
        store.close()
        raw = b"".join(Path(p).read_bytes() for p in glob.glob(target + "*"))
        assert not any(code.encode() in raw for code in teachers) and b"482915" not in raw
        assert studies[0][0].join_code.encode() in raw  # the join code is shared by the class: kept as it is
        assert oct(Path(target).stat().st_mode & 0o777) == "0o600"


def test_a_join_code_is_accepted_however_it_is_typed(store):
    study, _, _ = new_study(store)
    sloppy = " " + study.join_code.lower().replace("-", " ") + " "
    assert store.study_by_join_code(sloppy).id == study.id
    assert normalise_join_code("ABCD-EFGH-IJK0") is None  # I and 0 are not in the alphabet
    with pytest.raises(StudyError, match="No study has this join code"):
        store.join("ABCD-EFGH-JKMN", "Ann", "1234")


@pytest.mark.parametrize("text", ["<script>alert(1)</script>", "=HYPERLINK(\"x\")", "**bold**", "a\x00b", "-1",
                                  "Ann; DROP TABLE readers", "x" * 25, "   "])
def test_free_text_that_could_become_markup_formulas_or_control_characters_is_refused(text):
    with pytest.raises(StudyError):
        clean_text(text, "pseudonym", 24)


def test_free_text_keeps_letters_of_any_language_and_tidies_spaces():
    assert clean_text("  Zoë   Ngũgĩ-2 ", "pseudonym", 24) == "Zoë Ngũgĩ-2"
    assert clean_text("Ward_3.b", "pseudonym", 24) == "Ward_3.b"


# ---------------------------------------------------------------- readers, PINs, returning


def test_a_reader_comes_back_with_pseudonym_and_pin_and_a_wrong_pin_is_refused(store):
    study, _, _ = new_study(store)
    _, ann, new = store.join(study.join_code, "Ann", "1234")
    assert new
    _, again, new = store.join(study.join_code.lower(), " ann ", "1234")  # another device, typed differently
    assert (again.id, new) == (ann.id, False)
    with pytest.raises(StudyError, match="do not let you in"):
        store.join(study.join_code, "Ann", "4321")
    for pin in ("12", "abcd", "123456789"):
        with pytest.raises(StudyError, match="4 to 8 digits"):
            store.join(study.join_code, "Bob", pin)


def test_a_pseudonym_locks_after_too_many_wrong_pins_saying_nothing_new_and_the_teacher_unlocks_it(store):
    study, _, _ = new_study(store)
    _, ann, _ = store.join(study.join_code, "Ann", "1234")
    answers = set()
    for _ in range(MAX_PIN_FAILURES):
        with pytest.raises(StudyError) as wrong:
            store.join(study.join_code, "Ann", "0000")
        answers.add(str(wrong.value))
    assert store.locked_readers(study.id) == [ann]
    with pytest.raises(StudyError) as locked:
        store.join(study.join_code, "Ann", "1234")  # even the right PIN: guessing has stopped
    # A locked pseudonym answers exactly as a wrong PIN does, so the answer does not tell a stranger it is locked.
    assert answers == {str(locked.value)} == {store_module.WRONG_PIN}
    assert "locked out" in store_module.WRONG_PIN and "ask your teacher" in store_module.WRONG_PIN

    store.unlock_reader(study.id, ann.id)
    assert store.locked_readers(study.id) == []
    _, again, new = store.join(study.join_code, "Ann", "1234")
    assert (again.id, new) == (ann.id, False)


def test_the_teacher_renames_a_reader_who_keeps_their_readings_and_pin(store):
    study, _, cases = new_study(store)
    _, ann, _ = store.join(study.join_code, "Jane Smith", "1234")
    _, bob, _ = store.join(study.join_code, "Bob", "1234")
    position = next_step(study, cases, ann, []).case.position
    commit_reading(store, study, cases, ann, position, UNAIDED, 1, 3)
    renamed = store.rename_reader(study.id, ann.id, "Reader 7")
    assert (renamed.id, renamed.pseudonym) == (ann.id, "Reader 7")
    assert store.join(study.join_code, "reader 7", "1234")[1].id == ann.id
    assert len(store.reader_readings(ann.id)) == 1
    with pytest.raises(StudyError, match="Another reader"):
        store.rename_reader(study.id, bob.id, "READER 7")
    with pytest.raises(StudyError, match="letters, digits"):
        store.rename_reader(study.id, bob.id, "=cmd()")


def test_a_study_takes_at_most_its_cap_of_readers(store, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_READERS", 3)
    study, _, _ = new_study(store)
    for name in ("A", "B", "C"):
        store.join(study.join_code, name, "1234")
    with pytest.raises(StudyError, match="has its 3 readers"):
        store.join(study.join_code, "D", "1234")
    assert store.join(study.join_code, "b", "1234")[2] is False  # returning readers still get in
    assert len(store.readers(study.id)) == 3


def test_a_right_pin_resets_the_count_of_wrong_ones(store):
    study, _, _ = new_study(store)
    store.join(study.join_code, "Ann", "1234")
    for _ in range(3):
        for _ in range(MAX_PIN_FAILURES - 1):
            with pytest.raises(StudyError):
                store.join(study.join_code, "Ann", "0000")
        store.join(study.join_code, "Ann", "1234")


# ---------------------------------------------------------------- readings: the sequential design


def test_a_reader_reads_alone_then_with_the_ai_in_their_own_order(store):
    study, _, cases = new_study(store)
    _, ann, _ = store.join(study.join_code, "Ann", "1234")
    _, bob, _ = store.join(study.join_code, "Bob", "1234")
    order = reader_positions(cases, ann)
    assert sorted(order) == list(range(len(cases))) and order != reader_positions(cases, bob)
    step = next_step(study, cases, ann, [])
    assert (step.case.position, step.modality, step.number) == (order[0], UNAIDED, 1)
    with pytest.raises(StudyError, match="without the AI first"):
        commit_reading(store, study, cases, ann, order[0], AIDED, 1, 3)
    with pytest.raises(StudyError, match="not the next one"):
        commit_reading(store, study, cases, ann, order[1], UNAIDED, 1, 3)
    first, new = commit_reading(store, study, cases, ann, order[0], UNAIDED, 1, 3)
    assert new and (first.call, first.confidence) == (1, 3)
    step = next_step(study, cases, ann, store.reader_readings(ann.id))
    assert (step.case.position, step.modality, step.unaided) == (order[0], AIDED, first)
    commit_reading(store, study, cases, ann, order[0], AIDED, 0, 2)
    step = next_step(study, cases, ann, store.reader_readings(ann.id))
    assert (step.case.position, step.modality, step.number) == (order[1], UNAIDED, 2)


def test_a_repeated_reading_is_stored_once_and_never_changed(store):
    study, _, cases = new_study(store)
    _, ann, _ = store.join(study.join_code, "Ann", "1234")
    position = next_step(study, cases, ann, []).case.position
    first, new = commit_reading(store, study, cases, ann, position, UNAIDED, 1, 5)
    again, new_again = commit_reading(store, study, cases, ann, position, UNAIDED, 0, 1)  # a second click, changed
    assert new and not new_again and again == first
    assert len(store.readings(study.id)) == 1


def test_readings_are_checked(store):
    study, _, cases = new_study(store, aided=False)
    _, ann, _ = store.join(study.join_code, "Ann", "1234")
    position = next_step(study, cases, ann, []).case.position
    for call, confidence, message in ((2, 3, "NORMAL or PNEUMONIA"), (1, 0, "how sure"), (1, 6, "how sure")):
        with pytest.raises(StudyError, match=message):
            store.record_reading(ann.id, position, UNAIDED, call, confidence)
    with pytest.raises(StudyError, match="no AI-aided reading"):
        store.record_reading(ann.id, position, AIDED, 1, 3)
    with pytest.raises(StudyError, match="no case"):
        store.record_reading(ann.id, 999, UNAIDED, 1, 3)
    assert read_everything(store, study, cases, ann) == len(cases)
    assert is_finished(study, cases, store.reader_readings(ann.id))


def test_a_closed_study_takes_no_readings_and_no_new_readers_but_returning_ones_get_in(store):
    study, _, cases = new_study(store)
    _, ann, _ = store.join(study.join_code, "Ann", "1234")
    store.set_status(study.id, CLOSED)
    with pytest.raises(StudyError, match="closed"):
        store.join(study.join_code, "Bob", "1234")
    closed, again, _ = store.join(study.join_code, "Ann", "1234")
    assert (closed.status, again.id) == (CLOSED, ann.id)
    with pytest.raises(StudyError, match="closed"):
        commit_reading(store, study, cases, ann, next_step(study, cases, ann, []).case.position, UNAIDED, 1, 3)
    store.set_status(study.id, OPEN)
    assert read_everything(store, store.study(study.id), cases, ann) == 2 * len(cases)


def test_study_names_are_unique_whatever_their_case_and_freed_by_deletion(store):
    study, _, _ = new_study(store, name="Ward 3")
    with pytest.raises(StudyError, match="exists already"):
        new_study(store, name="ward  3")
    assert store.study_by_name("WARD 3").id == study.id
    store.delete_study(study.id)
    assert new_study(store, name="ward 3")[0].name == "ward 3"


def test_a_study_needs_both_classes_and_a_sensible_size(store):
    cases = draw_cases(fake_test_set(), 12, 0)
    with pytest.raises(StudyError, match="both NORMAL and PNEUMONIA"):
        store.create_study("One class", [c for c in cases if c.truth], aided=True, seed=0, threshold=0.5)
    with pytest.raises(StudyError, match="4 to 200 cases"):
        store.create_study("Tiny", cases[:3], aided=True, seed=0, threshold=0.5)


def test_deleting_a_study_deletes_all_its_readings_and_nothing_else(store):
    study, _, cases = new_study(store, name="Gone")
    kept, _, kept_cases = new_study(store, name="Kept")
    for s, c in ((study, cases), (kept, kept_cases)):
        _, reader, _ = store.join(s.join_code, "Ann", "1234")
        read_everything(store, s, c, reader)
    assert store.delete_study(study.id) == 2 * len(cases)
    assert store.study(study.id) is None and store.study_by_join_code(study.join_code) is None
    with store.engine.connect() as conn:
        for table in ("study_cases", "readers", "readings"):
            ids = {row[0] for row in conn.execute(sa.text(f"SELECT DISTINCT study_id FROM {table}"))}
            assert ids == {kept.id}, table
    assert len(store.readings(kept.id)) == 2 * len(kept_cases)


def test_many_readers_at_once_lose_and_duplicate_nothing(store):
    """Ten readers in ten threads, each click sent twice at once (a double tap, a retried request)."""
    study, _, cases = new_study(store, count=10)
    readers = [store.join(study.join_code, f"Reader {i}", "1234")[1] for i in range(10)]
    errors = []

    def run(reader):
        try:
            while (step := next_step(study, cases, reader, store.reader_readings(reader.id))).case is not None:
                args = (store, study, cases, reader, step.case.position, step.modality, step.case.truth, 3)
                twin = threading.Thread(target=commit_reading, args=args)
                twin.start()
                commit_reading(*args)
                twin.join()
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    readings = store.readings(study.id)
    keys = [(r.reader_id, r.position, r.modality) for r in readings]
    assert len(keys) == len(set(keys)) == 10 * len(cases) * 2


# ---------------------------------------------------------------- migrations


def test_a_new_database_is_migrated_to_the_current_schema(store):
    assert store.schema_version() == store_module.SCHEMA_VERSION == store_module.MIGRATIONS[-1][0]
    with store.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"schema_version", "studies", "study_cases", "readers", "readings", "study_images"} <= tables


def test_a_version_1_database_is_migrated_to_version_2_keeping_its_studies(target):
    old = StudyStore.__new__(StudyStore)  # a store that knows migration 1 only, as the code before did
    old.url, old.clock = sa.make_url(store_module.database_url(target)), time.time
    if old.url.get_backend_name() == "sqlite":
        store_module._prepare_sqlite_file(old.url)
    old.engine = sa.create_engine(old.url)
    if old.engine.dialect.name == "sqlite":
        store_module._sqlite_setup(old.engine)
    old._migrate_lock = threading.Lock()
    assert old.migrate(store_module.MIGRATIONS[:1]) == 1
    with old.engine.connect() as conn:
        assert "study_images" not in sa.inspect(conn).get_table_names()
    study, _, cases = new_study(old)
    old.engine.dispose()
    opened = StudyStore(target)
    assert opened.schema_version() == 2
    assert opened.study(study.id) == study and opened.cases(study.id) == cases
    assert opened.case_image(study.id, "sha256:00") is None
    opened.close()


def test_a_later_migration_runs_once_and_keeps_the_data(store, target):
    study, _, cases = new_study(store)
    calls = []

    def add_column(conn):
        calls.append(1)
        conn.execute(sa.text("ALTER TABLE studies ADD COLUMN note VARCHAR(40)"))

    version = len(store_module.MIGRATIONS) + 1
    later = [*store_module.MIGRATIONS, (version, "a note per study", add_column)]
    assert store.migrate(later) == version
    assert store.migrate(later) == version and calls == [1]
    assert store.study(study.id) == study and len(store.cases(study.id)) == len(cases)
    store.close()
    with pytest.raises(StudyError, match="newer than this code"):
        StudyStore(target)  # this code does not know the later version: it must not write to such a database


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path):
    opened = StudyStore(str(tmp_path / "s.db"))
    with opened.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    opened.close()


def test_the_default_database_lives_outside_the_checkout(monkeypatch, tmp_path):
    from pneumonia.config import study_database

    monkeypatch.delenv("PNEUMONIA_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert study_database() == str(tmp_path / "pneumonia" / "studies.db")
    monkeypatch.delenv("XDG_DATA_HOME")
    default = Path(study_database())
    assert default == Path.home() / ".local" / "share" / "pneumonia" / "studies.db"
    assert REPO not in default.parents
    monkeypatch.setenv("PNEUMONIA_DB", "postgresql+psycopg://someone@somewhere/db")
    assert study_database() == "postgresql+psycopg://someone@somewhere/db"


# ---------------------------------------------------------------- durability: killed mid-study

WRITER = """
import sys, threading
from pneumonia.studies.store import StudyStore
from pneumonia.studies.design import commit_reading, next_step
store = StudyStore(sys.argv[1])
study = store.study(int(sys.argv[2]))
cases = store.cases(study.id)
lock = threading.Lock()
def run(reader):
    while (step := next_step(study, cases, reader, store.reader_readings(reader.id))).case is not None:
        reading, _ = commit_reading(store, study, cases, reader, step.case.position, step.modality, 1, 3)
        with lock:  # acknowledged only once committed, as the app does
            print(reading.reader_id, reading.position, reading.modality, flush=True)
threads = [threading.Thread(target=run, args=(r,)) for r in store.readers(study.id)]
[t.start() for t in threads]
[t.join() for t in threads]
print("done", flush=True)
"""


def _acknowledged_until_killed(target: str, study_id: int, wanted: int, before_kill=None) -> set:
    """Run the writer in a child process; after `wanted` acknowledgements, call before_kill (or SIGKILL the
    child); return every reading it acknowledged."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, target, str(study_id)], cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acknowledged = set()
    deadline = time.monotonic() + 120
    for line in child.stdout:
        if line.strip() == "done" or time.monotonic() > deadline:
            break
        reader, position, modality = line.split()
        acknowledged.add((int(reader), int(position), modality))
        if len(acknowledged) >= wanted:
            (before_kill or (lambda: None))()
            child.send_signal(signal.SIGKILL)
            break
    child.stdout.close()
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    return acknowledged


def test_sqlite_a_process_killed_while_writing_loses_nothing_it_acknowledged(tmp_path):
    path = str(tmp_path / "studies.db")
    opened = StudyStore(path)
    study, _, cases = new_study(opened, count=40)
    for i in range(6):
        opened.join(study.join_code, f"Reader {i}", "1234")
    opened.close()
    acknowledged = _acknowledged_until_killed(path, study.id, wanted=150)
    assert len(acknowledged) >= 150
    with sqlite3.connect(path) as raw:  # a plain connection, as after a restart
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = raw.execute("SELECT reader_id, position, modality FROM readings").fetchall()
    assert len(stored) == len(set(stored))
    assert acknowledged <= set(stored)
    again = StudyStore(path)  # and the store carries on from there
    readers = again.readers(study.id)
    assert sum(read_everything(again, study, cases, r) for r in readers) + len(stored) == 6 * 40 * 2
    again.close()


def test_postgresql_a_server_crash_mid_study_loses_nothing_acknowledged(postgres):
    target = new_database(postgres)
    opened = StudyStore(target)
    study, _, _ = new_study(opened, count=40)
    for i in range(6):
        opened.join(study.join_code, f"Reader {i}", "1234")
    opened.close()
    acknowledged = _acknowledged_until_killed(target, study.id, wanted=100, before_kill=postgres.crash)
    postgres.start()
    again = StudyStore(target)
    stored = {(r.reader_id, r.position, r.modality) for r in again.readings(study.id)}
    assert len(acknowledged) >= 100 and acknowledged <= stored
    again.close()


# ---------------------------------------------------------------- design and results


def test_cases_are_drawn_by_seed_and_stratified_by_class():
    test = fake_test_set(120)
    share = test.labels.mean()
    for seed in range(5):
        for count in (4, 10, 25):
            cases = draw_cases(test, count, seed)
            assert cases == draw_cases(test, count, seed)
            assert [c.position for c in cases] == list(range(count))
            assert abs(sum(c.truth for c in cases) - share * count) <= 1
            assert len({c.file for c in cases}) == count
    assert draw_cases(test, 10, 0) != draw_cases(test, 10, 1)


def test_rating_orders_calls_and_confidences_from_sure_normal_to_sure_pneumonia():
    scale = [rating(0, c) for c in (5, 4, 3, 2, 1)] + [rating(1, c) for c in (1, 2, 3, 4, 5)]
    assert scale == list(range(1, 11))
    assert all((rating(call, c) >= 6) == bool(call) for call in (0, 1) for c in range(1, 6))
    assert case_id(0) == "case001"


def test_export_is_the_analyse_format_with_finished_readers_only(store):
    study, _, cases = new_study(store, count=8)
    finished = []
    for i, name in enumerate(["Ann", "bob", "Cai"]):
        _, reader, _ = store.join(study.join_code, name, "1234")
        def call_of(case, modality, i=i):  # Ann always right; bob and Cai wrong alone, right with the AI
            return case.truth if modality == AIDED or i == 0 else 1 - case.truth

        read_everything(store, study, cases, reader, call_of=call_of, confidence=2 + i)
        finished.append(reader)
    _, dan, _ = store.join(study.join_code, "Dan", "1234")
    commit_reading(store, study, cases, dan, next_step(study, cases, dan, []).case.position, UNAIDED, 1, 3)
    snap = snapshot(store, study)
    lines = export_csv(snap).splitlines()
    assert lines[0] == ",".join(EXPORT_COLUMNS) == "reader,case,truth,modality,rating,order"
    table = pd.read_csv(pd.io.common.StringIO(export_csv(snap)))
    for reader in finished:  # order: the case's place in that reader's own random order, replayable from the store
        own = table[(table.reader == reader.pseudonym) & (table.modality == "unaided")]
        by_place = own.sort_values("order")["case"].tolist()
        assert by_place == [case_id(p) for p in reader_positions(cases, reader)]
        assert sorted(own["order"]) == list(range(1, len(cases) + 1))
    assert len(table) == 3 * len(cases) * 2 and set(table["reader"]) == {"Ann", "bob", "Cai"}
    assert set(table["modality"]) == {"unaided", "aided"} and set(table["rating"]) <= set(range(1, 11))
    truth = {case_id(c.position): c.truth for c in cases}
    assert all(truth[row.case] == row.truth for row in table.itertuples())
    assert len(pd.read_csv(pd.io.common.StringIO(export_csv(snap, include_unfinished=True)))) == len(table) + 1
    bob = table[(table.reader == "bob") & (table.modality == "unaided")]
    assert ((bob.rating >= 6) == (bob.truth == 0)).all()  # bob called every case wrong alone

    rows = {r["reader"]: r for r in progress_rows(snap, now=time.time())}
    assert rows["Dan"]["read alone"] == f"1 of {len(cases)}" and rows["Dan"]["finished"] == "no"
    assert rows["Ann"]["read with the AI"] == f"{len(cases)} of {len(cases)}" and rows["Ann"]["finished"] == "yes"
    points = {(p.reader, p.modality): p for p in operating_points(snap)}
    assert (points[("bob", UNAIDED)].sensitivity, points[("bob", UNAIDED)].specificity) == (0.0, 0.0)
    assert (points[("bob", AIDED)].sensitivity, points[("bob", AIDED)].specificity) == (1.0, 1.0)
    assert not points[("Dan", UNAIDED)].finished
    mean = class_mean(list(points.values()))
    assert mean[UNAIDED] == pytest.approx((1 / 3, 1 / 3)) and mean[AIDED] == (1.0, 1.0)


def test_the_analysis_is_the_mrmc_module_on_the_exported_file(store, tmp_path):
    from pneumonia.studies import mrmc

    study, _, cases = new_study(store, count=12)
    rng = np.random.default_rng(0)
    for i in range(4):
        _, reader, _ = store.join(study.join_code, f"R{i}", "1234")
        read_everything(store, study, cases, reader,
                        call_of=lambda case, modality: int(rng.random() < (0.9 if case.truth else 0.25)),
                        confidence=int(rng.integers(1, 6)))
    text = export_csv(snapshot(store, study))
    path = tmp_path / "readings.csv"
    path.write_text(text)
    ours, theirs = analyse_csv(text), mrmc.analyse(mrmc.read_readings(path))
    assert ours.to_json() == theirs.to_json()
    words = plain_words(ours, model_auc=0.9)
    assert "**4 readers** finished all **12 cases**" in words and "with the AI" in words
    assert f"{ours.mean_auc['unaided']:.2f} alone" in words


def test_study_export_writes_the_readings_csv_and_names_a_missing_study(tmp_path, capsys):
    from pneumonia.cli import main

    path = str(tmp_path / "studies.db")
    opened = StudyStore(path)
    study, _, cases = new_study(opened, count=6, name="Export me")
    for name in ("Ann", "Bob"):
        read_everything(opened, study, cases, opened.join(study.join_code, name, "1234")[1])
    _, late, _ = opened.join(study.join_code, "Late", "1234")
    commit_reading(opened, study, cases, late, next_step(study, cases, late, []).case.position, UNAIDED, 0, 2)
    expected = export_csv(snapshot(opened, study))
    opened.close()
    out = tmp_path / "readings.csv"
    assert main(["study", "export", "export ME", "--csv", str(out), "--db", path]) == 0
    assert out.read_text() == expected
    assert capsys.readouterr().out.strip() == (
        f"Export me: 24 readings of 2 of 3 readers, 6 cases, written to {out}")
    assert main(["study", "export", "Export me", "--csv", str(out), "--db", path, "--include-unfinished"]) == 0
    assert len(out.read_text().splitlines()) == 1 + 24 + 1
    assert main(["study", "export", "Nope", "--csv", str(out), "--db", path]) == 2
    err = capsys.readouterr().err
    assert "error: No study is called 'Nope'" in err and "Studies there: 'Export me'." in err


def test_study_export_reads_pneumonia_db_and_says_when_the_database_cannot_be_opened(tmp_path, monkeypatch, capsys):
    from pneumonia.cli import main

    monkeypatch.setenv("PNEUMONIA_DB", str(tmp_path / "env.db"))
    opened = StudyStore()
    assert opened.url.database == str(tmp_path / "env.db")
    new_study(opened, name="From env")
    opened.close()
    assert main(["study", "export", "From env", "--csv", str(tmp_path / "o.csv")]) == 0
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["study", "export", "x", "--csv", str(tmp_path / "o.csv"), "--db", str(blocked / "s.db")]) == 2
    assert "error:" in capsys.readouterr().err


def test_study_export_has_help_naming_its_arguments(capsys):
    from pneumonia.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["study", "export", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pneumonia study export")
    for option in ("NAME", "--csv", "--db", "--include-unfinished"):
        assert re.search(rf"^ {{2,}}{re.escape(option)}\b", out, re.MULTILINE), option


# ---------------------------------------------------------------- under attack and load (issue 27)


def test_forty_wrong_pins_at_once_are_compared_exactly_the_limit_times(store, monkeypatch):
    """40 simultaneous wrong PINs: each takes one attempt with a conditional UPDATE before its PIN is compared, so
    exactly MAX_PIN_FAILURES are compared and the pseudonym is then locked (before the fix, PostgreSQL compared all
    40 and the count ended at 3)."""
    study, _, _ = new_study(store)
    _, ann, _ = store.join(study.join_code, "Ann", "1234")
    compared, lock = [], threading.Lock()
    real = store_module.pin_matches

    def counting(pin, stored):
        with lock:
            compared.append(pin)
        return real(pin, stored)

    monkeypatch.setattr(store_module, "pin_matches", counting)
    start, answers = threading.Barrier(40), []

    def guess(i):
        start.wait()
        try:
            store.join(study.join_code, "Ann", f"{5000 + i}")
            answers.append("in")
        except StudyError as exc:
            answers.append(str(exc))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert answers == [store_module.WRONG_PIN] * 40
    assert len(compared) == MAX_PIN_FAILURES
    assert store.locked_readers(study.id) == [ann]
    with pytest.raises(StudyError):
        store.join(study.join_code, "Ann", "1234")
    assert len(compared) == MAX_PIN_FAILURES  # locked: not even the right PIN is compared


def test_no_pin_is_hashed_or_compared_inside_a_write_transaction(store, monkeypatch):
    """scrypt takes tens of milliseconds; inside BEGIN IMMEDIATE it held every other reader's save on SQLite."""
    depth, seen = [0], []
    write = store._write

    @contextlib.contextmanager
    def counted_write():
        with write() as conn:
            depth[0] += 1
            try:
                yield conn
            finally:
                depth[0] -= 1

    monkeypatch.setattr(store, "_write", counted_write)
    for name in ("hash_pin", "pin_matches"):
        real = getattr(store_module, name)
        monkeypatch.setattr(store_module, name, lambda *a, real=real, name=name: (seen.append((name, depth[0])),
                                                                                   real(*a))[1])
    study, _, _ = new_study(store)
    store.join(study.join_code, "Ann", "1234")  # new: hashed
    store.join(study.join_code, "Ann", "1234")  # returning: compared
    with pytest.raises(StudyError):
        store.join(study.join_code, "Ann", "9999")
    names = [name for name, _ in seen]  # pin_matches hashes too
    assert names[0] == "hash_pin" and names.count("pin_matches") == 2
    assert all(inside == 0 for _, inside in seen), seen


def test_a_locked_sqlite_database_is_retried_then_answered_in_plain_words(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(store_module, "BUSY_RETRIES", (0.05, 0.05))
    path = tmp_path / "studies.db"
    opened = StudyStore(str(path))
    study, _, _ = new_study(opened)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(store_module.StudyBusy, match="busy .* nothing was changed"):
            opened.join(study.join_code, "Ann", "1234")
    finally:
        blocker.execute("ROLLBACK")
    assert opened.readers(study.id) == []

    # A lock released during the retries: the join goes through, once.
    monkeypatch.setattr(store_module, "BUSY_RETRIES", (0.3, 0.6, 1.0))
    blocker.execute("BEGIN IMMEDIATE")
    threading.Timer(0.4, lambda: blocker.execute("ROLLBACK")).start()
    _, ann, new = opened.join(study.join_code, "Ann", "1234")
    assert new and [r.id for r in opened.readers(study.id)] == [ann.id]
    blocker.close()
    opened.close()


def test_a_reading_that_races_the_deletion_of_its_study_gets_a_plain_answer(store):
    study, _, cases = new_study(store)
    _, ann, _ = store.join(study.join_code, "Ann", "1234")
    first = next_step(study, cases, ann, []).case.position
    inside, results = threading.Event(), {}

    def slow_allowed(earlier):  # runs inside the reading's transaction, after the study was looked up
        inside.set()
        time.sleep(0.5)
        return True

    def record():
        try:
            results["reading"] = store.record_reading(ann.id, first, UNAIDED, 1, 3, allowed=slow_allowed)
        except StudyError as exc:
            results["error"] = str(exc)

    writer = threading.Thread(target=record)
    writer.start()
    assert inside.wait(30)
    gone = store.delete_study(study.id)  # waits for the reading's transaction, then deletes it too
    writer.join(30)
    assert results.get("reading", (None, None))[1] is True and gone == 1, results
    assert store.study(study.id) is None and store.readings(study.id) == []
    # After the deletion: a plain sentence, not a foreign-key error.
    with pytest.raises(StudyError, match="deleted by its teacher"):
        store.record_reading(ann.id, first, UNAIDED, 1, 3)


PANDAS_MISSING_NAMES = ("NA", "None", "null", "NULL", "NaN", "nan")


def test_pseudonyms_pandas_would_read_as_missing_survive_export_and_analysis(store, tmp_path):
    """Six names pandas reads as missing by default; "null" and "NULL" are one pseudonym (names ignore case), so
    they go to two studies."""
    from pneumonia.studies import mrmc

    rng = np.random.default_rng(1)
    for group in (("NA", "None", "null", "NaN"), ("NULL", "nan", "n.a")):
        study, _, cases = new_study(store, count=8, name=f"Names {len(group)}")
        for name in group:
            _, reader, _ = store.join(study.join_code, name, "1234")
            assert reader.pseudonym == name
            read_everything(store, study, cases, reader,
                            call_of=lambda case, modality: int(rng.random() < (0.8 if case.truth else 0.3)),
                            confidence=int(rng.integers(1, 6)))
        text = export_csv(snapshot(store, study))
        path = tmp_path / "readings.csv"
        path.write_text(text)
        ours, theirs = analyse_csv(text), mrmc.analyse(mrmc.read_readings(path))
        assert set(ours.readers) == set(theirs.readers) == set(group)
        assert ours.to_json() == theirs.to_json()
    # An empty cell is still a missing reader, named as such.
    with pytest.raises(mrmc.StudyError, match="has no reader"):
        analyse_csv(text.replace("\nNULL,", "\n,", 1))


def test_the_teacher_closes_the_join_code_and_those_who_joined_read_on(store):
    study, _, cases = new_study(store)
    _, ann, _ = store.join(study.join_code, "Ann", "1234")
    store.set_status(study.id, store_module.JOINING_CLOSED)
    with pytest.raises(StudyError, match="closed to new readers"):
        store.join(study.join_code, "Bob", "1234")
    study, again, new = store.join(study.join_code, "Ann", "1234")
    assert (again.id, new, study.is_open, study.takes_joiners) == (ann.id, False, True, False)
    assert read_everything(store, study, cases, ann) == 2 * len(cases)
    store.set_status(study.id, OPEN)
    assert store.join(study.join_code, "Bob", "1234")[2] is True
