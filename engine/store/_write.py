"""Writing one batch of events: the event rows and the model rows they change, in one
transaction. Runs in a worker thread; the caller serialises batches.

Every event costs the same few row writes whatever came before it: an intermediate
result is its event row and nothing else (readers collect a model's intermediates from
the metric events after its latest training event, ``models.attempt_seq``), so a trial's
millionth report is as cheap to journal as its first."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, get_args

import msgspec

from engine.events import (
    Event,
    EventBase,
    MetricReported,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelPaused,
    ModelQueued,
    ModelResumed,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
    encode_json,
)

__all__ = ("Output", "write_batch")

# (model_id, attempt, stdout, stderr) of a trial whose output is kept.
Output: TypeAlias = tuple[int, int, str, str]

_encoder = msgspec.json.Encoder()
#: A trained model's ``reason`` when its strategy stopped it early, before the step.
STOPPED_PREFIX = "stopped at step"
#: A paused model's ``reason``, before the step it reached.
PAUSED_PREFIX = "paused at step"
_Update: TypeAlias = Callable[[Any], tuple[Any, ...]]

_QUEUED = """
INSERT INTO models (id, sample, status, queued_at, blob) VALUES (?, ?, 'frozen', ?, ?)
ON CONFLICT (id) DO UPDATE SET sample = excluded.sample, status = 'frozen',
    queued_at = excluded.queued_at, blob = coalesce(excluded.blob, models.blob)
"""

# Each model event's UPDATE of its model row; the row's id is the last parameter.
_UPDATES: dict[type[EventBase], tuple[str, _Update]] = {
    TrainingStarted: (  # an attempt that continues a curve keeps where the curve began
        "status = 'training', attempts = ?, worker = ?, started_at = ?, attempt_seq = "
        "CASE WHEN ? = 0 OR attempt_seq IS NULL THEN ? ELSE attempt_seq END,"
        " final = NULL, ended_at = NULL, duration = NULL, reason = NULL, checkpoint = NULL",
        lambda e: (e.attempt, e.worker, e.time, e.resume_step, e.seq)),
    ModelTrained: (  # a model its strategy stopped early: reason 'stopped at step N'
        "status = 'trained', final = ?, duration = ?, ended_at = ?, reason = ?",
        lambda e: (_final_column(e.final), e.duration, e.time,
                   None if e.stopped_at is None else f"{STOPPED_PREFIX} {e.stopped_at}")),
    ModelFailed: (
        "status = 'failed', reason = ?, attempts = max(attempts, ?), ended_at = ?",
        lambda e: (f"{e.error_type}: {e.message}", e.attempt, e.time)),
    ModelRetrying: ("status = 'retrying', reason = ?", lambda e: (e.reason,)),
    ModelInterrupted: (
        "status = 'interrupted', reason = ?, ended_at = ?", lambda e: (e.reason.value, e.time)),
    ModelInvalid: ("status = 'invalid', reason = ?, ended_at = ?", lambda e: (e.message, e.time)),
    ModelPaused: (
        "status = 'paused', reason = ?, checkpoint = ?",
        lambda e: (f"{PAUSED_PREFIX} {e.step}", e.checkpoint)),
    ModelResumed: ("status = 'frozen', reason = NULL", lambda e: ()),
}
_OUTPUT = "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?)"
_SQL = {kind: f"UPDATE models SET {sets} WHERE id = ?" for kind, (sets, _) in _UPDATES.items()}
_TAGS: dict[Any, str] = {kind: str(kind.__struct_config__.tag) for kind in get_args(Event)}


def write_batch(conn: sqlite3.Connection, events: Sequence[EventBase],
                blobs: Mapping[int, bytes | None], outputs: Sequence[Output] = (),
                meta: Mapping[str, str] | None = None) -> None:
    """Commit ``events`` and their model-row changes; ``blobs`` holds the recorded blob of
    each model queued in this batch, ``outputs`` the trial outputs to keep, ``meta`` the
    meta rows to set. On error nothing of the batch is kept."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if meta:
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        if outputs:
            conn.executemany(_OUTPUT, outputs)
        encode = encode_json  # spells NaN and infinity, which JSON lacks
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", [
            (e.seq, _TAGS[type(e)], getattr(e, "model_id", None), e.time, encode(e).decode())
            for e in events])
        for event in events:
            if type(event) is not MetricReported:  # a metric changes no other row
                _apply(conn, event, blobs)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _final_column(final: float | dict[str, float]) -> float | str:
    """A final as the ``models.final`` column holds it: a number, or a dict of metrics
    as its JSON text (SQLite keeps a TEXT value in a REAL column as text)."""
    return _encoder.encode(final).decode() if isinstance(final, dict) else final


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
