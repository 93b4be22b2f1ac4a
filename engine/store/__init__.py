"""The run store: one SQLite file per run holding every event and every model.

Use::

    store = await RunStore.open(path)      # None: ./runs/run-YYYYmmdd-HHMMSS.nasrun;
                                           # store.path says which (the caller prints it)
    state = store.resume_state             # next_seq, next_model_id, models (with blobs)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)        # the background writer
        store.admit(model)                 # at submit: RunChanged if made otherwise
        store.record_model(model_id, blob) # before that model's ModelQueued event
        store.append(event)                # on the loop thread, in seq order; never blocks
        store.record_output(model_id, attempt, stdout, stderr)  # a failed trial's output
        await store.flushed(event.seq)     # returns once every event up to seq is committed
        await store.read_events(first, last)  # events a lagging subscriber missed
    # cancelling serve (or ``await store.aclose()``) writes what is pending and closes

Everything runs on the event-loop thread except the SQLite work, which runs in a worker
thread (``anyio.to_thread``), one batch at a time. Any other process reads a run with
:class:`RunReader` (what the ``nas-engine`` CLI uses).

The file (stdlib ``sqlite3``, WAL mode, ``PRAGMA application_id`` marks it as a run,
``PRAGMA user_version`` is the schema version) has five tables: ``events`` (seq primary
key, kind, model_id, time, the event's msgspec JSON), ``models`` (id, sample JSON, status,
attempts, final, queued/started/ended times, duration, worker, reason, blob),
``intermediates`` (model_id, seq, step, value: the latest attempt's reports, one row
each, so a report costs one insert however many came before it), ``outputs`` (the full
stdout/stderr of failed attempts) and ``meta``. A model's rows change in the same
transaction as the event that changes them, so the tables always agree. A file of an
older schema is migrated when it is opened for writing (one transaction); readers read
every version.

Durability. ``serve`` takes every event appended since its last write and commits them
in one transaction, in a worker thread. A process crash (SIGKILL included) loses at
most the events appended after the last commit; the file reopens with contiguous seqs
and models that match their events. Once ``flushed(seq)`` returned, the events up to
``seq`` survive a process crash; with ``fsync=True`` (SQLite ``synchronous=FULL``) they
also survive an OS crash or power loss, at the cost of one fsync per batch. The engine
resolves a model's handle only after ``flushed`` of its final event, so a result a
strategy has seen is never lost.

Resume. ``resume_state`` says which models are finished and which need training again
(queued, training or retrying, or interrupted by a shutdown), and the next seq and model
id, so sequence numbers stay contiguous across resumes.

Errors::

    ValueError
    └── RunFileError     the path cannot be used (not a run file, a newer schema, open
        │                in another process, a missing or read-only directory, a file
        │                without write permission); the file is left as it was
        ├── UnknownEventKind  an event of a kind this version does not know
        └── RunChanged   a resumed run's new models differ from its own (admit)
    RuntimeError
    └── RunStoreClosed   the store is closed, or its writer failed

A writer holds an exclusive ``flock`` on ``<run>.lock`` (holding its pid) while the run
is open. :class:`RunReader` opens a run read-only without that lock, also while another
process writes it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec
from anyio.abc import TaskStatus

from engine.errors import NasEngineError
from engine.events import Event, ModelQueued
from engine.space import ExecutableModelSpace
from engine.store._fingerprint import RunChanged, differences, fingerprint, space_key
from engine.store._open import connect_reader, open_run
from engine.store._read import (
    ResumeState,
    RunReader,
    StoredModel,
    StoredOutput,
    UnknownEventKind,
    read_events,
)
from engine.store._schema import RunFileError, RunLock
from engine.store._write import Output, write_batch

__all__ = (
    "ResumeState",
    "RunChanged",
    "RunFileError",
    "RunReader",
    "RunStore",
    "RunStoreClosed",
    "StoredModel",
    "StoredOutput",
    "UnknownEventKind",
    "default_run_path",
)


_BATCH_WINDOW = 0.01  # seconds a batch may gather before it is written
_fingerprints_decoder = msgspec.json.Decoder(list[dict[str, str]])


class RunStoreClosed(NasEngineError, RuntimeError):
    """The store is closed (or its writer failed): events can no longer be written."""


def default_run_path(directory: str | Path = "runs") -> Path:
    """A new ``run-YYYYmmdd-HHMMSS.nasrun`` path in ``directory`` (created if missing),
    with a ``-2``, ``-3``... suffix when that name is taken."""
    folder = Path(directory).absolute()
    folder.mkdir(exist_ok=True)
    stem = time.strftime("run-%Y%m%d-%H%M%S")
    path, n = folder / f"{stem}.nasrun", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.nasrun"
    return path


class RunStore:
    """The journal of one run, open for writing by this process. Create with :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: RunLock,
                 state: ResumeState, meta: dict[str, str] | None = None) -> None:
        self.path, self.resume_state = path, state
        stored = (meta or {}).get("fingerprints")
        # What the run's models were made from, one fingerprint per space (empty: nothing
        # submitted yet, or an older file).
        self.fingerprints: list[dict[str, str]] = (
            [] if stored is None else _fingerprints_decoder.decode(stored))
        self._checking = bool(self.fingerprints)  # a resumed run: new spaces must match
        self._admitted: list[object] = []  # the spaces already compared with it
        self._meta: dict[str, str] = {}  # meta rows to write with the next batch
        self._conn, self._lock = conn, lock
        # Read-backs for subscribers, from worker threads: one at a time on one connection,
        # closed before the writer's (so the writer's close removes the -wal/-shm files).
        self._reader: sqlite3.Connection | None = None
        self._reader_guard = threading.Lock()
        self._files_closed = False
        self._outputs: list[Output] = []
        self._next_seq = state.next_seq
        self._committed = state.next_seq - 1
        self._pending: list[Event] = []
        self._inflight: list[Event] = []
        self._blobs: dict[int, bytes | None] = {}
        self._wake, self._commit = anyio.Event(), anyio.Event()
        self._write_lock = anyio.Lock()
        self._serving = self._closed = False
        self._error: BaseException | None = None

    @classmethod
    async def open(cls, path: str | Path | None = None, *, fsync: bool = False) -> RunStore:
        """Open (or create) a run file for writing and load its resume state.
        RunFileError, with the file untouched, when the path cannot be used."""
        with anyio.CancelScope(shield=True):  # a cancelled open must not leak the lock
            target, conn, lock, state, meta = await anyio.to_thread.run_sync(
                open_run, path, fsync, default_run_path)
        return cls(target, conn, lock, state, meta)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def committed_seq(self) -> int:
        """The seq of the last committed event (0 when none)."""
        return self._committed

    def record_model(self, model_id: int, blob: bytes | None) -> None:
        """Keep ``blob`` (a frozen model's dump, None for raw-format models) to store with
        the model's next ModelQueued event. Call it before appending that event."""
        self._check_open()
        self._blobs[model_id] = blob

    def set_meta(self, key: str, value: str) -> None:
        """Set ``key`` in the run's ``meta`` table; written (before the events) with the
        next batch, or at close."""
        self._check_open()
        self._meta[key] = value
        self._wake.set()

    def append(self, event: Event) -> None:
        """Queue ``event`` for the writer. Events must come in seq order, without gaps."""
        if self._closed or self._error is not None:
            self._check_open()
        if event.seq != self._next_seq:
            raise ValueError(f"event seq {event.seq} is out of order: the run store expects "
                             f"seq {self._next_seq} next")
        self._next_seq += 1
        pending = self._pending
        pending.append(event)
        if len(pending) == 1:  # else the writer was woken for the first, and takes all
            self._wake.set()

    def admit(self, model: ExecutableModelSpace, *, force: bool = False) -> None:
        """Check that ``model`` is made like the run's models (its space, evaluator and
        their fixed arguments; see engine.store._fingerprint), once per space. A run that
        held no fingerprint when opened records each space's (written with the next
        batch); a resumed one raises RunChanged, recording nothing, for a model that
        matches none of its spaces, unless ``force`` (then it is recorded)."""
        self._check_open()
        key = space_key(model)
        if key is not None and any(key is seen for seen in self._admitted):
            return
        new = fingerprint(model)
        changes = [differences(old, new) for old in self.fingerprints]
        if not changes or all(changes):
            if self._checking and not force:
                closest = min(changes, key=len)
                raise RunChanged(
                    f"{self.path} was made with other settings; these models differ from "
                    "its models:\n  " + "\n  ".join(closest) + "\nUse a new run file, or "
                    "pass Engine(..., allow_changed_space=True) to resume this one anyway",
                    closest)
            self.fingerprints.append(new)
            self._meta["fingerprints"] = msgspec.json.encode(self.fingerprints).decode()
            self._wake.set()
        if key is not None:
            self._admitted.append(key)

    def record_output(self, model_id: int, attempt: int, stdout: str, stderr: str) -> None:
        """Keep the full output of attempt ``attempt`` of a model (a failed one); it is
        written with the next batch. Never blocks. :meth:`RunReader.outputs` reads it."""
        self._check_open()
        self._outputs.append((model_id, attempt, stdout, stderr))
        self._wake.set()

    async def flushed(self, seq: int) -> None:
        """Return once every event up to ``seq`` is committed. Cancelling the wait leaves
        the events queued; RunStoreClosed if the store closed before writing them."""
        if seq >= self._next_seq:
            raise ValueError(f"event {seq} was not appended to the run store yet "
                             f"(last appended: {self._next_seq - 1})")
        while self._committed < seq:
            if self._closed or self._error is not None:
                raise RunStoreClosed(f"the run store closed before event {seq} was written"
                                     f"{_cause(self._error)}") from self._error
            await self._commit.wait()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write appended events in batches until cancelled (or :meth:`aclose`); then,
        shielded, write what is pending and close the file. A failed write is raised."""
        self._check_open()
        if self._serving:
            raise RuntimeError("RunStore.serve is already running")
        self._serving = True
        try:
            task_status.started()
            while not self._closed:
                await self._wake.wait()
                # Let a batch gather: one transaction per few events would cost the
                # trials more CPU (and GIL) than the writes themselves. One batch per
                # window, also when events came during the write: writing those at once
                # would write a small batch per thread round trip while trials run.
                await anyio.sleep(_BATCH_WINDOW)
                self._wake = anyio.Event()
                await self._flush(drain=False)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Write what is pending and close the file and its lock (shielded; idempotent)."""
        with anyio.CancelScope(shield=True):
            try:
                if self._error is None:
                    await self._flush()
            finally:
                async with self._write_lock:
                    if not self._closed:
                        self._closed = True
                        await anyio.to_thread.run_sync(self._close_files)
                self._wake.set()
                self._notify()

    async def read_events(self, first: int, last: int) -> list[Event]:
        """The appended events ``first..last`` (committed or not) in seq order, for
        subscribers that fell behind; also after the store closed. The committed ones are
        read in a worker thread, the rest taken from memory at the same instant, so no
        batch committed meanwhile is missed. The result stops short of ``last`` only
        where events are missing (a failed write). Cancelling the wait loses nothing."""
        last = min(last, self._next_seq - 1)
        committed = self._committed  # events after it are still in memory, in order
        memory = self._in_memory(max(first, committed + 1), last)
        stored: list[Event] = []
        if first <= min(last, committed):
            stored = await anyio.to_thread.run_sync(self._read_committed, first,
                                                    min(last, committed))
        return stored + memory

    def _in_memory(self, first: int, last: int) -> list[Event]:
        found: list[Event] = []
        for events in (self._inflight, self._pending):
            if events and first <= last:
                base = events[0].seq
                found += events[max(first - base, 0):max(last - base + 1, 0)]
        return found

    def _read_committed(self, first: int, last: int) -> list[Event]:
        # In a worker thread.
        with self._reader_guard:
            if not self._files_closed:
                if self._reader is None:
                    self._reader = connect_reader(self.path)
                return read_events(self._reader, self.path, first, last)
            conn = connect_reader(self.path)  # after close: a connection of its own
            try:
                return read_events(conn, self.path, first, last)
            finally:
                conn.close()

    async def _flush(self, *, drain: bool = True) -> None:
        """Write what is pending: one batch, or (``drain``) until nothing is left."""
        async with self._write_lock:
            while (self._pending or self._outputs or self._meta) and not self._closed:
                batch, self._pending = self._pending, []
                outputs, self._outputs = self._outputs, []
                meta, self._meta = self._meta, {}
                blobs = {e.model_id: self._blobs.pop(e.model_id, None)
                         for e in batch if isinstance(e, ModelQueued)}
                self._inflight = batch
                try:
                    # Shielded: a batch taken from _pending is written, whatever happens.
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(self._write, batch, blobs, outputs,
                                                       meta)
                finally:
                    self._inflight = []
                    self._notify()
                if not drain:
                    break

    def _write(self, batch: list[Event], blobs: dict[int, bytes | None],
               outputs: list[Output], meta: dict[str, str]) -> None:
        # In a worker thread; the write lock keeps one batch at a time.
        try:
            write_batch(self._conn, batch, blobs, outputs, meta)
        except BaseException as exc:
            self._error = exc
            raise
        if batch:
            self._committed = batch[-1].seq

    def _close_files(self) -> None:
        try:
            with self._reader_guard:
                self._files_closed = True
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
            self._conn.close()
        finally:
            self._lock.release()

    def _notify(self) -> None:
        self._commit.set()
        self._commit = anyio.Event()

    def _check_open(self) -> None:
        if self._closed or self._error is not None:
            raise RunStoreClosed(f"the run store of {self.path} is closed"
                                 f"{_cause(self._error)}")


def _cause(error: BaseException | None) -> str:
    return "" if error is None else f": its writer failed ({type(error).__name__}: {error})"
