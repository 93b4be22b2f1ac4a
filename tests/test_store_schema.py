"""Run schema 2: a report's journal cost does not grow, older files still open, unknown
event kinds are named, read-only files are refused."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
from pathlib import Path

import anyio
import pytest

from engine.events import (
    EngineStarted,
    EngineStopped,
    MetricReported,
    ModelQueued,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
)
from engine.space import ModelStatus
from engine.store import RunFileError, RunReader, RunStore, UnknownEventKind
from engine.store._read import EVENT_KINDS
from engine.store._schema import SCHEMA_VERSION, create_schema
from engine.store._write import write_batch

DATA = Path(__file__).resolve().parent / "data"

# The event kinds each schema version knows. Adding a kind to the Event union must bump
# SCHEMA_VERSION (an older reader then refuses the file instead of misreading it).
KINDS_OF_SCHEMA = {
    2: {"engine_started", "engine_stopped", "worker_started", "worker_died", "queued",
        "training", "metric", "trained", "failed", "retrying", "interrupted", "invalid"},
    3: {"engine_started", "engine_stopped", "worker_started", "worker_died", "queued",
        "training", "metric", "trained", "failed", "retrying", "interrupted", "invalid",
        "paused", "resumed"},
}


def test_event_kinds_pin_the_schema_version() -> None:
    assert SCHEMA_VERSION in KINDS_OF_SCHEMA, "pin the event kinds of the new schema here"
    assert set(EVENT_KINDS) == KINDS_OF_SCHEMA[SCHEMA_VERSION], (
        "an event kind was added or removed: bump SCHEMA_VERSION in engine/store/_schema.py "
        "and pin the new kinds in KINDS_OF_SCHEMA")


def _wal_pages(conn: sqlite3.Connection, wal: Path, seq: int) -> int:
    """WAL frames (pages) written by committing one metric event ``seq`` of model 1."""
    before = wal.stat().st_size
    write_batch(conn, [MetricReported(seq=seq, time=0.0, model_id=1, value=seq / 3,
                                      step=seq)], {})
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    return (wal.stat().st_size - before) // (page + 24)


def test_a_report_writes_as_much_at_the_20000th_as_at_the_first(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the WAL only grows: its size counts
    create_schema(conn, 0.0)
    write_batch(conn, [ModelQueued(seq=1, time=0.0, model_id=1, sample={"x": 1}),
                       TrainingStarted(seq=2, time=0.0, model_id=1, worker="w", attempt=1)],
                {1: None})
    wal = path.with_name(path.name + "-wal")
    first = [_wal_pages(conn, wal, seq) for seq in range(3, 13)]
    reports = [MetricReported(seq=s, time=0.0, model_id=1, value=1.0, step=s)
               for s in range(13, 20_013)]
    for start in range(0, len(reports), 1000):
        write_batch(conn, reports[start:start + 1000], {})
    late = [_wal_pages(conn, wal, seq) for seq in range(20_013, 20_023)]
    conn.close()
    # One leaf page (now and then its parent): the model's earlier reports are not
    # rewritten. Schema 1 rewrote the whole JSON array: about 40 pages by then.
    assert max(first) <= 2
    assert sum(late) <= sum(first) + 2, (first, late)


async def _run_with_a_retry(path: Path, odd: float = 0.25) -> RunStore:
    store = await RunStore.open(path)
    events = [
        EngineStarted(seq=1, time=1.0, pool="inline", capacity=1),
        ModelQueued(seq=2, time=2.0, model_id=1, sample={"x": 1}),
        TrainingStarted(seq=3, time=3.0, model_id=1, worker="w0", attempt=1),
        MetricReported(seq=4, time=4.0, model_id=1, value=0.1, step=1),
        MetricReported(seq=5, time=5.0, model_id=1, value=0.2, step=2),
        ModelRetrying(seq=6, time=6.0, model_id=1, attempt=2, reason="OSError: x"),
        ModelQueued(seq=7, time=7.0, model_id=2, sample={"x": 2}),
        TrainingStarted(seq=8, time=8.0, model_id=2, worker="w1", attempt=1),
        TrainingStarted(seq=9, time=9.0, model_id=1, worker="w0", attempt=2),
        MetricReported(seq=10, time=10.0, model_id=2, value=odd, step=1),
        MetricReported(seq=11, time=11.0, model_id=1, value=0.3, step=1),
        ModelTrained(seq=12, time=12.0, model_id=1, final=0.5, duration=1.0),
    ]
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        for event in events:
            if isinstance(event, ModelQueued):
                store.record_model(event.model_id, b"blob")
            store.append(event)
        await store.flushed(events[-1].seq)
        tg.cancel_scope.cancel()
    return store


@pytest.mark.anyio
async def test_intermediates_are_the_latest_attempts_reports(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    await _run_with_a_retry(path, math.nan)
    with RunReader(path) as reader:
        models = {m.id: m for m in reader.models()}
        state = reader.resume_state()
    assert models[1].metrics.intermediates == [0.3]
    assert models[1].metrics.final == 0.5
    assert math.isnan(models[2].metrics.intermediates[0])
    assert len(models[2].metrics.intermediates) == 1
    assert state.models[0].metrics.intermediates == [0.3]


def _fixture_copy(tmp_path: Path) -> Path:
    path = tmp_path / "old.nasrun"
    shutil.copyfile(DATA / "run-schema-v1.sqlite3", path)
    return path


def test_a_schema_1_run_is_read_as_it_is(tmp_path: Path) -> None:
    path = _fixture_copy(tmp_path)
    before = path.read_bytes()
    with RunReader(path) as reader:
        assert reader.version == 1
        models = {m.id: m for m in reader.models()}
        assert reader.outputs() == []
        assert len(list(reader.events())) == 24
    assert models[1].metrics.intermediates == [0.4]
    assert models[2].metrics.intermediates == [0.45]
    assert models[3].status is ModelStatus.Failed
    assert path.read_bytes() == before


@pytest.mark.anyio
async def test_a_schema_1_run_is_migrated_when_resumed(tmp_path: Path) -> None:
    path = _fixture_copy(tmp_path)
    with RunReader(path) as reader:
        old = reader.models(blobs=True)
    store = await RunStore.open(path)
    assert store.resume_state.models == old
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        seq = store.resume_state.next_seq
        store.append(TrainingStarted(seq=seq, time=1.0, model_id=7, worker="w0", attempt=1))
        store.append(MetricReported(seq=seq + 1, time=2.0, model_id=7, value=0.7, step=1))
        store.append(EngineStopped(seq=seq + 2, time=3.0, reason="finished"))
        await store.flushed(seq + 2)
        tg.cancel_scope.cancel()
    with RunReader(path) as reader:
        assert reader.version == SCHEMA_VERSION
        models = {m.id: m for m in reader.models()}
    assert models[1].metrics.intermediates == [0.4]
    assert models[7].metrics.intermediates == [0.7]
    assert models[7].status is ModelStatus.Training
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(models)")]
    conn.close()
    if sqlite3.sqlite_version_info >= (3, 35):  # older ones cannot drop a column
        assert "intermediates" not in columns


def _add_event(path: Path, seq: int, kind: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO events VALUES (?, ?, NULL, 0.0, ?)",
                 (seq, kind, f'{{"kind":"{kind}","seq":{seq},"time":0.0}}'))
    conn.commit()
    conn.close()


@pytest.mark.anyio
async def test_an_unknown_event_kind_is_named(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    await _run_with_a_retry(path)
    _add_event(path, 13, "hibernated")
    with RunReader(path) as reader:
        with pytest.raises(UnknownEventKind, match="event 13 is of kind 'hibernated'") as info:
            list(reader.events())
        assert (info.value.kind, info.value.seq) == ("hibernated", 13)
        assert "upgrade nas-engine" in str(info.value)
        with pytest.raises(UnknownEventKind, match="'hibernated'"):
            reader.event_rows(10)
        assert [e.seq for e in reader.events(1, 12)] == list(range(1, 13))


def test_a_read_only_file_is_refused_by_its_mode_even_for_root(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    anyio.run(_run_with_a_retry, path)
    path.chmod(0o444)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RunFileError, match=r"the file is read-only \(mode 0444\)"):
        anyio.run(RunStore.open, path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    if os.geteuid() == 0:  # what the mode check is for: os.access says yes to root
        assert os.access(path, os.W_OK)
