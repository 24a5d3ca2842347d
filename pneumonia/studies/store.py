"""Reader studies in a real database: studies, their cases, their readers and every reading, through SQLAlchemy.

SQLite is the default (one file, PNEUMONIA_DB, see `pneumonia.config.study_database`); any SQLAlchemy URL works
too (PostgreSQL through psycopg, when several app servers share the studies). One engine per process, short
transactions, and a schema-version table the store migrates from when it opens the database.

Durability: `record_reading` returns only once its transaction has committed, and the app acknowledges a
reading only after that return, so a server killed mid-study loses nothing it acknowledged. SQLite runs in WAL
mode with synchronous=FULL: each commit syncs the write-ahead log to disk before it returns. (NORMAL would be
safe against a killed process, since the log is in the operating system's hands once written, but a power cut
or an OS crash could still roll back the last commits; FULL costs one fsync, a few milliseconds, per reading.)

Secrets: the join code is stored as it is (readers share it); the teacher code and the readers' PINs are
stored only as hashes, and none of them is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from pneumonia.errors import StudyError

SCHEMA_VERSION = 2
UNAIDED, AIDED = "unaided", "aided"
"""The two modalities of the sequential design: a call before seeing the model, and one after."""
OPEN, JOINING_CLOSED, CLOSED = "open", "reading", "closed"
"""A study's states: anyone with the join code may join and read; joining closed, but those who joined read on
(the teacher closed the join code); closed, no joining and no reading."""
JOIN_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""No 0/O, 1/I/L: a join code is read off a projector and typed on a phone."""
JOIN_LENGTH = 12
"""12 symbols of 31: 59 bits, shown as XXXX-XXXX-XXXX."""
TEACHER_CODE_BYTES = 24
"""192 random bits (at least 128 are required), written as 32 URL-safe characters."""
MAX_NAME, MAX_PSEUDONYM = 60, 24
MIN_CASES, MAX_CASES = 4, 200
PIN_PATTERN = re.compile(r"\d{4,8}")
MAX_PIN_FAILURES = 10
"""Wrong PINs in a row after which a pseudonym is locked (guessing a 4-digit PIN then succeeds 1 time in 1,000).
Each PIN check first takes one of these attempts with a single conditional UPDATE (atomic on every back end), and
only then compares the PIN, so however many guesses arrive at once, at most this many are ever compared."""
MAX_READERS = 60
"""Readers one study takes: anyone with the join code could otherwise create readers without end."""
BUSY_RETRIES = (0.1, 0.3, 0.9, 2.0)
"""Seconds to wait before each retry of a write the database reports busy (SQLite's "database is locked" after its
own busy timeout, or a PostgreSQL serialisation failure or deadlock); then the caller gets a plain StudyBusy."""
SQLITE_BUSY_TIMEOUT_MS = 5000
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
"""PIN hashing: about 30 ms and 16 MB per check, so a stolen database does not hand the PINs over at once."""
NAME_PUNCTUATION = set(" -_.")


class StudyBusy(StudyError):
    """The database stayed busy through every retry: nothing was changed, and trying again later is safe."""


BUSY_MESSAGE = ("The study database is busy with many readers at once; nothing was changed. Wait a few seconds and "
                "try again.")
WRONG_PIN = ("This pseudonym and PIN do not let you in. If you have joined before, check your PIN; if you are new, "
             "choose another pseudonym; if you are locked out, ask your teacher.")
"""The one answer to a wrong PIN and to a locked pseudonym, so a stranger learns nothing about the lock."""
DELETED = "This study has just been deleted by its teacher; nothing was saved."


# ---------------------------------------------------------------- plain values handed to callers


@dataclass(frozen=True)
class Study:
    id: int
    name: str
    join_code: str
    aided: bool
    seed: int
    threshold: float
    status: str
    created: float

    @property
    def modalities(self) -> tuple[str, ...]:
        return (UNAIDED, AIDED) if self.aided else (UNAIDED,)

    @property
    def is_open(self) -> bool:
        """Readings are taken (joining may be closed)."""
        return self.status in (OPEN, JOINING_CLOSED)

    @property
    def takes_joiners(self) -> bool:
        return self.status == OPEN


@dataclass(frozen=True)
class StudyCase:
    """One test image of a study; `position` is its place in the study's draw (case ids are derived from it)."""

    position: int
    file: str
    truth: int
    subtype: str
    probability: float


@dataclass(frozen=True)
class Reader:
    id: int
    study_id: int
    pseudonym: str
    order_seed: int
    created: float


@dataclass(frozen=True)
class StudyReading:
    reader_id: int
    position: int
    modality: str
    call: int  # 0 NORMAL, 1 PNEUMONIA
    confidence: int  # 1 (a guess) to 5 (certain)
    created: float


# ---------------------------------------------------------------- codes and free text


def new_join_code() -> str:
    symbols = "".join(secrets.choice(JOIN_ALPHABET) for _ in range(JOIN_LENGTH))
    return "-".join(symbols[i : i + 4] for i in range(0, JOIN_LENGTH, 4))


def normalise_join_code(text: str) -> str | None:
    """The code as stored (XXXX-XXXX-XXXX), however it was typed (case, spaces, dashes); None if it cannot be one."""
    symbols = re.sub(r"[\s\-]", "", str(text)).upper()
    if len(symbols) != JOIN_LENGTH or any(c not in JOIN_ALPHABET for c in symbols):
        return None
    return "-".join(symbols[i : i + 4] for i in range(0, JOIN_LENGTH, 4))


def new_teacher_code() -> str:
    return secrets.token_urlsafe(TEACHER_CODE_BYTES)


def teacher_code_hash(code: str) -> str:
    """SHA-256 of the code: enough for 192 random bits (no dictionary to try), and a lookup key."""
    return hashlib.sha256(str(code).strip().encode()).hexdigest()


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(pin.encode(), salt=salt, **SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def pin_matches(pin: str, stored: str) -> bool:
    _, salt, digest = stored.split("$")
    return hmac.compare_digest(hash_pin(pin, bytes.fromhex(salt)), stored)


def clean_text(text: str, what: str, limit: int) -> str:
    """Free text made safe to keep and show: NFC, whitespace collapsed, 1 to `limit` characters of letters, digits,
    spaces, dots, dashes and underscores, starting with a letter or digit. Anything else is refused with a reason,
    so nothing a reader types can become markup, a formula in a spreadsheet or a control character."""
    value = " ".join(unicodedata.normalize("NFC", str(text)).split())
    if not value:
        raise StudyError(f"Give a {what}.")
    if len(value) > limit:
        raise StudyError(f"A {what} is at most {limit} characters; this one has {len(value)}.")
    if not value[0].isalnum() or any(not (c.isalnum() or c in NAME_PUNCTUATION) for c in value):
        raise StudyError(
            f"A {what} uses letters, digits, spaces, dots, dashes and underscores only, and starts with a letter "
            "or a digit."
        )
    return value


def text_key(value: str) -> str:
    """Names compare without regard to case: 'Ward 3' and 'ward 3' are the same study or reader."""
    return value.casefold()


def check_pin(pin: str) -> str:
    pin = str(pin).strip()
    if not PIN_PATTERN.fullmatch(pin):
        raise StudyError("A PIN is 4 to 8 digits.")
    return pin


# ---------------------------------------------------------------- the schema


def _tables_v1(metadata: sa.MetaData) -> tuple[sa.Table, ...]:
    """The tables at schema version 1: studies, their cases, readers and readings. Frozen: migration 1 creates
    exactly these. A schema change copies this function into _tables_v2, edits the copy, builds the tables below
    from it, and adds migration 2 with the DDL that turns version 1 into version 2."""
    studies = sa.Table(
        "studies", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("name_key", sa.String(60), nullable=False, unique=True),
        sa.Column("join_code", sa.String(16), nullable=False, unique=True),
        sa.Column("teacher_code_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("aided", sa.Boolean, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    cases = sa.Table(
        "study_cases", metadata,
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("file", sa.String(300), nullable=False),
        sa.Column("truth", sa.Integer, nullable=False),
        sa.Column("subtype", sa.String(16), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
    )
    readers = sa.Table(
        "readers", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("pseudonym", sa.String(24), nullable=False),
        sa.Column("pseudonym_key", sa.String(24), nullable=False),
        sa.Column("pin_hash", sa.String(200), nullable=False),
        sa.Column("failed_pins", sa.Integer, nullable=False),
        sa.Column("order_seed", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.UniqueConstraint("study_id", "pseudonym_key", name="one_pseudonym_per_study"),
    )
    readings = sa.Table(
        "readings", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("reader_id", sa.Integer, sa.ForeignKey("readers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("call", sa.Integer, nullable=False),
        sa.Column("confidence", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.UniqueConstraint("reader_id", "position", "modality", name="one_reading_per_case_and_modality"),
    )
    return studies, cases, readers, readings


def _tables_v2(metadata: sa.MetaData) -> tuple[sa.Table, ...]:
    """Version 2: version 1's tables (unchanged) and study_images, the teacher's own films of a study as 224-px grey
    PNGs keyed by their SHA-256 (no file name, no DICOM header: only the pixels). Frozen like version 1."""
    tables = _tables_v1(metadata)
    images = sa.Table(
        "study_images", metadata,
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("image_key", sa.String(80), primary_key=True),
        sa.Column("png", sa.LargeBinary, nullable=False),
    )
    return (*tables, images)


METADATA = sa.MetaData()
STUDIES, CASES, READERS, READINGS, IMAGES = _tables_v2(METADATA)
"""The tables as the queries see them: the latest version's."""
VERSION = sa.Table("schema_version", METADATA, sa.Column("version", sa.Integer, nullable=False))


# ---------------------------------------------------------------- migrations: each one frozen as it was written


def _migration_1(conn: Connection) -> None:
    """Studies, their cases, readers and readings, as version 1 defines them."""
    frozen = sa.MetaData()
    _tables_v1(frozen)
    frozen.create_all(conn)


def _migration_2(conn: Connection) -> None:
    """study_images, as version 2 defines it."""
    frozen = sa.MetaData()
    _tables_v2(frozen)
    frozen.tables["study_images"].create(conn)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "studies, study_cases, readers, readings", _migration_1),
    (2, "study_images: the teacher's own films, by content hash", _migration_2),
]
"""(version, what it does, function) in order; the store applies those above the database's version."""


def database_url(target: str) -> str:
    """A SQLAlchemy URL from PNEUMONIA_DB's value: a URL as it is, anything else a path to an SQLite file."""
    if "://" in target:
        return target
    return f"sqlite:///{Path(target).expanduser().resolve()}"


def _prepare_sqlite_file(url: sa.URL) -> None:
    """Create the database's folder and the file itself readable by its owner only (PIN and code hashes live
    there); SQLite gives the -wal and -shm files the same permissions."""
    if not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _sqlite_setup(engine: Engine) -> None:
    """WAL, synchronous=FULL, foreign keys, a busy timeout; and transactions begun by us: BEGIN IMMEDIATE for a
    write (it takes the write lock at once, so two writers queue instead of one failing on upgrade), a plain
    deferred BEGIN for reads."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # pysqlite: no implicit BEGIN; the "begin" hook below issues it
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def _row_study(row) -> Study:
    return Study(row.id, row.name, row.join_code, bool(row.aided), row.seed, row.threshold, row.status, row.created)


def _row_reader(row) -> Reader:
    return Reader(row.id, row.study_id, row.pseudonym, row.order_seed, row.created)


def _is_busy(exc: sa.exc.OperationalError) -> bool:
    """SQLite's lock timeouts, and PostgreSQL's serialisation failures and deadlocks: worth a retry."""
    text = str(exc.orig).lower() if exc.orig is not None else ""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return "database is locked" in text or "database is busy" in text or code in ("40001", "40P01")


def _row_reading(row) -> StudyReading:
    return StudyReading(row.reader_id, row.position, row.modality, row.call, row.confidence, row.created)


class StudyStore:
    """Every read and write of reader studies. Thread-safe: each call takes a pooled connection for one short
    transaction. Open it once per process (the app keeps one in `st.cache_resource`)."""

    def __init__(self, target: str | None = None, clock: Callable[[], float] = time.time):
        from pneumonia.config import study_database

        self.url = sa.make_url(database_url(target or study_database()))
        self.clock = clock
        if self.url.get_backend_name() == "sqlite":
            try:
                _prepare_sqlite_file(self.url)
            except OSError as exc:
                raise StudyError(f"The study database {self!r} cannot be created: {exc.strerror or exc}. Set "
                                 "PNEUMONIA_DB to a writable file or a reachable database URL.") from exc
        # hide_parameters: no join code or hash ever reaches a log line or an error message through a failed query
        self.engine = sa.create_engine(self.url, pool_pre_ping=self.url.get_backend_name() != "sqlite",
                                       hide_parameters=True)
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
        self._migrate_lock = threading.Lock()
        try:
            self.migrate()
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise StudyError(f"The study database {self!r} cannot be opened: {reason}. Set PNEUMONIA_DB to a "
                             "writable file or a reachable database URL.") from exc
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"StudyStore({self.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One short write transaction; a busy database becomes StudyBusy (see `_retrying`), never a raw error."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(write=True)
                with conn.begin():
                    yield conn
        except sa.exc.OperationalError as exc:
            if _is_busy(exc):
                raise StudyBusy(BUSY_MESSAGE) from exc
            raise

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.OperationalError as exc:
            if _is_busy(exc):
                raise StudyBusy(BUSY_MESSAGE) from exc
            raise

    def _retrying(self, work: Callable[[], object]):
        """`work()` (one or more whole transactions, safe to repeat) again after a busy database, with backoff."""
        for wait in (*BUSY_RETRIES, None):
            try:
                return work()
            except StudyBusy:
                if wait is None:
                    raise
                time.sleep(wait * (0.5 + secrets.randbelow(1000) / 1000))  # jitter: retries do not march in step

    # ------------------------------------------------------------ schema

    def schema_version(self) -> int:
        with self._read() as conn:
            return _version(conn)

    def migrate(self, migrations: list | None = None) -> int:
        """Bring the database up to the newest version, one migration per transaction; returns the version.
        Refuses a database written by a newer version of this code."""
        migrations = MIGRATIONS if migrations is None else migrations
        newest = migrations[-1][0] if migrations else 0
        with self._migrate_lock:
            for number, _what, apply in migrations:
                with self._write() as conn:
                    if conn.dialect.name == "postgresql":  # one migrator at a time across app servers
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7012018)"))
                    current = _version(conn)
                    if current > newest:
                        raise StudyError(
                            f"The study database {self!r} has schema version {current}, newer than this code's "
                            f"{newest}; update the app."
                        )
                    if number <= current:
                        continue
                    if not sa.inspect(conn).has_table(VERSION.name):
                        VERSION.create(conn)
                        conn.execute(VERSION.insert().values(version=0))
                    apply(conn)
                    conn.execute(VERSION.update().values(version=number))
            return self.schema_version()

    # ------------------------------------------------------------ studies (teacher)

    def create_study(
        self, name: str, cases: list[StudyCase], *, aided: bool, seed: int, threshold: float,
        images: dict[str, bytes] | None = None,
    ) -> tuple[Study, str]:
        """A new open study over these cases; returns it with its teacher code, which is shown once and then
        kept only as a hash. `images` (image key -> PNG) holds the teacher's own films, kept with the study."""
        name = clean_text(name, "study name", MAX_NAME)
        if not MIN_CASES <= len(cases) <= MAX_CASES:
            raise StudyError(f"A study has {MIN_CASES} to {MAX_CASES} cases, not {len(cases)}.")
        if len({c.truth for c in cases}) < 2:
            raise StudyError("A study needs both NORMAL and PNEUMONIA cases.")
        teacher_code = new_teacher_code()
        with self._write() as conn:
            if conn.execute(sa.select(STUDIES.c.id).where(STUDIES.c.name_key == text_key(name))).first():
                raise StudyError(f"A study called {name!r} exists already; choose another name.")
            join_code = new_join_code()
            while conn.execute(sa.select(STUDIES.c.id).where(STUDIES.c.join_code == join_code)).first():
                join_code = new_join_code()  # 59 bits: practically never
            study_id = conn.execute(
                STUDIES.insert().values(
                    name=name, name_key=text_key(name), join_code=join_code,
                    teacher_code_sha256=teacher_code_hash(teacher_code), aided=bool(aided), seed=int(seed),
                    threshold=float(threshold), status=OPEN, created=self.clock(),
                )
            ).inserted_primary_key[0]
            conn.execute(CASES.insert(), [
                {"study_id": study_id, "position": c.position, "file": c.file, "truth": int(c.truth),
                 "subtype": c.subtype, "probability": float(c.probability)} for c in cases
            ])
            if images:
                conn.execute(IMAGES.insert(), [{"study_id": study_id, "image_key": key, "png": png}
                                               for key, png in images.items()])
            study = _row_study(conn.execute(sa.select(STUDIES).where(STUDIES.c.id == study_id)).one())
        return study, teacher_code

    def study(self, study_id: int) -> Study | None:
        with self._read() as conn:
            row = conn.execute(sa.select(STUDIES).where(STUDIES.c.id == study_id)).first()
        return None if row is None else _row_study(row)

    def study_by_name(self, name: str) -> Study | None:
        with self._read() as conn:
            row = conn.execute(sa.select(STUDIES).where(STUDIES.c.name_key == text_key(" ".join(name.split())))).first()
        return None if row is None else _row_study(row)

    def study_for_teacher(self, teacher_code: str) -> Study | None:
        """The study this teacher code opens, or None: a wrong code learns nothing else."""
        if not teacher_code or not str(teacher_code).strip():
            return None
        with self._read() as conn:
            row = conn.execute(
                sa.select(STUDIES).where(STUDIES.c.teacher_code_sha256 == teacher_code_hash(teacher_code))
            ).first()
        return None if row is None else _row_study(row)

    def study_by_join_code(self, join_code: str) -> Study | None:
        code = normalise_join_code(join_code)
        if code is None:
            return None
        with self._read() as conn:
            row = conn.execute(sa.select(STUDIES).where(STUDIES.c.join_code == code)).first()
        return None if row is None else _row_study(row)

    def studies(self) -> list[Study]:
        with self._read() as conn:
            return [_row_study(r) for r in conn.execute(sa.select(STUDIES).order_by(STUDIES.c.id))]

    def set_status(self, study_id: int, status: str) -> None:
        """Close a study (no more joining or reading), close only its join code (JOINING_CLOSED: those who joined
        read on), or open it again."""
        if status not in (OPEN, JOINING_CLOSED, CLOSED):
            raise ValueError(f"status is {OPEN!r}, {JOINING_CLOSED!r} or {CLOSED!r}, not {status!r}")
        with self._write() as conn:
            conn.execute(STUDIES.update().where(STUDIES.c.id == study_id).values(status=status))

    def delete_study(self, study_id: int) -> int:
        """Delete a study with its cases, readers and readings; returns how many readings went with it."""
        with self._write() as conn:
            # The study's row first (PostgreSQL): a reading being saved holds it FOR SHARE, so the deletion waits
            # for that reading and then takes it too, instead of deadlocking on the rows below.
            conn.execute(sa.select(STUDIES.c.id).where(STUDIES.c.id == study_id).with_for_update())
            gone = conn.execute(sa.delete(READINGS).where(READINGS.c.study_id == study_id)).rowcount
            conn.execute(sa.delete(IMAGES).where(IMAGES.c.study_id == study_id))
            conn.execute(sa.delete(READERS).where(READERS.c.study_id == study_id))
            conn.execute(sa.delete(CASES).where(CASES.c.study_id == study_id))
            conn.execute(sa.delete(STUDIES).where(STUDIES.c.id == study_id))
        return gone

    def cases(self, study_id: int) -> list[StudyCase]:
        with self._read() as conn:
            rows = conn.execute(sa.select(CASES).where(CASES.c.study_id == study_id).order_by(CASES.c.position))
            return [StudyCase(r.position, r.file, r.truth, r.subtype, r.probability) for r in rows]

    def case_image(self, study_id: int, image_key: str) -> bytes | None:
        """The PNG of one of the teacher's own films, or None (a test-set case: its image ships with the model)."""
        with self._read() as conn:
            return conn.execute(sa.select(IMAGES.c.png).where(
                IMAGES.c.study_id == study_id, IMAGES.c.image_key == image_key)).scalar()

    def readers(self, study_id: int) -> list[Reader]:
        with self._read() as conn:
            rows = conn.execute(sa.select(READERS).where(READERS.c.study_id == study_id).order_by(READERS.c.id))
            return [Reader(r.id, r.study_id, r.pseudonym, r.order_seed, r.created) for r in rows]

    def readings(self, study_id: int) -> list[StudyReading]:
        """Every reading of the study: for the teacher's dashboard and the export only."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(READINGS).where(READINGS.c.study_id == study_id).order_by(READINGS.c.id)
            )
            return [_row_reading(r) for r in rows]

    # ------------------------------------------------------------ readers

    def join(self, join_code: str, pseudonym: str, pin: str) -> tuple[Study, Reader, bool]:
        """Join an open study under a pseudonym protected by a PIN, or come back to it (same pseudonym and PIN,
        any tab or device). Returns the study, the reader and whether the reader is new.

        No PIN is hashed inside a write transaction (scrypt takes tens of milliseconds and would hold SQLite's
        write lock). A wrong PIN and a locked pseudonym get the same answer."""
        study = self.study_by_join_code(join_code)
        if study is None:
            raise StudyError("No study has this join code. Check it with your teacher.")
        pseudonym = clean_text(pseudonym, "pseudonym", MAX_PSEUDONYM)
        pin = check_pin(pin)
        return self._retrying(lambda: self._join(study, pseudonym, pin))

    def _join(self, study: Study, pseudonym: str, pin: str) -> tuple[Study, Reader, bool]:
        row = self._reader_row(study.id, pseudonym)
        if row is None:
            pin_hash = hash_pin(pin)  # outside any transaction
            try:
                with self._write() as conn:
                    reader_id = self._insert_reader(conn, study.id, pseudonym, pin_hash)
                    row = conn.execute(sa.select(READERS).where(READERS.c.id == reader_id)).one()
                return study, _row_reader(row), True
            except sa.exc.IntegrityError:  # the same pseudonym joined at this moment, or the study was deleted
                row = self._reader_row(study.id, pseudonym)
                if row is None:
                    raise StudyError(DELETED) from None
        if not self._take_attempt(row.id):
            raise StudyError(WRONG_PIN)
        if not pin_matches(pin, row.pin_hash):  # outside any transaction; the attempt stays counted
            raise StudyError(WRONG_PIN)
        with self._write() as conn:
            conn.execute(READERS.update().where(READERS.c.id == row.id).values(failed_pins=0))
        return study, _row_reader(row), False

    def _reader_row(self, study_id: int, pseudonym: str):
        with self._read() as conn:
            return conn.execute(sa.select(READERS).where(
                READERS.c.study_id == study_id, READERS.c.pseudonym_key == text_key(pseudonym))).first()

    def _insert_reader(self, conn: Connection, study_id: int, pseudonym: str, pin_hash: str) -> int:
        """A new reader, if the study is open and not full: the study's row is locked first on PostgreSQL (SQLite's
        BEGIN IMMEDIATE already serialises writers), so the cap holds however many join at once."""
        study = conn.execute(sa.select(STUDIES).where(STUDIES.c.id == study_id).with_for_update()).first()
        if study is None:
            raise StudyError(DELETED)
        if study.status != OPEN:
            what = "closed to new readers" if study.status == JOINING_CLOSED else "closed"
            raise StudyError(f"This study is {what}: no one new can join it. If you have joined before, use the same "
                             "pseudonym and PIN.")
        count = conn.execute(sa.select(sa.func.count()).select_from(READERS)
                             .where(READERS.c.study_id == study_id)).scalar_one()
        if count >= MAX_READERS:
            raise StudyError(f"This study has its {MAX_READERS} readers already; ask your teacher.")
        return conn.execute(READERS.insert().values(
            study_id=study_id, pseudonym=pseudonym, pseudonym_key=text_key(pseudonym), pin_hash=pin_hash,
            failed_pins=0, order_seed=secrets.randbelow(2**31), created=self.clock(),
        )).inserted_primary_key[0]

    def _take_attempt(self, reader_id: int) -> bool:
        """Count one PIN attempt, unless the limit is reached: one conditional UPDATE, atomic on SQLite and
        PostgreSQL alike (PostgreSQL re-checks the WHERE on the row's newest version under its row lock)."""
        with self._write() as conn:
            taken = conn.execute(
                READERS.update()
                .where(READERS.c.id == reader_id, READERS.c.failed_pins < MAX_PIN_FAILURES)
                .values(failed_pins=READERS.c.failed_pins + 1)
            ).rowcount
        return taken == 1

    def unlock_reader(self, study_id: int, reader_id: int) -> None:
        """The teacher lets a locked-out reader try their PIN again."""
        with self._write() as conn:
            conn.execute(READERS.update().where(READERS.c.id == reader_id, READERS.c.study_id == study_id)
                         .values(failed_pins=0))

    def rename_reader(self, study_id: int, reader_id: int, pseudonym: str) -> Reader:
        """The teacher renames a reader (e.g. a real name typed as a pseudonym); readings stay with the reader."""
        pseudonym = clean_text(pseudonym, "pseudonym", MAX_PSEUDONYM)
        try:
            with self._write() as conn:
                done = conn.execute(READERS.update().where(READERS.c.id == reader_id, READERS.c.study_id == study_id)
                                    .values(pseudonym=pseudonym, pseudonym_key=text_key(pseudonym))).rowcount
                if not done:
                    raise StudyError("This reader is no longer in the study.")
                row = conn.execute(sa.select(READERS).where(READERS.c.id == reader_id)).one()
        except sa.exc.IntegrityError:
            raise StudyError(f"Another reader of this study is called {pseudonym!r}; choose another name.") from None
        return _row_reader(row)

    def locked_readers(self, study_id: int) -> list[Reader]:
        """Readers locked out after too many wrong PINs: for the teacher's dashboard only."""
        with self._read() as conn:
            rows = conn.execute(sa.select(READERS).where(
                READERS.c.study_id == study_id, READERS.c.failed_pins >= MAX_PIN_FAILURES).order_by(READERS.c.id))
            return [_row_reader(r) for r in rows]

    def reader(self, reader_id: int) -> Reader | None:
        with self._read() as conn:
            r = conn.execute(sa.select(READERS).where(READERS.c.id == reader_id)).first()
        return None if r is None else _row_reader(r)

    def reader_readings(self, reader_id: int) -> list[StudyReading]:
        """One reader's own readings: all a reader's page ever asks for."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(READINGS).where(READINGS.c.reader_id == reader_id).order_by(READINGS.c.id)
            )
            return [_row_reading(r) for r in rows]

    def record_reading(
        self, reader_id: int, position: int, modality: str, call: int, confidence: int,
        allowed: Callable[[list[StudyReading]], bool] | None = None,
    ) -> tuple[StudyReading, bool]:
        """Store one reading and return it once committed, with True; a reading already stored for this case
        and modality is returned as it is, with False (a repeated click or a retry never makes a duplicate, and
        a call once committed is never changed). `allowed(earlier readings of this reader)` may refuse it, e.g.
        a case out of the reader's order."""
        if modality not in (UNAIDED, AIDED):
            raise StudyError(f"Unknown modality {modality!r}.")
        if call not in (0, 1):
            raise StudyError("Choose NORMAL or PNEUMONIA.")
        if confidence not in (1, 2, 3, 4, 5):
            raise StudyError("Choose how sure you are, from 1 (a guess) to 5 (certain).")
        return self._retrying(lambda: self._record(reader_id, position, modality, call, confidence, allowed))

    def _record(self, reader_id, position, modality, call, confidence, allowed) -> tuple[StudyReading, bool]:
        try:
            with self._write() as conn:
                reader = conn.execute(sa.select(READERS).where(READERS.c.id == reader_id)).first()
                # FOR SHARE on PostgreSQL: a deletion of the study waits for this reading's transaction, and one
                # that got in first leaves no study row to find (SQLite's BEGIN IMMEDIATE serialises both already).
                study = None if reader is None else conn.execute(
                    sa.select(STUDIES).where(STUDIES.c.id == reader.study_id).with_for_update(read=True)).first()
                if study is None:
                    raise StudyError(DELETED)
                earlier = [_row_reading(r) for r in conn.execute(
                    sa.select(READINGS).where(READINGS.c.reader_id == reader_id).order_by(READINGS.c.id))]
                same = [r for r in earlier if (r.position, r.modality) == (position, modality)]
                if same:
                    return same[0], False
                if study.status == CLOSED:
                    raise StudyError("The teacher has closed this study: readings are no longer taken.")
                if modality == AIDED and not study.aided:
                    raise StudyError("This study has no AI-aided reading.")
                if not conn.execute(sa.select(CASES.c.position).where(
                        CASES.c.study_id == study.id, CASES.c.position == position)).first():
                    raise StudyError(f"This study has no case {position}.")
                if modality == AIDED and not any((r.position, r.modality) == (position, UNAIDED) for r in earlier):
                    raise StudyError("Read the case without the AI first.")
                if allowed is not None and not allowed(earlier):
                    raise StudyError("This case is not the next one in your order.")
                created = self.clock()
                conn.execute(READINGS.insert().values(
                    study_id=study.id, reader_id=reader_id, position=position, modality=modality, call=call,
                    confidence=confidence, created=created,
                ))
        except sa.exc.IntegrityError:  # the same reading committed at this moment by another request
            existing = [r for r in self.reader_readings(reader_id) if (r.position, r.modality) == (position, modality)]
            if existing:
                return existing[0], False
            if self.reader(reader_id) is None:  # the study (and so the reader) was deleted at this moment
                raise StudyError(DELETED) from None
            raise
        return StudyReading(reader_id, position, modality, call, confidence, created), True


def _version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(VERSION.name):
        return 0
    return int(conn.execute(sa.select(VERSION.c.version)).scalar_one())
