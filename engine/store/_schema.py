"""The run file's schema, the checks made before a run file is touched, and its lock.

Every check here runs before the first write, so a bad path leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path

from engine.errors import NasEngineError

__all__ = (
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "RunFileError",
    "RunLock",
    "check_schema",
    "connect_readonly",
    "create_schema",
    "lock_path",
    "migrate",
    "schema_version",
    "writer_pid",
)

# PRAGMA application_id: marks an SQLite file as a nas-engine run ("NASR").
APPLICATION_ID = 0x4E415352
# PRAGMA user_version: bump it (and add a migration) whenever the tables change, an
# event kind is added, or a column or an event field may hold a value of a new shape
# (an older reader then refuses the file, naming the versions, instead of misreading it
# or failing on a value it cannot decode).
#   1: intermediates as a JSON array in each model row (rewritten per report: quadratic)
#   2: intermediates read from the metric events after ``models.attempt_seq`` (a report
#      writes its event row and nothing else); an ``outputs`` table. Later writers of
#      version 2 (from the commit "Several metrics per model") may store a dict of named
#      numbers as a final (its JSON text in the REAL ``models.final``) and as the value
#      of a metric or trained event, without a bump: the readers of version 2 before
#      them fail on such a file with a validation error. Every reader of version 3 reads
#      those dicts, and every file a writer opens is brought to 3, so a file written now
#      announces its dicts to those older readers, which refuse it by its version.
#   3: pause and resume: event kinds ``paused`` and ``resumed``, status ``paused``,
#      ``models.checkpoint`` (the step of a paused model's checkpoint); a training event
#      may continue a curve (``resume_step``), so ``attempt_seq`` is where the model's
#      current curve began
SCHEMA_VERSION = 3
_MAGIC = b"SQLite format 3\x00"

_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    model_id INTEGER,
    time REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    sample TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    final REAL,
    queued_at REAL,
    started_at REAL,
    ended_at REAL,
    duration REAL,
    worker TEXT,
    reason TEXT,
    blob BLOB,
    attempt_seq INTEGER,
    checkpoint INTEGER
);
"""

# Tables added by schema version 2 (part of every new run).
_TABLES_2 = """
CREATE TABLE outputs (
    model_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    stdout TEXT NOT NULL,
    stderr TEXT NOT NULL,
    PRIMARY KEY (model_id, attempt)
) WITHOUT ROWID;
"""

# Version 1 -> 2: the seq of each model's latest training event (one pass over the
# events) replaces the JSON array, which the metric events after it repeat. Written for
# SQLite 3.8+ (no UPDATE ... FROM); the old column is dropped where SQLite can (3.35+).
_MIGRATE_1 = """
ALTER TABLE models ADD COLUMN attempt_seq INTEGER;
CREATE TEMP TABLE started (model_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
INSERT INTO started SELECT model_id, max(seq) FROM events
    WHERE kind = 'training' AND model_id IS NOT NULL GROUP BY model_id;
UPDATE models SET attempt_seq = (SELECT seq FROM started WHERE started.model_id = models.id);
DROP TABLE started;
"""

# Version 2 -> 3: a column; every older row has no checkpoint.
_MIGRATE_2 = """
ALTER TABLE models ADD COLUMN checkpoint INTEGER;
"""


class RunFileError(NasEngineError, ValueError):
    """The path cannot be used as a run file; the message says why and what to do.
    The file is left exactly as it was."""


def lock_path(path: Path) -> Path:
    """The side file whose exclusive ``flock`` marks a run as open for writing."""
    return path.with_name(path.name + ".lock")


def writer_pid(path: Path) -> int | None:
    """The pid written in the run's lock file, or None when there is none."""
    try:
        text = lock_path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def check_file(path: Path, *, must_exist: bool) -> None:
    """Raise RunFileError unless ``path`` is an SQLite file (or absent, when allowed)."""
    if not path.parent.is_dir():
        raise RunFileError(f"cannot use {path}: the directory {path.parent} does not exist; "
                           "create it first or pick another path")
    if not path.exists():
        if must_exist:
            raise RunFileError(f"no run file at {path}: check the path")
        return
    if not path.is_file():
        raise RunFileError(f"cannot use {path}: it is not a regular file")
    with path.open("rb") as file:
        head = file.read(len(_MAGIC))
    if head and head != _MAGIC:
        raise RunFileError(f"{path} is not a nas-engine run file (not an SQLite database): "
                           "pick another path")


def check_schema(conn: sqlite3.Connection, path: Path) -> bool:
    """True when the file already holds a run, False when it is empty; RunFileError when
    it holds something else or a newer schema. Only reads."""
    return schema_version(conn, path) > 0


def schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The run schema version of the file (0 when it is empty); RunFileError when it holds
    something else or a newer schema. Only reads."""
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise RunFileError(f"{path} is not a readable nas-engine run file ({exc})") from None
    if app == 0 and version == 0 and tables == 0:
        return 0
    if app != APPLICATION_ID:
        raise RunFileError(f"{path} is an SQLite database but not a nas-engine run file: "
                           "pick another path")
    if version > SCHEMA_VERSION:
        raise RunFileError(f"{path} was written by a newer nas-engine (run schema version "
                           f"{version}; this one reads up to {SCHEMA_VERSION}): upgrade "
                           "nas-engine to open it")
    if version < 1:
        raise RunFileError(f"{path} has no run schema version: it is not a complete run file")
    return int(version)


def create_schema(conn: sqlite3.Connection, created: float) -> None:
    """Create the tables of a new run in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    _run_script(conn, _TABLES + _TABLES_2)
    conn.execute("INSERT INTO meta VALUES ('format', 'nas-engine-run'), ('created', ?)",
                 (repr(created),))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a run of schema ``version`` to :data:`SCHEMA_VERSION` in one transaction
    (all or nothing). The writer calls it on open; readers read every version as is."""
    if version >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version < 2:
            _run_script(conn, _TABLES_2)
            _run_script(conn, _MIGRATE_1)
            if sqlite3.sqlite_version_info >= (3, 35):
                conn.execute("ALTER TABLE models DROP COLUMN intermediates")
        if version < 3:
            _run_script(conn, _MIGRATE_2)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing run; takes no lock and writes nothing."""
    check_file(path, must_exist=True)
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        # A WAL-mode file where its shared-memory file cannot be created (a read-only
        # directory): no process can be writing it, so read it as an immutable file.
        conn.close()
        conn = sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)
    try:
        if not check_schema(conn, path):
            raise RunFileError(f"{path} is an empty SQLite file, not a run: check the path")
    except BaseException:
        conn.close()
        raise
    return conn


class RunLock:
    """An exclusive ``flock`` on ``<run>.lock`` holding the owner's pid; released (and the
    side file removed) by :meth:`release`. The kernel drops it when the process dies."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, run: Path) -> RunLock:
        path = lock_path(run)
        for _ in range(10):
            fd = _open_lock_file(run, path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                pid = writer_pid(run)
                owner = f"process {pid}" if pid is not None else "another process"
                raise RunFileError(f"{run} is already open in {owner}: wait for it to finish, "
                                   "or read it with the nas-engine CLI") from None
            if _same_file(fd, path):  # not a lock file that its owner just removed
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return cls(path, fd)
            os.close(fd)
        raise RunFileError(f"could not lock {run}: its lock file {path} keeps changing")

    def release(self) -> None:
        # Remove the file while still holding the lock: a process that opened the old
        # file sees it vanish (_same_file) and tries again.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)


def _open_lock_file(run: Path, path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunFileError(f"cannot open {run} for writing: cannot create {path.name} in "
                           f"{path.parent} ({exc.strerror}); pick a writable directory") from None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
