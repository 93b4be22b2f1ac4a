"""The pool seam: the one protocol every worker pool implements.

The engine starts a pool with ``await task_group.start(pool.serve, monitor)`` and then
calls ``run`` at most ``capacity + prefetch`` times at once, each call in its own task. A pool
never touches the engine's queue, budgets or events directly: it calls back through
the :class:`Trial` it was given (on the event-loop thread) and raises
:class:`~engine.errors.TrialFailed` or :class:`~engine.errors.WorkerLost`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from engine._objective import MetricValue
    from engine.space import ExecutableModelSpace

__all__ = ("HALT_GRACE", "PoolMonitor", "Trial", "TrialOutput", "WorkerPool",
           "ends_cooperatively")

#: Seconds a trial that its strategy stopped or paused (:func:`ends_cooperatively`) gets
#: to reach its next report, checkpoint save or end, where it ends and its worker lives
#: on; a trial that does not has its worker killed, as a cancelled trial does. Each pool
#: reads its own module's binding (a test may set one pool's).
HALT_GRACE = 5.0


class TrialOutput(msgspec.Struct, kw_only=True):
    """What a finished run leaves besides its metrics: the worker's captured output."""

    stdout: str = ""
    stderr: str = ""


class Trial(Protocol):
    """One attempt at one model, as the engine hands it to a pool. Call every method on
    the event-loop thread.

    The engine's trials also carry ``checkpoint_dir`` (str or None: the folder of the
    model's checkpoints) and ``resume_step`` (int: the step the attempt continues from,
    0 afresh). A pool that runs training code hands both to it
    (``engine._checkpoint.spot_for`` / ``use_checkpoints``), so ``save_checkpoint`` and
    ``load_checkpoint`` work there; a pool that runs no training code (a simulation)
    sets ``resumes_from_step = True`` on itself and reports from ``resume_step + 1``.
    ``ends_cooperatively`` (bool) says its strategy stopped or paused it: a pool whose
    workers outlive a trial asks it to end at its next report instead of killing its
    worker (see :func:`ends_cooperatively`)."""

    @property
    def model_id(self) -> int: ...

    @property
    def attempt(self) -> int: ...

    def loading(self) -> None:
        """A worker began loading and building the model (``started`` follows once it is
        built). The engine bounds that setup by ``trial_timeout`` too, so a build that
        hangs is ended; a pool that cannot tell may skip this call."""

    def started(self, worker: str, gpus: tuple[int, ...] = (), setup: float = 0.0) -> None:
        """The model began training on ``worker`` (call once, before any report): call
        it once the model is built, and give in ``setup`` the seconds spent getting
        there (loading, building), so the trial's duration and timeout count training."""

    def intermediate(self, value: MetricValue) -> None:
        """The model reported an intermediate metric (a number or a dict of them)."""

    def final(self, value: MetricValue) -> None:
        """The model reported its final metric (the last call wins)."""


def ends_cooperatively(trial: Trial) -> bool:
    """Whether ``trial``, cancelled now, was stopped or paused by its strategy (so it may
    end at its next report and keep its worker): False for a trial that does not say."""
    return bool(getattr(trial, "ends_cooperatively", False))


class PoolMonitor(Protocol):
    """Life-cycle callbacks from a pool to the engine, on the event-loop thread."""

    def worker_started(self, worker: str, pid: int | None, gpus: tuple[int, ...]) -> None: ...

    def worker_died(
        self, worker: str, pid: int | None, exitcode: int | None, signal: int | None,
        reason: str,
    ) -> None: ...


class WorkerPool(Protocol):
    """Runs frozen models, one per worker at a time."""

    @property
    def name(self) -> str:
        """A short name for events (``"inline"``, ``"process"``)."""

    @property
    def capacity(self) -> int:
        """How many models run at once."""

    @property
    def prefetch(self) -> int:
        """How many more models the pool accepts beyond ``capacity`` to start them the
        moment a worker frees (0: none). The engine calls ``run`` up to
        ``capacity + prefetch`` times at once; a prefetched model calls
        ``trial.started`` only when a worker really starts it."""

    def check(self, model: ExecutableModelSpace) -> None:
        """Raise TypeError or ValueError now, at submit, if this pool cannot run ``model``."""

    async def serve(self, monitor: PoolMonitor, *, task_status: TaskStatus[None]) -> None:
        """Start the workers, report ready through ``task_status``, and run until cancelled;
        on the way out (shielded) stop every worker."""

    async def run(self, model: ExecutableModelSpace, trial: Trial) -> TrialOutput:
        """Execute ``model`` on a free worker; report through ``trial``. Raises TrialFailed
        or WorkerLost. When cancelled, the model's execution is stopped before this
        returns (or, inline, abandoned after a grace period) and Cancelled propagates."""
