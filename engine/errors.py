"""The package's exceptions, and the record of a failed model's error.

Every exception nas-engine raises for its own reasons derives from
:class:`NasEngineError` and from the builtin it fits, so ``except NasEngineError``
catches them all and ``except ValueError`` keeps working::

    NasEngineError
    ├── EngineClosed (RuntimeError)      the engine is not running: enter ``async with
    │                                    Engine(...)`` first, or it stopped meanwhile
    ├── BudgetExhausted (RuntimeError)   max trials or wall time is used up: stop proposing
    ├── WorkerLost (RuntimeError)        a worker process died while it ran a trial
    ├── WorkerStartFailed (RuntimeError) a pool's worker did not start (exited, or did
    │                                    not answer)
    ├── TrialFailed (RuntimeError)       the model's execute raised; carries the original's
    │                                    type, message and traceback
    ├── SubscriberLagged (RuntimeError)  a subscriber fell further behind than the engine
    │                                    keeps events
    ├── InWorkerProcess (RuntimeError)   an Engine was started inside a worker process: the
    │                                    script lacks ``if __name__ == "__main__":``
    ├── SearchFailed (RuntimeError)      a search ended with failed models and none trained
    ├── NotRebuildable (RuntimeError)    a model restored from a run file has no recipe
    │                                    to build it again (it was raw-format)
    ├── RunStoreClosed (RuntimeError)    engine.store: the run file is closed or its writer
    │                                    failed
    └── RunFileError (ValueError)        engine.store: the path cannot be used as a run file
        ├── RunChanged                   a resumed run's new models differ from its own
        └── UnknownEventKind             the run holds an event a newer nas-engine wrote

Defined beside what they check, under the same base: ``SampleValidationError`` (and
its ``SampleMissingError``) and ``DuplicateLabelError`` (ValueError, engine.mutable), and
``RecipeError`` (ImportError, engine.space's recipes).

:class:`TrialError` is not an exception: it is what ``handle.error`` and ``model.error``
hold once a model failed (the error's type name, message and traceback, from whichever
process ran the trial).
"""

from __future__ import annotations

import traceback as _traceback

import msgspec

__all__ = (
    "BudgetExhausted",
    "EngineClosed",
    "InWorkerProcess",
    "NasEngineError",
    "NotRebuildable",
    "SearchFailed",
    "SubscriberLagged",
    "TrialError",
    "TrialFailed",
    "WorkerLost",
    "WorkerStartFailed",
)


class NasEngineError(Exception):
    """The base of every exception nas-engine raises for its own reasons."""


class TrialError(msgspec.Struct, frozen=True, kw_only=True):
    """Why a model failed: ``type`` (the exception's class name, or a name such as
    ``WorkerLost`` / ``NoFinalMetric``), ``message`` and ``traceback`` (text; empty when
    there is none, e.g. a worker that died)."""

    type: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


class EngineClosed(NasEngineError, RuntimeError):
    """The engine is not running: use it inside ``async with Engine(...)``."""


class BudgetExhausted(NasEngineError, RuntimeError):
    """The engine's budget (max trials or wall time) is used up; nothing more is accepted."""


class WorkerStartFailed(NasEngineError, RuntimeError):
    """A pool's worker did not start: it exited, or did not answer within the pool's
    ``start_timeout``. The message says which and what to check."""


class WorkerLost(NasEngineError, RuntimeError):
    """A worker died while it ran a trial (crash, ``os._exit``, a signal). ``stdout`` and
    ``stderr`` hold what the trial had written (empty where the pool cannot capture)."""

    def __init__(
        self, message: str, *, worker: str, pid: int | None = None,
        exitcode: int | None = None, signal: int | None = None,
        stdout: str = "", stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.worker, self.pid, self.exitcode, self.signal = worker, pid, exitcode, signal
        self.stdout, self.stderr = stdout, stderr


class TrialFailed(NasEngineError, RuntimeError):
    """The model's execute raised. ``invalid`` is true when it raised
    SampleValidationError (the model is then ``invalid``, not ``failed``; except
    SampleMissingError, a bug in the space). ``stdout`` and
    ``stderr`` hold what the trial had written (empty where the pool cannot capture)."""

    def __init__(
        self, error_type: str, message: str, traceback: str = "", *,
        invalid: bool = False, paths: tuple[str, ...] = (), stdout: str = "", stderr: str = "",
    ) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type, self.message, self.traceback = error_type, message, traceback
        self.invalid, self.paths = invalid, paths
        self.stdout, self.stderr = stdout, stderr

    @classmethod
    def from_exception(cls, exc: BaseException) -> TrialFailed:
        from engine.mutable import SampleMissingError, SampleValidationError

        text = "".join(_traceback.format_exception(exc))
        # A label missing from the sample is a bug in the space (a choice the space
        # cannot see), not a bad sample: the model fails, loudly, instead of being invalid.
        if isinstance(exc, SampleValidationError) and not isinstance(exc, SampleMissingError):
            return cls(type(exc).__name__, exc.message, text, invalid=True,
                       paths=tuple(exc.paths))
        return cls(type(exc).__name__, str(exc), text)


class SubscriberLagged(NasEngineError, RuntimeError):
    """A subscriber fell behind by more events than the engine keeps in memory. Read the
    run's journal for the missed ones, or subscribe with a larger ``buffer``."""

    def __init__(self, missed_from: int, missed_to: int) -> None:
        super().__init__(
            f"subscriber fell behind: events {missed_from}..{missed_to} are no longer in "
            "memory; read them from the run's journal or subscribe with a larger buffer"
        )
        self.missed_from, self.missed_to = missed_from, missed_to


class InWorkerProcess(NasEngineError, RuntimeError):
    """An Engine was started inside a nas-engine worker process. A worker runs the
    script that defines the model space again; without a main guard its top-level code
    would start a search (and workers) in every worker."""


class SearchFailed(NasEngineError, RuntimeError):
    """A search ended with failed models and not one trained. ``errors`` holds each
    failed model's id and :class:`TrialError`, in id order."""

    def __init__(self, errors: list[tuple[int, TrialError]], *, shown: int = 3) -> None:
        lines = [f"model {model_id}: {error}" for model_id, error in errors[:shown]]
        more = len(errors) - shown
        if more > 0:
            lines.append(f"... and {more} more")
        super().__init__(
            f"the search trained no model: {len(errors)} failed. First failures:\n  "
            + "\n  ".join(lines)
            + "\nEach model's traceback is in handle.error / model.error (and the "
            "engine's log).")
        self.errors = errors


class NotRebuildable(NasEngineError, RuntimeError):
    """A model restored from a run file cannot be built again: the file holds no recipe
    for it (a raw-format model). Freeze your own space with its sample instead."""
