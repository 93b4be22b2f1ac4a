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
    recorded: set[int] = set()  # a model queued again (a resumed run) records no blob
    try:
        for batch in batches:
            blobs: dict[int, bytes | None] = {}
            for e in batch:
                if isinstance(e, ModelQueued):
                    blobs[e.model_id] = (None if e.model_id in recorded
                                         else f"blob-{e.model_id}".encode())
                    recorded.add(e.model_id)
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


def _lives() -> tuple[list[Event], list[Event]]:
    """Two batches: whole trial lives in one batch (one stopped early, one whose
    metric comes between), a model trained again after a resume in the second batch
    (its row exists: blob and columns of the first life), one caught training by a
    kill that continues its curve from a checkpoint (its curve's start stays)."""
    seq = iter(range(1, 1000))

    def at(kind: type[Any], **fields: Any) -> Event:
        event: Event = kind(seq=next(seq), time=2000.0 + len(fields), **fields)
        return event

    def life(model_id: int, **trained: Any) -> list[Event]:
        return [at(ModelQueued, model_id=model_id, sample={"x": model_id}),
                at(TrainingStarted, model_id=model_id, worker="w0", attempt=1),
                at(MetricReported, model_id=model_id, value=0.5, step=1),
                at(ModelTrained, model_id=model_id, final=0.5, duration=1.0, **trained)]

    first = [*life(1), *life(2, stopped_at=1),
             at(ModelQueued, model_id=3, sample={"x": 3}),
             at(TrainingStarted, model_id=3, worker="w1", attempt=1),
             at(ModelInterrupted, model_id=3, reason=InterruptReason.shutdown),
             at(ModelQueued, model_id=4, sample={"x": 4}),  # the run is killed here
             at(TrainingStarted, model_id=4, worker="w0", attempt=1)]
    second = [*life(3), at(ModelQueued, model_id=4, sample={"x": 4}),
              at(TrainingStarted, model_id=4, worker="w0", attempt=2, resume_step=3),
              at(ModelTrained, model_id=4, final={"a": 1.0, "b": 2.0}, duration=2.0)]
    return first, second


def test_a_trials_whole_life_in_one_batch_is_one_row_as_its_events_leave_it(
        tmp_path: Path) -> None:
    first, second = _lives()
    one_by_one = _models_after(tmp_path / "a.nasrun", ([e] for e in [*first, *second]))
    batched = _models_after(tmp_path / "b.nasrun", iter([first, second]))
    assert batched == one_by_one
    assert [(row[0], row[2], row[10], row[11]) for row in batched] == [
        (1, "trained", None, b"blob-1"), (2, "trained", "stopped at step 1", b"blob-2"),
        (3, "trained", None, b"blob-3"), (4, "trained", None, b"blob-4")]


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
