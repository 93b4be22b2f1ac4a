from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    InterruptReason,
    MetricReported,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelQueued,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
)
from engine.space import ModelStatus
from engine.store import (
    RunFileError,
    RunReader,
    RunStore,
    RunStoreClosed,
    default_run_path,
)
from engine.store._schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]


class Emitter:
    """Builds events with contiguous seqs and appends them to a store."""

    def __init__(self, store: RunStore) -> None:
        self.store, self.seq = store, store.resume_state.next_seq - 1

    def __call__(self, kind: type[Any], **fields: Any) -> Event:
        self.seq += 1
        event: Event = kind(seq=self.seq, time=1_000.0 + self.seq, **fields)
        self.store.append(event)
        return event

    def trained(self, model_id: int, final: float, **sample: Any) -> Event:
        self.store.record_model(model_id, f"blob-{model_id}".encode())
        self(ModelQueued, model_id=model_id, sample=sample)
        self(TrainingStarted, model_id=model_id, worker="w0", attempt=1)
        self(MetricReported, model_id=model_id, value=final / 2, step=1)
        return self(ModelTrained, model_id=model_id, final=final, duration=0.5)


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


async def write_run(path: Path) -> None:
    """A closed run with a model in each status."""
    store = await RunStore.open(path)
    emit = Emitter(store)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        emit(EngineStarted, pool="inline", capacity=2)
        emit.trained(1, 0.8, width=16, act="relu")
        emit.trained(2, 0.9, width=32, act="tanh")
        store.record_model(3, b"blob-3")
        emit(ModelQueued, model_id=3, sample={"width": 64})
        emit(TrainingStarted, model_id=3, worker="w1", attempt=1)
        emit(ModelRetrying, model_id=3, attempt=2, reason="RuntimeError: boom")
        emit(TrainingStarted, model_id=3, worker="w1", attempt=2)
        emit(ModelFailed, model_id=3, error_type="RuntimeError", message="boom",
             traceback="tb", attempt=2)
        store.record_model(4, None)
        emit(ModelQueued, model_id=4, sample={"width": 8})
        emit(ModelInvalid, model_id=4, message="bad width", paths=("model", "width"))
        store.record_model(5, b"blob-5")
        emit(ModelQueued, model_id=5, sample={"width": 4})
        emit(TrainingStarted, model_id=5, worker="w0", attempt=1)
        emit(ModelInterrupted, model_id=5, reason=InterruptReason.shutdown)
        store.record_model(6, b"blob-6")
        emit(ModelQueued, model_id=6, sample={"width": 2})
        emit(TrainingStarted, model_id=6, worker="w1", attempt=1)
        emit(ModelInterrupted, model_id=6, reason=InterruptReason.cancelled)
        store.record_model(7, b"blob-7")
        emit(ModelQueued, model_id=7, sample={"width": 1})
        stopped = emit(EngineStopped, reason="cancelled")
        await store.flushed(stopped.seq)
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_run_keeps_every_event_and_model(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    await write_run(path)
    assert not (tmp_path / "run.nasrun.lock").exists()
    with RunReader(path) as reader:
        events = list(reader.events())
        assert [e.seq for e in events] == list(range(1, 25))
        assert isinstance(events[0], EngineStarted)
        assert isinstance(events[-1], EngineStopped)
        models = {m.id: m for m in reader.models(blobs=True)}
    assert models[1].status is ModelStatus.Trained
    assert models[1].metrics.final == 0.8
    assert models[1].metrics.intermediates == [0.4]
    assert models[1].sample == {"width": 16, "act": "relu"}
    assert models[1].blob == b"blob-1"
    assert (models[1].worker, models[1].duration, models[1].ended_at) == ("w0", 0.5, 1005.0)
    assert models[3].status is ModelStatus.Failed
    assert models[3].attempts == 2
    assert models[3].reason == "RuntimeError: boom"
    assert models[4].status is ModelStatus.Invalid
    assert models[4].blob is None
    assert models[7].status is ModelStatus.Frozen
    assert models[7].queued_at == 1023.0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


@pytest.mark.anyio
async def test_resume_state_splits_finished_from_unfinished(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    await write_run(path)
    store = await RunStore.open(path)
    state = store.resume_state
    assert (state.next_seq, state.next_model_id, state.resumed) == (25, 8, True)
    assert [m.id for m in state.finished] == [1, 2, 3, 4, 6]
    assert [(m.id, m.status, m.attempts, m.blob) for m in state.unfinished] == [
        (5, ModelStatus.Interrupted, 1, b"blob-5"), (7, ModelStatus.Frozen, 0, b"blob-7")]
    emit = Emitter(store)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        emit(EngineStarted, pool="inline", capacity=2, resumed=True)
        store.record_model(5, None)  # a re-queued model keeps its stored blob
        emit(ModelQueued, model_id=5, sample={"width": 4})
        emit(TrainingStarted, model_id=5, worker="w0", attempt=2)
        last = emit(ModelTrained, model_id=5, final=0.95, duration=1.0)
        await store.flushed(last.seq)
        tg.cancel_scope.cancel()
    with RunReader(path) as reader:
        resumed = reader.resume_state()
    model = {m.id: m for m in resumed.models}[5]
    assert (model.status, model.attempts, model.blob) == (ModelStatus.Trained, 2, b"blob-5")
    assert resumed.next_seq == 29
    assert [m.id for m in resumed.unfinished] == [7]


@pytest.mark.anyio
async def test_new_run_state_and_default_path(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = await RunStore.open()
    second = await RunStore.open()
    try:
        assert first.path.parent == second.path.parent == tmp_path / "runs"
        assert first.path != second.path
        assert first.path.name.startswith("run-")
        assert first.path.suffix == ".nasrun"
        state = first.resume_state
        assert (state.next_seq, state.next_model_id, state.models, state.resumed) == (
            1, 1, [], False)
    finally:
        await first.aclose()
        await second.aclose()
    assert default_run_path(tmp_path / "runs").parent == tmp_path / "runs"


@pytest.mark.anyio
async def test_misuse_is_reported(tmp_path: Path) -> None:
    store = await RunStore.open(tmp_path / "run.nasrun")
    emit = Emitter(store)
    emit(EngineStarted, pool="inline", capacity=1)
    with pytest.raises(ValueError, match="event seq 5 is out of order: the run store "
                                         "expects seq 2 next"):
        store.append(EngineStopped(seq=5, time=0.0, reason="finished"))
    with pytest.raises(ValueError, match="event 2 was not appended to the run store yet"):
        await store.flushed(2)
    await store.aclose()
    await store.flushed(1)  # written at close
    with pytest.raises(RunStoreClosed, match="is closed"):
        emit(EngineStopped, reason="finished")
    with pytest.raises(RunStoreClosed, match="is closed"):
        await store.serve()
    other = await RunStore.open(tmp_path / "other.nasrun")
    async with anyio.create_task_group() as tg:
        await tg.start(other.serve)
        with pytest.raises(RuntimeError, match=r"RunStore\.serve is already running"):
            await other.serve()
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_cancelling_serve_writes_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    store = await RunStore.open(path)
    emit = Emitter(store)
    flushed = anyio.Event()

    async def wait_flushed(seq: int) -> None:
        await store.flushed(seq)
        flushed.set()

    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        for model_id in range(1, 501):
            emit.trained(model_id, float(model_id))
        tg.start_soon(wait_flushed, emit.seq)
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert store.closed
    assert store.committed_seq == 2000
    with RunReader(path) as reader:
        assert reader.last_seq() == 2000
        assert len(reader.models()) == 500


@pytest.mark.anyio
async def test_read_events_spans_committed_and_pending(tmp_path: Path) -> None:
    store = await RunStore.open(tmp_path / "run.nasrun")
    emit = Emitter(store)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        for _ in range(10):
            emit(EngineStarted, pool="inline", capacity=1)
        await store.flushed(10)
        for _ in range(5):
            emit(EngineStopped, reason="finished")
        events = await store.read_events(3, 15)
        assert [e.seq for e in events] == list(range(3, 16))
        assert store.committed_seq == 10  # 11..15 came from memory
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_failed_write_stops_the_store(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    store = await RunStore.open(path)
    emit = Emitter(store)
    emit(EngineStarted, pool="inline", capacity=1)
    waiter_error: list[BaseException] = []

    async def wait(seq: int) -> None:
        try:
            await store.flushed(seq)
        except RunStoreClosed as exc:
            waiter_error.append(exc)

    async def run_until_it_fails() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(store.serve)
            await store.flushed(1)
            # SQLite stores NaN as NULL, which the events table refuses
            store.append(EngineStopped(seq=2, time=math.nan, reason="finished"))
            tg.start_soon(wait, 2)

    with pytest.raises(ExceptionGroup) as group:
        await run_until_it_fails()
    assert group.group_contains(sqlite3.IntegrityError,
                                match="NOT NULL constraint failed: events.time")
    assert "its writer failed (IntegrityError" in str(waiter_error[0])
    with pytest.raises(RunStoreClosed, match="its writer failed"):
        emit(EngineStopped, reason="finished")
    with RunReader(path) as reader:
        assert reader.last_seq() == 1
    assert not (tmp_path / "run.nasrun.lock").exists()


@pytest.mark.anyio
async def test_fsync_mode_round_trips(tmp_path: Path) -> None:
    store = await RunStore.open(tmp_path / "run.nasrun", fsync=True)
    emit = Emitter(store)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        await store.flushed(emit.trained(1, 0.5).seq)
        tg.cancel_scope.cancel()
    with RunReader(store.path) as reader:
        assert [m.metrics.final for m in reader.models()] == [0.5]


@pytest.mark.anyio
async def test_reader_reads_a_run_being_written_without_its_lock(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    store = await RunStore.open(path)
    emit = Emitter(store)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        await store.flushed(emit.trained(1, 0.5).seq)
        with RunReader(path) as reader:
            assert reader.last_seq() == 4
            assert reader.writer_pid() == os.getpid()
            await store.flushed(emit.trained(2, 0.7).seq)
            assert [m.id for m in reader.models()] == [1, 2]  # sees new commits
        assert (tmp_path / "run.nasrun.lock").read_text() == f"{os.getpid()}\n"
        tg.cancel_scope.cancel()


# A writer in another process: appends trained models, flushes every other one and
# reports each flushed seq, until it is killed.
WRITER = """
import sys, time, anyio
from engine.events import ModelQueued, TrainingStarted, MetricReported, ModelTrained
from engine.store import RunStore

async def main(path):
    store = await RunStore.open(path)
    seq = store.resume_state.next_seq - 1
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        print("ready", flush=True)
        model = 0
        while True:
            model += 1
            store.record_model(model, b"blob")
            for kind, fields in ((ModelQueued, {"sample": {"i": model}}),
                                 (TrainingStarted, {"worker": "w", "attempt": 1}),
                                 (MetricReported, {"value": 0.5, "step": 1}),
                                 (ModelTrained, {"final": float(model), "duration": 0.1})):
                seq += 1
                store.append(kind(seq=seq, time=time.time(), model_id=model, **fields))
            if model % 2:
                await store.flushed(seq)
                print("flushed", seq, flush=True)
                if sys.argv[2] == "hold":
                    await anyio.sleep_forever()
            else:
                await anyio.sleep(0)

anyio.run(main, sys.argv[1])
"""


@contextlib.asynccontextmanager
async def writer_process(
        path: Path, mode: str = "run") -> AsyncIterator[tuple[Process, BufferedByteReceiveStream]]:
    """The WRITER script on ``path``, once ready; killed on the way out."""
    process = await anyio.open_process([sys.executable, "-c", WRITER, str(path), mode],
                                       cwd=ROOT, stderr=subprocess.STDOUT)
    async with process:
        try:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            with anyio.fail_after(30):
                assert await lines.receive_until(b"\n", 10_000) == b"ready"
            yield process, lines
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()


@pytest.mark.anyio
async def test_sigkilled_writer_leaves_every_flushed_event(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    async with writer_process(path) as (process, lines):
        flushed = 0
        with anyio.fail_after(30):
            while flushed < 400:
                flushed = int((await lines.receive_until(b"\n", 100)).split()[1])
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        with contextlib.suppress(anyio.IncompleteRead):  # lines printed before it died
            while True:
                flushed = int((await lines.receive_until(b"\n", 100)).split()[1])
    store = await RunStore.open(path)  # the kernel released the dead writer's lock
    state = store.resume_state  # RunFileError if the seqs had a gap
    await store.aclose()
    assert state.next_seq - 1 >= flushed
    with RunReader(path) as reader:
        events = list(reader.events())
    assert [e.seq for e in events] == list(range(1, state.next_seq))
    queued = [e.model_id for e in events if isinstance(e, ModelQueued)]
    trained = {e.model_id: e.final for e in events if isinstance(e, ModelTrained)}
    assert [m.id for m in state.models] == queued
    for model in state.models:  # each model row agrees with its events
        assert (model.status is ModelStatus.Trained) == (model.id in trained)
        assert model.metrics.final == trained.get(model.id)
    assert state.next_model_id == queued[-1] + 1


@pytest.mark.anyio
async def test_a_run_open_in_another_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    async with writer_process(path, "hold") as (process, lines):
        await lines.receive_until(b"\n", 100)  # "flushed 4": then it holds
        before = path.read_bytes()
        with pytest.raises(RunFileError) as info:
            await RunStore.open(path)
        assert str(info.value) == (f"{path} is already open in process {process.pid}: wait "
                                   "for it to finish, or read it with the nas-engine CLI")
        assert path.read_bytes() == before
        with RunReader(path) as reader:  # reading needs no lock
            assert reader.last_seq() == 4
            assert reader.writer_pid() == process.pid
    with RunReader(path) as reader:
        assert reader.writer_pid() is None  # a stale lock file names a dead process
    store = await RunStore.open(path)
    await store.aclose()


def assert_refused(path: Path, message: str) -> None:
    folder = path.parent
    before = files_in(folder) if folder.is_dir() else None
    with pytest.raises(RunFileError) as info:
        anyio.run(RunStore.open, path)
    assert str(info.value) == message
    assert (files_in(folder) if folder.is_dir() else None) == before


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a database\n")
    assert_refused(path, f"{path} is not a nas-engine run file (not an SQLite database): "
                         "pick another path")


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    assert_refused(path, f"{path} is an SQLite database but not a nas-engine run file: "
                         "pick another path")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    anyio.run(write_run, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    assert_refused(path, f"{path} was written by a newer nas-engine (run schema version 99; "
                         f"this one reads up to {SCHEMA_VERSION}): upgrade nas-engine to open it")


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "run.nasrun"
    assert_refused(path, f"cannot use {path}: the directory {path.parent} does not exist; "
                         "create it first or pick another path")
    assert not path.parent.exists()


def test_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    path.mkdir()
    assert_refused(path, f"cannot use {path}: it is not a regular file")


def test_a_gap_in_the_events_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    anyio.run(write_run, path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM events WHERE seq = 5")
    conn.close()
    assert_refused(path, f"{path} is damaged: its events are not numbered 1..23 (found "
                         "1..24); it cannot be resumed")


OPEN = """
import sys, anyio
from engine.store import RunStore, RunFileError
try:
    anyio.run(RunStore.open, sys.argv[1])
except RunFileError as exc:
    print(exc)
    sys.exit(3)
"""


def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    command = [sys.executable, "-c", OPEN, str(folder / "run.nasrun")]
    if os.geteuid() == 0:  # root writes anywhere: drop its powers in a user namespace
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare(1)")
        command = ["unshare", "--user", *command]
    tmp_path.chmod(0o755)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    lock = folder / "run.nasrun.lock"
    assert result.returncode == 3, result.stderr
    assert result.stdout == (f"cannot open {folder / 'run.nasrun'} for writing: cannot "
                             f"create {lock.name} in {folder} (Permission denied); pick a "
                             "writable directory\n")
    assert list(folder.iterdir()) == []


def test_reader_refuses_a_missing_run(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match=r"no run file at .*nope\.nasrun: check the path"):
        RunReader(tmp_path / "nope.nasrun")


def test_reopen_is_fast_enough_for_a_big_run(tmp_path: Path) -> None:
    """A run of 20,000 events resumes in well under a second."""
    path = tmp_path / "run.nasrun"

    async def build() -> None:
        store = await RunStore.open(path)
        emit = Emitter(store)
        async with anyio.create_task_group() as tg:
            await tg.start(store.serve)
            for model_id in range(1, 5001):
                emit.trained(model_id, model_id / 5000)
            tg.cancel_scope.cancel()

    async def reopen() -> tuple[float, RunStore]:
        start = time.perf_counter()
        store = await RunStore.open(path)
        elapsed = time.perf_counter() - start
        await store.aclose()
        return elapsed, store

    anyio.run(build)
    elapsed, store = anyio.run(reopen)
    assert len(store.resume_state.models) == 5000
    assert store.resume_state.next_seq == 20001
    assert elapsed < 1.0
