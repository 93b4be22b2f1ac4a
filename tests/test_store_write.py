"""engine.store._write: a batch changes the model rows exactly as its events one by one."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.events import (
    Event,
    InterruptReason,
    MetricReported,
    ModelFailed,
    ModelInterrupted,
    ModelPaused,
    ModelQueued,
    ModelResumed,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
    WorkerStarted,
)
from engine.store import default_run_path
from engine.store._open import open_run
from engine.store._write import write_batch


def _events() -> list[Event]:
    """Models whose events interleave: retries, a pause and resume, a curve that
    continues, a model event without a queued event before it, and events that change
    no model row."""
    seq = iter(range(1, 1000))

    def at(kind: type[Any], **fields: Any) -> Event:
        event: Event = kind(seq=next(seq), time=1000.0 + len(fields), **fields)
        return event

    return [
        at(WorkerStarted, worker="w0", pid=1, gpus=()),
        at(ModelQueued, model_id=1, sample={"x": 1}),
        at(ModelQueued, model_id=2, sample={"x": 2}),
        at(TrainingStarted, model_id=1, worker="w0", attempt=1),
        at(ModelTrained, model_id=9, final=0.5, duration=1.0),  # no row yet
        at(TrainingStarted, model_id=2, worker="w1", attempt=1),
        at(MetricReported, model_id=1, value=0.1, step=1),
        at(ModelRetrying, model_id=2, attempt=2, reason="E: boom"),
        at(ModelPaused, model_id=1, step=1, checkpoint=1),
        at(TrainingStarted, model_id=2, worker="w1", attempt=2),
        at(ModelResumed, model_id=1),
        at(ModelQueued, model_id=3, sample={"x": 3}),
        at(ModelFailed, model_id=2, error_type="E", message="boom", traceback="",
           attempt=2),
        at(TrainingStarted, model_id=1, worker="w0", attempt=2, resume_step=1),
        at(ModelInterrupted, model_id=3, reason=InterruptReason.cancelled),
        at(ModelTrained, model_id=1, final=0.9, duration=2.0, stopped_at=None),
        at(TrainingStarted, model_id=7, worker="w1", attempt=1),  # no row yet either
    ]


def _models_after(path: Path, batches: Iterator[list[Event]]) -> list[tuple[Any, ...]]:
    _, conn, lock, _, _ = open_run(path, False, default_run_path)
    try:
        for batch in batches:
            blobs = {e.model_id: f"blob-{e.model_id}".encode() for e in batch
                     if isinstance(e, ModelQueued)}
            write_batch(conn, batch, blobs)
        return conn.execute("SELECT * FROM models ORDER BY id").fetchall()
    finally:
        conn.close()
        lock.release()


def test_one_batch_changes_the_rows_as_its_events_one_by_one(tmp_path: Path) -> None:
    events = _events()
    one_by_one = _models_after(tmp_path / "a.nasrun", ([e] for e in events))
    at_once = _models_after(tmp_path / "b.nasrun", iter([events]))
    assert at_once == one_by_one
    assert [row[:3] for row in at_once] == [
        (1, '{"x":1}', "trained"), (2, '{"x":2}', "failed"), (3, '{"x":3}', "interrupted"),
        (7, "{}", "training"), (9, "{}", "trained")]


def test_a_failed_batch_keeps_nothing(tmp_path: Path) -> None:
    events = _events()
    _, conn, lock, _, _ = open_run(tmp_path / "run.nasrun", False, default_run_path)
    try:
        write_batch(conn, events[:3], {})
        bad = [*events[3:], events[-1]]  # a seq twice: the events insert fails
        with pytest.raises(sqlite3.IntegrityError):
            write_batch(conn, bad, {})
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)
        assert conn.execute("SELECT id, status FROM models").fetchall() == [
            (1, "frozen"), (2, "frozen")]
    finally:
        conn.close()
        lock.release()
