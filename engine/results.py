"""A run's results as plain Python records, folded from its event stream.

Use::

    from engine.results import open_run

    with open_run("runs/run-20260101-120000.nasrun") as run:
        for model in run.models():          # ModelRecord, id order
            print(model.id, model.status, model.final, model.sample)
        run.best("max")                     # ranked models, highest fidelity, then best, first
        run.front()                         # the Pareto front (several objectives)
        run.hypervolume([0.0, 1e6])         # what it dominates up to a reference point
        run.metrics()                       # every reported metric, all attempts
        frame = run.to_pandas()             # one row per model (pip install pandas)

A :class:`RunResults` reads the run read-only and takes no lock, so it works on a
finished run and on one that an engine is still writing: :meth:`RunResults.refresh`
folds the events written since the last call (only those) into the records.

Everything comes from the run's events (``engine.events``), not from the store's
tables, so the records mean the same thing whatever the file's schema version.

Errors: a path that is not a readable run raises ``engine.store.RunFileError`` (the same
message as ``nas-engine show``); :meth:`RunResults.to_pandas` without pandas raises
``ImportError`` naming the ``results`` extra.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import msgspec

from engine._front import front, points
from engine._objective import MetricValue, Objective, fidelity, objectives_from_meta, ranked
from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    MetricReported,
    ModelEvent,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelPaused,
    ModelQueued,
    ModelResumed,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
)
from engine.pareto import hypervolume, modes_of
from engine.space import Metrics, ModelStatus
from engine.store._read import RunReader, decode_event

__all__ = ("MetricPoint", "ModelRecord", "RunResults", "open_run")

Mode = Literal["max", "min"]
Table = Literal["models", "metrics", "events"]
_OUTPUT_QUERIES = 32  # newly failed models read one by one; more: one query for all
_FAILED_FIELDS = frozenset({"seq", "time", "model_id", "error_type", "message", "traceback",
                            "attempt"})


class MetricPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One intermediate metric a model reported."""

    model_id: int
    attempt: int
    step: int
    value: MetricValue  # a number, or a dict of named numbers
    time: float


class ModelRecord(msgspec.Struct, kw_only=True):
    """One model as its events describe it. ``curve`` and ``final`` are those of the
    latest attempt; ``steps`` is the last step it reported; ``fidelity`` the step it is
    ranked at (stopped early or paused; ``math.inf``: trained to its end)."""

    id: int
    sample: dict[str, Any] = msgspec.field(default_factory=dict)
    status: ModelStatus = ModelStatus.Frozen
    attempts: int = 0  # attempts started
    worker: str | None = None  # the worker of the latest attempt
    final: MetricValue | None = None  # a dict when the model reported several metrics
    curve: list[tuple[int, MetricValue]] = msgspec.field(default_factory=list)  # (step, value)
    queued_at: float | None = None
    started_at: float | None = None  # the latest attempt's start
    ended_at: float | None = None
    duration: float | None = None  # training time of the trained attempt
    stopped_at: int | None = None  # the step its strategy stopped it at (final: that step's)
    paused_at: float | None = None  # when it paused (None unless it is paused)
    reason: str | None = None  # why it failed / is retrying / was interrupted or invalid
    error_type: str | None = None  # of the latest failure
    message: str | None = None
    traceback: str | None = None
    # The latest failed attempt's full captured streams ("stdout", "stderr": those not
    # empty), from the run file (RunReader.outputs); empty for a model that never failed.
    output: dict[str, str] = msgspec.field(default_factory=dict)
    last_seq: int = 0  # the seq of the latest event about it

    @property
    def latest(self) -> MetricValue | None:
        """The last intermediate value reported (None before the first)."""
        return self.curve[-1][1] if self.curve else None

    @property
    def steps(self) -> int:
        """The last step reported: how far it trained (0 before the first report)."""
        return self.curve[-1][0] if self.curve else 0

    @property
    def metrics(self) -> Metrics:
        """Its latest attempt's metrics (a new object each time), as a model holds them."""
        return Metrics(intermediates=[value for _, value in self.curve], final=self.final,
                       stopped_at=self.stopped_at)

    @property
    def fidelity(self) -> float:
        """The step it ranks at: where its strategy stopped or paused it; ``math.inf``
        when it trained to its end (see ``strategies.fidelity``)."""
        return fidelity(self)


class RunResults:
    """The models, metrics and events of one run file. Create with :func:`open_run`;
    close it (or use ``with``) to release the file. Not thread-safe: share one between
    threads only under a lock."""

    def __init__(self, path: str | Path) -> None:
        self._reader = RunReader(path)
        self.path = self._reader.path
        self.seq = 0  # the last event folded in
        self.started: EngineStarted | None = None  # the latest engine_started
        self.stopped: EngineStopped | None = None  # set when the engine stopped after it
        self.first_time: float | None = None  # the time of the first event
        self._models: dict[int, ModelRecord] = {}
        self.refresh()

    def __enter__(self) -> RunResults:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    def refresh(self, limit: int = 10_000) -> int:
        """Fold in the events written since the last call; returns how many. Reads at most
        ``limit`` events per query, as many queries as it takes."""
        folded, failed = 0, set[int]()
        while rows := self._reader.event_rows(self.seq, limit):
            for seq, kind, data in rows:
                event = decode_event(self.path, seq, kind, data)
                self._apply(event)
                if isinstance(event, ModelFailed):
                    failed.add(event.model_id)
                self.seq = seq
            folded += len(rows)
        self._fold_outputs(failed)
        return folded

    def _fold_outputs(self, failed: set[int]) -> None:
        """The full output the run file keeps of each newly failed model's failed
        attempts: the latest one's streams go to its record's ``output``. (The store
        writes it in the batch of the failure event, or before.)"""
        if not failed:
            return
        many = len(failed) > _OUTPUT_QUERIES
        kept = self._reader.outputs() if many else [
            out for model_id in sorted(failed) for out in self._reader.outputs(model_id)]
        for out in kept:  # model and attempt order: the latest attempt comes last
            model = self._models.get(out.model_id)
            if out.model_id in failed and model is not None:
                streams = {"stdout": out.stdout, "stderr": out.stderr}
                model.output = {name: text for name, text in streams.items() if text}

    @property
    def writing(self) -> bool:
        """True while a live process has the run open for writing."""
        return self._reader.writer_pid() is not None

    def meta(self) -> dict[str, str]:
        """The run file's meta table (``created`` and whatever the engine stored)."""
        return self._reader.meta()

    def models(self) -> list[ModelRecord]:
        """Every model, id order (the records themselves: later refreshes update them)."""
        return sorted(self._models.values(), key=lambda m: m.id)

    def model(self, model_id: int) -> ModelRecord:
        """The model ``model_id``; KeyError naming it when the run has no such model."""
        found = self._models.get(model_id)
        if found is None:
            raise KeyError(f"the run {self.path} has no model {model_id}")
        return found

    def counts(self) -> dict[str, int]:
        """How many models are in each status."""
        return dict(Counter(m.status.value for m in self._models.values()))

    def best(self, mode: Mode | None = None) -> list[ModelRecord]:
        """Ranked models, highest fidelity first, best first at each (ties: lower id
        first): trained ones by their final, paused ones by their last intermediate at
        the step they reached (``fidelity``). The direction is ``mode``, else the one the
        run recorded (``Engine.set_objective``), else max."""
        objectives = self.objectives()
        recorded = objectives[0] if objectives else None
        if mode is None:
            mode = recorded.mode if recorded is not None else "max"
        return ranked(self.models(), recorded, mode)

    def front(self, objectives: Sequence[Objective] | None = None) -> list[ModelRecord]:
        """The trained models on the Pareto front of ``objectives`` (default: the run's),
        best first by the first objective; models lacking a value are left out.
        ValueError when the run recorded no objectives and none are given."""
        chosen = tuple(objectives) if objectives is not None else self.objectives()
        if not chosen:
            raise ValueError(f"the run {self.path} recorded no objectives: pass them, e.g. "
                             "front([Objective(name='accuracy', mode='max'), ...])")
        trained = sorted((m for m in self._models.values() if m.status is ModelStatus.Trained),
                         key=lambda m: m.id)
        return front(trained, lambda m: m.final, chosen)

    def hypervolume(self, reference: Sequence[float],
                    objectives: Sequence[Objective] | None = None) -> float:
        """The hypervolume of the run's front (:meth:`front`): the volume its points
        dominate up to ``reference`` (one value per objective, the worst corner; see
        ``engine.pareto.hypervolume``). ValueError for a reference of another length."""
        chosen = tuple(objectives) if objectives is not None else self.objectives()
        members = self.front(chosen)
        if len(reference) != len(chosen):
            raise ValueError(f"the reference point needs one value per objective "
                             f"({len(chosen)}), got {list(reference)!r}")
        found = points(members, lambda m: m.final, chosen)
        return hypervolume([p for _, p in found], modes_of(chosen), reference)

    def objectives(self) -> tuple[Objective, ...]:
        """The objectives the run recorded (``Engine.set_objectives``), in order; empty
        when it declared none. ValueError when the file's value is damaged."""
        return objectives_from_meta(self.meta())

    def events(self, first: int = 1, last: int | None = None) -> Iterator[Event]:
        """The run's events ``first..last`` as typed structs, read from the file."""
        return self._reader.events(first, last)

    def metrics(self) -> list[MetricPoint]:
        """Every intermediate metric of every attempt, in the order reported."""
        attempts: dict[int, int] = {}
        points: list[MetricPoint] = []
        for event in self._reader.events():
            if isinstance(event, TrainingStarted):
                attempts[event.model_id] = event.attempt
            elif isinstance(event, MetricReported):
                points.append(MetricPoint(
                    model_id=event.model_id, attempt=attempts.get(event.model_id, 1),
                    step=event.step, value=event.value, time=event.time))
        return points

    def to_pandas(self, table: Table = "models") -> Any:
        """A pandas DataFrame: ``models`` (one row per model, the sample's labels as
        ``sample.<label>`` columns), ``metrics`` or ``events`` (one row each)."""
        from engine._results_frames import frame

        return frame(self, table)

    def _apply(self, event: Event) -> None:
        if self.first_time is None:
            self.first_time = event.time
        if isinstance(event, EngineStarted):
            self.started, self.stopped = event, None
        elif isinstance(event, EngineStopped):
            self.stopped = event
        elif isinstance(event, ModelEvent):
            model = self._models.get(event.model_id)
            if model is None:
                model = self._models[event.model_id] = ModelRecord(id=event.model_id)
            _fold(model, event)
            model.last_seq = event.seq


def _fold(model: ModelRecord, event: ModelEvent) -> None:
    """Apply one model event to its record (the same changes the store makes)."""
    if isinstance(event, ModelQueued):
        model.sample, model.status, model.queued_at = event.sample, ModelStatus.Frozen, event.time
    elif isinstance(event, TrainingStarted):
        model.status, model.attempts = ModelStatus.Training, event.attempt
        model.worker, model.started_at = event.worker, event.time
        # An attempt continued from a checkpoint keeps the curve up to it.
        model.curve = [p for p in model.curve if p[0] <= event.resume_step]
        model.final = model.stopped_at = None
        model.ended_at = model.duration = model.reason = None
    elif isinstance(event, MetricReported):
        model.curve.append((event.step, event.value))
    elif isinstance(event, ModelPaused):
        model.status, model.reason = ModelStatus.Paused, f"paused at step {event.step}"
        model.paused_at = event.time
    elif isinstance(event, ModelResumed):
        model.status, model.reason, model.paused_at = ModelStatus.Frozen, None, None
    elif isinstance(event, ModelTrained):
        model.status, model.final, model.duration = ModelStatus.Trained, event.final, event.duration
        model.ended_at, model.stopped_at = event.time, event.stopped_at
    elif isinstance(event, ModelFailed):
        _fold_failure(model, event)
    elif isinstance(event, ModelRetrying):
        model.status, model.reason = ModelStatus.Retrying, event.reason
    elif isinstance(event, ModelInterrupted):
        model.status, model.reason = ModelStatus.Interrupted, event.reason.value
        model.ended_at = event.time
    elif isinstance(event, ModelInvalid):
        model.status, model.reason, model.ended_at = ModelStatus.Invalid, event.message, event.time


def _fold_failure(model: ModelRecord, event: ModelFailed) -> None:
    model.status, model.ended_at = ModelStatus.Failed, event.time
    model.attempts = max(model.attempts, event.attempt)
    model.reason = f"{event.error_type}: {event.message}"
    model.error_type, model.message, model.traceback = (
        event.error_type, event.message, event.traceback)
    # Captured output, when the run's failure events carry it (stdout, stderr, ...).
    model.output = {name: value for name in event.__struct_fields__
                    if name not in _FAILED_FIELDS
                    and isinstance(value := getattr(event, name), str) and value}


def open_run(path: str | Path) -> RunResults:
    """The results of the run file at ``path``, read up to its latest event.
    RunFileError (a ValueError) when the path is not a readable run."""
    return RunResults(path)
