"""Reading a run file: its models, its events, and what a resumed engine needs."""

from __future__ import annotations

import math
import os
import sqlite3
import typing
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from engine._objective import MetricValue
from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    EventBase,
    MetricReported,
    ModelFailed,
    ModelPaused,
    TrainingStarted,
    _decode_non_finite,
    decode_json,
)
from engine.space import Metrics, ModelStatus
from engine.store._schema import RunFileError, connect_readonly, schema_version, writer_pid

__all__ = (
    "EVENT_KINDS",
    "ResumeState",
    "RunReader",
    "StoredModel",
    "StoredOutput",
    "UnknownEventKind",
    "decode_event",
    "load_resume_state",
    "read_events",
    "read_models",
    "read_outputs",
)


def _kind(event_type: type[EventBase]) -> str:
    return str(event_type.__struct_config__.tag)


# Every event kind this version writes and reads, from the Event union itself.
EVENT_KINDS: frozenset[str] = frozenset(_kind(t) for t in typing.get_args(Event))


class UnknownEventKind(RunFileError):
    """The run holds an event of a kind this nas-engine does not know (a newer one wrote
    it). ``kind`` and ``seq`` name the event."""

    def __init__(self, path: Path, seq: int, kind: str) -> None:
        super().__init__(f"{path}: event {seq} is of kind {kind!r}, which this nas-engine "
                         f"does not know (it knows {', '.join(sorted(EVENT_KINDS))}); the run "
                         "was written by a newer nas-engine: upgrade nas-engine to read it")
        self.path, self.seq, self.kind = path, seq, kind


def decode_event(path: Path, seq: int, kind: str, data: str | bytes) -> Event:
    """One stored event; UnknownEventKind (naming it) when its kind is not known here,
    RunFileError naming it and the field when its data does not read as that kind (a
    value of a shape this version does not know, or a damaged row)."""
    if kind not in EVENT_KINDS:
        raise UnknownEventKind(path, seq, kind)
    try:
        return decode_json(data)
    except msgspec.DecodeError as exc:
        # Files written before NaN was spelled "nan" hold null for a non-finite metric.
        event = _legacy_event(data)
        if event is None:
            raise RunFileError(
                f"{path}: event {seq} ({kind!r}) does not read as a {kind!r} event of this "
                f"nas-engine ({exc}): a newer nas-engine may have written it (upgrade "
                "nas-engine to read the run), or the file is damaged") from None
        return event


def _legacy_event(data: str | bytes) -> Event | None:
    try:
        return _decode_non_finite(data, _LEGACY_SPELLINGS)
    except msgspec.DecodeError:  # not JSON at all
        return None


_LEGACY_SPELLINGS: dict[str | None, float] = {
    None: math.nan, "nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def read_events(conn: sqlite3.Connection, path: Path, first: int, last: int) -> list[Event]:
    """The stored events ``first..last`` in seq order (fewer when some are missing)."""
    rows = conn.execute("SELECT seq, kind, data FROM events WHERE seq BETWEEN ? AND ? "
                        "ORDER BY seq", (first, last))
    return [decode_event(path, *row) for row in rows]

_UNFINISHED = frozenset({ModelStatus.Frozen, ModelStatus.Training, ModelStatus.Retrying})
_sample_decoder = msgspec.json.Decoder(dict[str, Any])
_values_decoder = msgspec.json.Decoder(list[float | None])
_metrics_decoder = msgspec.json.Decoder(dict[str, float])


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
    #: A paused model's checkpoint: the step it continues from when resumed (None: it
    #: saved none). Its ``metrics.intermediates`` are the steps it reached.
    checkpoint: int | None = None

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


_COLUMNS = ("id, sample, status, attempts, final, queued_at, started_at, "
            "ended_at, duration, worker, reason")


class StoredOutput(msgspec.Struct, frozen=True, kw_only=True):
    """What one failed attempt of a model wrote, in full."""

    model_id: int
    attempt: int
    stdout: str
    stderr: str


def read_models(conn: sqlite3.Connection, *, blobs: bool = False,
                version: int | None = None) -> list[StoredModel]:
    """Every model row (id order), optionally with its blob. ``version``: the file's
    schema version (read from the file when None)."""
    if version is None:
        version = schema_version(conn, Path("run"))
    columns = _COLUMNS + (", blob" if blobs else "")
    if version < 2:  # each row holds its intermediates as a JSON array
        columns = columns.replace("final,", "intermediates, final,")
        rows = conn.execute(f"SELECT {columns} FROM models ORDER BY id").fetchall()
        return [_model(row[0], row[:4] + row[5:], _json_values(row[4])) for row in rows]
    rows = conn.execute(f"SELECT {columns} FROM models ORDER BY id").fetchall()
    values = _intermediates(conn)
    checkpoints: dict[int, int] = {} if version < 3 else dict(conn.execute(
        "SELECT id, checkpoint FROM models WHERE checkpoint IS NOT NULL").fetchall())
    return [_model(row[0], row, values.get(row[0], []), checkpoints.get(row[0]))
            for row in rows]


class _Reported(msgspec.Struct):
    value: MetricValue | None = None  # "nan", "inf", "-inf"; older files: null for NaN
    step: int = 0
    resume_step: int = 0  # of a training event


_reported_decoder = msgspec.json.Decoder(_Reported, strict=False)  # reads "nan" as NaN


def _intermediates(conn: sqlite3.Connection) -> dict[int, list[MetricValue]]:
    """Every model's current curve: its metric events after the training event that
    began the curve (``attempt_seq``), each at its step (a later attempt that continued
    from a checkpoint drops the steps after it, then reports them again), in one pass
    over the events (decoded here: msgspec is several times faster than SQLite's
    json_extract)."""
    starts: dict[int, int] = dict(conn.execute(
        "SELECT id, attempt_seq FROM models WHERE attempt_seq IS NOT NULL").fetchall())
    found: defaultdict[int, list[MetricValue]] = defaultdict(list)
    if not starts:
        return found
    rows: Iterable[tuple[int, int, str, str]] = conn.execute(
        "SELECT model_id, seq, kind, data FROM events WHERE seq > ? AND kind IN (?, ?) "
        "ORDER BY seq", (min(starts.values()), _kind(MetricReported), _kind(TrainingStarted)))
    decode, metric = _reported_decoder.decode, _kind(MetricReported)
    for model_id, seq, kind, data in rows:
        start = starts.get(model_id)
        if start is None or seq <= start:
            continue
        report, values = decode(data), found[model_id]
        if kind != metric:  # a later attempt continues the curve from resume_step
            del values[report.resume_step:]
            continue
        if report.step > 0:
            del values[report.step - 1:]
        values.append(math.nan if report.value is None else report.value)
    return found


def _json_values(data: str) -> list[MetricValue]:
    return [math.nan if v is None else v for v in _values_decoder.decode(data)]


def _model(model_id: int, row: tuple[Any, ...], values: list[MetricValue],
           checkpoint: int | None = None) -> StoredModel:
    status, final = ModelStatus(row[2]), row[4]
    if final is None and status is ModelStatus.Trained:
        final = math.nan  # SQLite stores a NaN as NULL
    elif isinstance(final, str):  # several metrics: their JSON (see _write)
        final = _metrics(model_id, final)
    return StoredModel(
        id=model_id, sample=_sample_decoder.decode(row[1]), status=status,
        attempts=row[3], metrics=Metrics(intermediates=values, final=final,
                                         stopped_at=_stopped_at(row[2], row[10])),
        queued_at=row[5], started_at=row[6], ended_at=row[7], duration=row[8],
        worker=row[9], reason=row[10], blob=row[11] if len(row) > 11 else None,
        checkpoint=checkpoint,
    )


def _metrics(model_id: int, text: str) -> dict[str, float]:
    """A final of several metrics from its JSON text; RunFileError naming the model when
    the text is not a JSON object of named numbers."""
    try:
        return _metrics_decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise RunFileError(
            f"the run file's final of model {model_id} is {text[:80]!r}, neither a number "
            f"nor a JSON object of named numbers ({exc}): a newer nas-engine may have "
            "written it (upgrade nas-engine to read the run), or the file is damaged"
        ) from None


def read_outputs(conn: sqlite3.Connection, model_id: int | None = None) -> list[StoredOutput]:
    """The kept outputs of failed attempts (of one model, or of all), in model and
    attempt order. Files of schema version 1 keep none."""
    if schema_version(conn, Path("run")) < 2:
        return []
    where, args = ("WHERE model_id = ?", (model_id,)) if model_id is not None else ("", ())
    rows = conn.execute(f"SELECT model_id, attempt, stdout, stderr FROM outputs {where} "
                        "ORDER BY model_id, attempt", args).fetchall()
    return [StoredOutput(model_id=r[0], attempt=r[1], stdout=r[2], stderr=r[3]) for r in rows]


def _stopped_at(status: str, reason: str | None) -> int | None:
    """The step a trained model was stopped early at (see engine.store._write)."""
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
    models = read_models(conn, blobs=True, version=schema_version(conn, path))
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
        self.version = schema_version(self._conn, self.path)  # the file's schema version

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def models(self, *, blobs: bool = False) -> list[StoredModel]:
        return read_models(self._conn, blobs=blobs, version=self.version)

    def outputs(self, model_id: int | None = None) -> list[StoredOutput]:
        """The full stdout/stderr of failed attempts (of ``model_id``, or of every model),
        in model and attempt order."""
        return read_outputs(self._conn, model_id)

    def resume_state(self) -> ResumeState:
        return load_resume_state(self._conn, self.path)

    def last_seq(self) -> int:
        return int(self._conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def event_rows(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, str, str]]:
        """``(seq, kind, json)`` of the events after ``after``, in order; UnknownEventKind
        when one is of a kind this nas-engine does not know."""
        rows: list[tuple[int, str, str]] = self._conn.execute(
            "SELECT seq, kind, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit)).fetchall()
        for seq, kind, _ in rows:
            if kind not in EVENT_KINDS:
                raise UnknownEventKind(self.path, seq, kind)
        return rows

    def events(self, first: int = 1, last: int | None = None) -> Iterator[Event]:
        """The events ``first..last`` (to the end when last is None), decoded;
        UnknownEventKind when one is of a kind this nas-engine does not know."""
        end = last if last is not None else 2**62
        rows = self._conn.execute(
            "SELECT seq, kind, data FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (first, end))
        for row in rows:
            yield decode_event(self.path, *row)

    def last_failure(self, model_id: int) -> ModelFailed | None:
        """The latest ``failed`` event of model ``model_id`` (its error and traceback),
        or None when it never failed."""
        row = self._conn.execute(
            "SELECT seq, kind, data FROM events WHERE model_id = ? AND kind = ? "
            "ORDER BY seq DESC LIMIT 1", (model_id, _kind(ModelFailed))).fetchone()
        event = None if row is None else decode_event(self.path, *row)
        return event if isinstance(event, ModelFailed) else None

    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def paused_at(self) -> dict[int, float]:
        """When each model that ever paused last paused (the time of its latest
        ``paused`` event), by model id. One pass over the events."""
        rows = self._conn.execute("SELECT model_id, max(time) FROM events WHERE kind = ? "
                                  "GROUP BY model_id", (_kind(ModelPaused),))
        return {model_id: when for model_id, when in rows}

    def last_engine_event(self) -> Event | None:
        """The latest engine_started or engine_stopped event, or None."""
        row = self._conn.execute(
            "SELECT seq, kind, data FROM events WHERE kind IN (?, ?) ORDER BY seq DESC "
            "LIMIT 1", (_kind(EngineStarted), _kind(EngineStopped))).fetchone()
        return None if row is None else decode_event(self.path, *row)

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
