"""Writing one batch of events: the event rows and the model rows they change, in one
transaction. Runs in a worker thread; the caller serialises batches."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import msgspec

from engine.events import (
    EventBase,
    MetricReported,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelQueued,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
)

__all__ = ("write_batch",)

_encoder = msgspec.json.Encoder()
#: A trained model's ``reason`` when its strategy stopped it early, before the step.
STOPPED_PREFIX = "stopped at step"
_Update: TypeAlias = Callable[[Any], tuple[Any, ...]]

_QUEUED = """
INSERT INTO models (id, sample, status, queued_at, blob) VALUES (?, ?, 'frozen', ?, ?)
ON CONFLICT (id) DO UPDATE SET sample = excluded.sample, status = 'frozen',
    queued_at = excluded.queued_at, blob = coalesce(excluded.blob, models.blob)
"""

# Each model event's UPDATE of its model row; the row's id is the last parameter.
_UPDATES: dict[type[EventBase], tuple[str, _Update]] = {
    TrainingStarted: (
        "status = 'training', attempts = ?, worker = ?, started_at = ?, intermediates = '[]',"
        " final = NULL, ended_at = NULL, duration = NULL, reason = NULL",
        lambda e: (e.attempt, e.worker, e.time)),
    MetricReported: (
        "intermediates = json_insert(intermediates, '$[#]', ?)", lambda e: (e.value,)),
    ModelTrained: (  # a model its strategy stopped early: reason 'stopped at step N'
        "status = 'trained', final = ?, duration = ?, ended_at = ?, reason = ?",
        lambda e: (e.final, e.duration, e.time,
                   None if e.stopped_at is None else f"{STOPPED_PREFIX} {e.stopped_at}")),
    ModelFailed: (
        "status = 'failed', reason = ?, attempts = max(attempts, ?), ended_at = ?",
        lambda e: (f"{e.error_type}: {e.message}", e.attempt, e.time)),
    ModelRetrying: ("status = 'retrying', reason = ?", lambda e: (e.reason,)),
    ModelInterrupted: (
        "status = 'interrupted', reason = ?, ended_at = ?", lambda e: (e.reason.value, e.time)),
    ModelInvalid: ("status = 'invalid', reason = ?, ended_at = ?", lambda e: (e.message, e.time)),
}
_SQL = {kind: f"UPDATE models SET {sets} WHERE id = ?" for kind, (sets, _) in _UPDATES.items()}
_TAGS: dict[type[EventBase], str] = {}


def _tag(kind: type[EventBase]) -> str:
    tag = _TAGS.get(kind)
    if tag is None:
        tag = _TAGS[kind] = str(kind.__struct_config__.tag)
    return tag


def write_batch(conn: sqlite3.Connection, events: Sequence[EventBase],
                blobs: Mapping[int, bytes | None]) -> None:
    """Commit ``events`` and their model-row changes; ``blobs`` holds the recorded blob of
    each model queued in this batch. On error nothing of the batch is kept."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", [
            (e.seq, _tag(type(e)), getattr(e, "model_id", None), e.time,
             _encoder.encode(e).decode())
            for e in events])
        for event in events:
            _apply(conn, event, blobs)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _apply(conn: sqlite3.Connection, event: EventBase, blobs: Mapping[int, bytes | None]) -> None:
    if isinstance(event, ModelQueued):
        conn.execute(_QUEUED, (event.model_id, _encoder.encode(event.sample).decode(),
                               event.time,
                               blobs.get(event.model_id)))
        return
    update = _UPDATES.get(type(event))
    if update is None:  # engine and worker events change no model
        return
    model_id = event.model_id  # type: ignore[attr-defined]
    params = (*update[1](event), model_id)
    if conn.execute(_SQL[type(event)], params).rowcount == 0:
        # A model event with no queued event before it: keep the model all the same.
        conn.execute("INSERT INTO models (id, sample, status) VALUES (?, '{}', 'frozen')",
                     (model_id,))
        conn.execute(_SQL[type(event)], params)
