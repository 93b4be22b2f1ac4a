"""Opening a run file for writing: the checks, the lock, the migration, the resume state.
Runs in a worker thread; a path that cannot be used leaves the file as it was."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path

from engine.store._read import ResumeState, load_resume_state
from engine.store._schema import (
    RunFileError,
    RunLock,
    check_file,
    create_schema,
    migrate,
    schema_version,
)

__all__ = ("connect_reader", "open_run")


def open_run(
    where: str | Path | None, fsync: bool, default_path: Callable[[], Path]
) -> tuple[Path, sqlite3.Connection, RunLock, ResumeState, dict[str, str]]:
    """Check, lock, migrate and read the run at ``where`` (a new one from ``default_path``
    when None): its path, writer connection, lock, resume state and meta rows."""
    path = default_path() if where is None else Path(where)
    check_file(path, must_exist=False)
    if path.exists():
        _check_writable(path)
    lock = RunLock.acquire(path)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        version = schema_version(conn, path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
        if version == 0:
            create_schema(conn, time.time())
        else:
            migrate(conn, version)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return path, conn, lock, load_resume_state(conn, path), meta
    except BaseException:
        if conn is not None:
            conn.close()
        lock.release()
        raise


def _check_writable(path: Path) -> None:
    """RunFileError when ``path`` is read-only: by the mode bits too, because os.access
    says yes to root whatever the mode (a 0444 file is the user saying "keep this")."""
    mode = path.stat().st_mode
    if not os.access(path, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise RunFileError(f"cannot open {path} for writing: the file is read-only (mode "
                           f"{stat.S_IMODE(mode):04o}); make it writable (chmod u+w) or "
                           "pick another path")


def connect_reader(path: Path) -> sqlite3.Connection:
    """A connection that only reads an existing run. Read-write mode all the same: the
    last connection to close a WAL file removes its -wal/-shm files, a read-only one
    cannot."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True,
                           check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    return conn
