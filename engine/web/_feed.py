"""What the dashboard sends: a snapshot of a run, then what changed since, as JSON.

A run whose models report several metrics (a dict) is shown by its first objective:
``final``, ``latest`` and the curves carry that number, ``metrics`` the whole final dict.

Ranking knows fidelity, as everywhere (``engine._objective.ranked``): each row carries
``ranked``, the value the model ranks by (a trained model's final, a paused one's last
intermediate; None when it is not ranked), ``fidelity``, the step it ranks at (where its
strategy stopped or paused it; None when it trained to its end), and ``ranked_at``, when
it was ranked (ended or paused). The page's best-so-far compares models at the highest
fidelity reached so far, like ``nas-engine plot`` (engine.cli._plot.best_so_far).

One :class:`Feed` serves every page of an app. Its methods block (SQLite reads) and run
in worker threads; a lock makes them take turns on the shared :class:`RunResults`.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from engine._objective import MetricValue, Objective, ranked_value, score
from engine.results import ModelRecord, open_run
from engine.space import ModelStatus

__all__ = ("Cursor", "Feed", "downsample")

Mode = Literal["max", "min"]
SNAPSHOT_POINTS = 16  # points per curve in a snapshot: enough for the overlay
DETAIL_POINTS = 2000  # points of one model's curve on its detail view
_encoder = msgspec.json.Encoder()
P = TypeVar("P")


class Cursor:
    """What one page has been sent: the last seq, and per model its attempt and how many
    curve points it holds."""

    def __init__(self) -> None:
        self.seq = 0
        self.points: dict[int, tuple[int, int]] = {}  # model id -> (attempt, points)


def downsample(curve: list[P], n: int) -> list[P]:
    """At most ``n`` points of ``curve``, evenly spaced, the first and last included."""
    if len(curve) <= n:
        return list(curve)
    last = len(curve) - 1
    return [curve[round(i * last / (n - 1))] for i in range(n)]


class Feed:
    """The folded run behind every page of one dashboard app."""

    def __init__(self, path: Path, mode: Mode, refresh_every: float = 0.1) -> None:
        self._results = open_run(path)  # RunFileError here: before any page is served
        self._mode = mode
        self._lock = threading.Lock()
        self._refresh_every = refresh_every
        self._refreshed = -float("inf")
        self._objective: Objective | None = None

    @property
    def path(self) -> Path:
        return self._results.path

    def close(self) -> None:
        with self._lock:
            self._results.close()

    def snapshot(self, cursor: Cursor) -> bytes:
        """Everything so far (curves downsampled); moves ``cursor`` to the latest seq."""
        with self._lock:
            self._refresh()
            models = self._results.models()
            cursor.seq = self._results.seq
            cursor.points = {m.id: (m.attempts, len(m.curve)) for m in models}
            first = self._first_objective()
            return _encoder.encode({
                "run": self._run_info(meta=True), "models": [_row(m, first) for m in models],
                "curves": {m.id: downsample(_curve(m, first), SNAPSHOT_POINTS)
                           for m in models}})

    def delta(self, cursor: Cursor) -> tuple[bytes | None, bool]:
        """What changed since ``cursor`` (None: nothing) and whether the run is over: no
        process writes it any more and every event is sent. Moves ``cursor``."""
        with self._lock:
            writing = self._results.writing  # before the read, which then sees all
            self._refresh()
            if self._results.seq == cursor.seq:
                return None, not writing
            changed = [m for m in self._results.models() if m.last_seq > cursor.seq]
            cursor.seq = self._results.seq
            first = self._first_objective()
            message = _encoder.encode({
                "run": self._run_info(meta=False), "models": [_row(m, first) for m in changed],
                "points": {m.id: _new_points(m, cursor, first) for m in changed}})
            return message, False

    def model(self, model_id: int) -> bytes | None:
        """One model in full (sample, curve, traceback, output), or None when unknown."""
        with self._lock:
            self._refresh()
            try:
                model = self._results.model(model_id)
            except KeyError:
                return None
            detail = msgspec.structs.asdict(model)
            first = self._first_objective()
            detail.update(_row(model, first),
                          curve=downsample(_curve(model, first), DETAIL_POINTS))
            return _encoder.encode(detail)

    def models(self) -> bytes:
        """Every model's table row."""
        with self._lock:
            self._refresh()
            first = self._first_objective()
            return _encoder.encode([_row(m, first) for m in self._results.models()])

    def _first_objective(self) -> Objective | None:
        """The objective the dashboard shows (the run's first), kept once recorded."""
        if self._objective is None:
            objectives = self._results.objectives()
            self._objective = objectives[0] if objectives else None
        return self._objective

    def _refresh(self) -> None:
        # Pages poll in turns; one read of the journal's tail serves them all.
        now = time.monotonic()
        if now - self._refreshed >= self._refresh_every:
            self._results.refresh()
            self._refreshed = now

    def _run_info(self, *, meta: bool) -> dict[str, Any]:
        results, started, stopped = self._results, self._results.started, self._results.stopped
        info: dict[str, Any] = {
            "seq": results.seq, "writing": results.writing, "mode": self._mode,
            "first_time": results.first_time,
            "pool": started.pool if started else None,
            "capacity": started.capacity if started else None,
            "stopped": stopped.reason if stopped else None}
        if meta:
            info.update(name=results.path.name, path=str(results.path), meta=results.meta())
        return info


def _row(model: ModelRecord, first: Objective | None) -> dict[str, Any]:
    row = {"id": model.id, "sample": model.sample, "status": model.status.value,
           "attempts": model.attempts, "worker": model.worker,
           "final": score(model.final, first), "latest": score(model.latest, first),
           "steps": model.steps, "duration": model.duration,
           "queued_at": model.queued_at, "started_at": model.started_at,
           "ended_at": model.ended_at, "reason": model.reason,
           "failed": model.traceback is not None}
    row.update(_ranking(model, first))
    if isinstance(model.final, dict):
        row["metrics"] = model.final
    return row


def _ranking(model: ModelRecord, first: Objective | None) -> dict[str, Any]:
    """``ranked``, ``fidelity`` and ``ranked_at`` of ``model`` (see the module docstring):
    JSON has no infinity, so a model trained to its end has fidelity None."""
    value = score(ranked_value(model), first)
    reached = model.fidelity
    return {"ranked": value,
            "fidelity": None if value is None or reached == math.inf else int(reached),
            "ranked_at": (model.paused_at if model.status is ModelStatus.Paused
                         else model.ended_at)}


def _curve(model: ModelRecord, first: Objective | None,
           points: list[tuple[int, MetricValue]] | None = None) -> list[tuple[int, float | None]]:
    """``points`` (default: the model's curve) as numbers: dicts by ``first``."""
    return [(step, score(value, first))
            for step, value in (model.curve if points is None else points)]


def _new_points(model: ModelRecord, cursor: Cursor, first: Objective | None) -> dict[str, Any]:
    """The curve points a page lacks: the new ones, or (a new attempt) all, downsampled."""
    attempt, count = cursor.points.get(model.id, (-1, 0))
    cursor.points[model.id] = (model.attempts, len(model.curve))
    if attempt != model.attempts or count > len(model.curve):
        return {"reset": True, "points": downsample(_curve(model, first), SNAPSHOT_POINTS)}
    return {"reset": False, "points": _curve(model, first, model.curve[count:])}
