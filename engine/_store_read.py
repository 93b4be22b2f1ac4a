"""Reading a run file: its models, its events, and what a resumed engine needs."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from engine._store_schema import RunFileError, connect_readonly, writer_pid
from engine.events import Event, decode_json
from engine.space import Metrics, ModelStatus

__all__ = ("ResumeState", "RunReader", "StoredModel", "load_resume_state", "read_models")

_UNFINISHED = frozenset({ModelStatus.Frozen, ModelStatus.Training, ModelStatus.Retrying})
_sample_decoder = msgspec.json.Decoder(dict[str, Any])
_values_decoder = msgspec.json.Decoder(list[float | None])


class StoredModel(msgspec.Struct, frozen=True, kw_only=True):
    """One model as the journal last saw it (the latest attempt's metrics and times)."""

    id: int
    sample: dict[str, Any]
    status: ModelStatus
    attempts: int  # attempts started so far
    metrics: Metrics
    queued_at: float | None = None
    started_at: float | None = None  # the latest attempt's start
    ended_at: float | None = None
    duration: float | None = None  # training time of the trained attempt
    worker: str | None = None
    reason: str | None = None  # why it failed / is retrying / was interrupted or invalid
    blob: bytes | None = None  # SimplifiedModelSpace.dump(); None for raw-format models

    @property
    def needs_training(self) -> bool:
        """True when a resumed run should train it (again): it was queued, training or
        retrying when its engine stopped, or interrupted because the engine shut down."""
        if self.status is ModelStatus.Interrupted:
            return self.reason == "shutdown"
        return self.status in _UNFINISHED


class ResumeState(msgspec.Struct, frozen=True, kw_only=True):
    """What an engine needs to continue a run: the next numbers and every model."""

    next_seq: int  # the seq of the next event (1 for a new run)
    next_model_id: int  # the id of the next new model (1 for a new run)
    models: list[StoredModel]  # id order, blobs included
    meta: dict[str, str] = {}  # the run's meta table (format, created, objective...)

    @property
    def resumed(self) -> bool:
        """True when the file already held events."""
        return self.next_seq > 1

    @property
    def finished(self) -> list[StoredModel]:
        """Models in a final status: not to be trained again."""
        return [m for m in self.models if not m.needs_training]

    @property
    def unfinished(self) -> list[StoredModel]:
        """Models to train again, with their blob and attempt count."""
        return [m for m in self.models if m.needs_training]


_COLUMNS = ("id, sample, status, attempts, intermediates, final, queued_at, started_at, "
            "ended_at, duration, worker, reason")


def read_models(conn: sqlite3.Connection, *, blobs: bool = False,
                where: str = "") -> list[StoredModel]:
    """Every model row (id order), optionally with its blob."""
    columns = _COLUMNS + (", blob" if blobs else "")
    rows = conn.execute(f"SELECT {columns} FROM models {where} ORDER BY id").fetchall()
    return [_model(row) for row in rows]


def _model(row: tuple[Any, ...]) -> StoredModel:
    values = [math.nan if v is None else v for v in _values_decoder.decode(row[4])]
    return StoredModel(
        id=row[0], sample=_sample_decoder.decode(row[1]), status=ModelStatus(row[2]),
        attempts=row[3], metrics=Metrics(intermediates=values, final=row[5],
                                         stopped_at=_stopped_at(row[2], row[11])),
        queued_at=row[6], started_at=row[7], ended_at=row[8], duration=row[9],
        worker=row[10], reason=row[11], blob=row[12] if len(row) > 12 else None,
    )


def _stopped_at(status: str, reason: str | None) -> int | None:
    """The step a trained model was stopped early at (see engine._store_write)."""
    prefix = "stopped at step "
    if status != "trained" or reason is None or not reason.startswith(prefix):
        return None
    return int(reason.removeprefix(prefix))


def load_resume_state(conn: sqlite3.Connection, path: Path) -> ResumeState:
    """The resume state; RunFileError when the event sequence has a gap."""
    count, first, last, top_id = conn.execute(
        "SELECT count(*), min(seq), max(seq), max(model_id) FROM events").fetchone()
    if count and (first != 1 or last - first + 1 != count):
        raise RunFileError(f"{path} is damaged: its events are not numbered 1..{count} "
                           f"(found {first}..{last}); it cannot be resumed")
    models = read_models(conn, blobs=True)
    top = max(top_id or 0, models[-1].id if models else 0)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    return ResumeState(next_seq=(last or 0) + 1, next_model_id=top + 1, models=models,
                       meta=meta)


class RunReader:
    """A read-only view of a run file, safe while another process writes it (WAL).
    It takes no lock; each call reads one consistent snapshot."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = connect_readonly(self.path)

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def models(self, *, blobs: bool = False) -> list[StoredModel]:
        return read_models(self._conn, blobs=blobs)

    def resume_state(self) -> ResumeState:
        return load_resume_state(self._conn, self.path)

    def last_seq(self) -> int:
        return int(self._conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def event_rows(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, str, str]]:
        """``(seq, kind, json)`` of the events after ``after``, in order."""
        return self._conn.execute(
            "SELECT seq, kind, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit)).fetchall()

    def events(self, first: int = 1, last: int | None = None) -> Iterator[Event]:
        """The events ``first..last`` (to the end when last is None), decoded."""
        end = last if last is not None else 2**62
        rows = self._conn.execute(
            "SELECT data FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, end))
        for (data,) in rows:
            yield decode_json(data)

    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def last_engine_event(self) -> Event | None:
        """The latest engine_started or engine_stopped event, or None."""
        row = self._conn.execute(
            "SELECT data FROM events WHERE kind IN ('engine_started', 'engine_stopped') "
            "ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else decode_json(row[0])

    def writer_pid(self) -> int | None:
        """The pid of the live process that has this run open for writing, or None."""
        pid = writer_pid(self.path)
        if pid is None:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, owned by another user
            return pid
        return pid
