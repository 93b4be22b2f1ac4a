"""Who runs which model in a :class:`~engine.workers.process.ProcessPool`.

A job (one ``run()`` call) waits in line until a worker has room: an idle worker takes
it at once (preferred, longest idle first); with ``prefetch``, a busy worker takes it
as its next (the one whose running trial started earliest). A queued job starts when
the worker's Done for the trial before it arrives, unless a Skip for it awaits its
answer. A worker idle for ``REBALANCE_AFTER`` while jobs wait behind others' trials
recalls one. A worker's death fails its running job; its queued jobs go back in line,
first, as the same attempt.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterable

import anyio

from engine.errors import TrialFailed
from engine.workers._base import Trial, TrialOutput
from engine.workers._child import Job, ProtocolBroken, Worker
from engine.workers._wire import (
    Began,
    Done,
    Failed,
    Final,
    FromWorker,
    Intermediate,
    Run,
    Skip,
    Skipped,
    Started,
)
from engine.workers.trial_runner import result_of

__all__ = ("REBALANCE_AFTER", "Dispatcher")

# The kinds of message, as tuples (a ``A | B`` union is built anew at each call).
_ANSWERS = (Started, Skipped)
_TRIAL_MESSAGES = (Began, Intermediate, Final, Done, Failed)
_ENDS = (Done, Failed)
_REPORTS = (Intermediate, Final)

#: Seconds a worker stays idle before it takes a job queued behind another's trial:
#: short trials free their workers sooner than a Skip's round trip would move the job.
REBALANCE_AFTER = 0.05


class Dispatcher:
    """Who runs which job: the workers that said hello, the jobs waiting for one, and
    what each worker's messages mean for its jobs. Every method runs on the event-loop
    thread without awaiting, so each change of state is whole."""

    def __init__(self, prefetch: int, recycle_after: int | None) -> None:
        self.prefetch, self.recycle_after = prefetch, recycle_after
        self.ready: list[Worker] = []  # greeted and not buried, in that order
        self.waiting: deque[Job] = deque()  # jobs without a worker, first come first
        self.jobs = 0
        self.stopped = False
        self.stop_error: RuntimeError | None = None  # what jobs left at the end raise
        self.unbalanced = anyio.Event()  # a worker is idle while others hold jobs

    def submit(self, data: bytes, trial: Trial) -> Job:
        """A new job for ``data``, given to a worker now if one has room."""
        self.jobs += 1
        job = Job(self.jobs, data, trial)
        self.waiting.append(job)
        self.dispatch()
        return job

    # -- handing out jobs -----------------------------------------------------------------

    def dispatch(self) -> None:
        """Send waiting jobs to workers with room, the best-ranked first. (Called after
        every submit and every trial: one pass over the workers, no lists.)"""
        while self.waiting and not self.stopped:
            best, best_rank = None, (2, 0.0)
            for worker in self.ready:
                if worker.usable() and self._has_room(worker):
                    rank = worker.rank()
                    if rank < best_rank:  # the first of the best, as min() would
                        best, best_rank = worker, rank
            if best is None:
                return
            self._assign(best, self.waiting.popleft())
        if not self.stopped:
            idle = queued = False
            for worker in self.ready:
                if worker.queued:
                    queued = True
                elif worker.running is None and worker.usable():
                    idle = True
            if idle and queued:
                self.unbalanced.set()  # see rebalance()

    def _has_room(self, worker: Worker) -> bool:
        if not worker.idle and len(worker.queued) >= self.prefetch:
            return False
        return (self.recycle_after is None
                or worker.trials + len(worker.queued) < self.recycle_after)

    def _assign(self, worker: Worker, job: Job) -> None:
        job.worker = worker
        if worker.idle:  # it waits for this Run: it starts it on arrival
            worker.running = job
            self._start(worker, job)
        else:
            worker.queued.append(job)
        worker.post(Run(id=job.id, model=job.data, model_id=job.trial.model_id,
                        checkpoint=getattr(job.trial, "checkpoint_dir", None),
                        resume_step=getattr(job.trial, "resume_step", 0)), job)

    @staticmethod
    def _start(worker: Worker, job: Job) -> None:
        """``worker`` starts ``job`` (it counts as started for the engine, its
        ``trial.started``, when its Began comes: its model built)."""
        job.started_at = time.monotonic()
        worker.trials += 1
        if not job.detached:
            job.trial.loading()  # the worker loads it now: its setup has a deadline too

    def rebalance(self) -> float | None:
        """Give each worker idle for ``REBALANCE_AFTER`` seconds a job queued behind
        another worker's trial (the last one behind the trial that started latest: it
        would wait longest). Seconds until the next idle worker is due, or None."""
        now = time.monotonic()
        idle = [w.idle_since + REBALANCE_AFTER - now for w in self.ready
                if w.usable() and w.idle]
        held = [(w, j) for w in self.ready if w.usable() for j in w.queued
                if not j.detached]
        movable = [(w.rank(), i, w, j) for i, (w, j) in enumerate(held)
                   if not j.awaits_answer]
        if self.stopped or not idle or not movable:
            return None
        if sum(due <= 0 for due in idle) > sum(j.awaits_answer for _, j in held):
            *_, worker, job = max(movable, key=lambda item: item[:2])
            self._recall(worker, job)
            return 0.0  # and look again
        waiting = [due for due in idle if due > 0]
        return min(waiting) if waiting else None

    def _recall(self, worker: Worker, job: Job) -> None:
        """Take ``job`` back from ``worker``: at once if its Run was not written, else
        by a Skip that overtakes the Runs not written yet (answered by Skipped, or by
        Started or the job's own reports if it came too late)."""
        if worker.unpost(job):
            worker.queued.remove(job)
            self._unassigned(job)
        else:
            job.recalled = anyio.Event()
            worker.post_first(Skip(id=job.id))

    def _unassigned(self, job: Job) -> None:
        """``job`` is back from its worker, not started: drop it when its run() has
        left, else it goes first to the next worker with room."""
        job.worker = None
        job.answered()
        if not job.detached:
            self.waiting.appendleft(job)
        self.dispatch()

    def add(self, worker: Worker) -> None:
        """``worker`` said hello: give it work."""
        worker.ready, worker.idle_since = True, time.monotonic()
        self.ready.append(worker)
        self.dispatch()

    def withdraw(self, job: Job) -> None:
        """``job``'s run() was cancelled before it ended: take it back if it has not
        started (a Run already written is skipped: see ``job.recalled``)."""
        job.detached = True
        worker = job.worker
        if worker is None:
            with contextlib.suppress(ValueError):
                self.waiting.remove(job)
        elif job in worker.queued and not job.awaits_answer:
            self._recall(worker, job)

    # -- what workers say -----------------------------------------------------------------

    def on_message(self, worker: Worker, message: FromWorker) -> None:
        if isinstance(message, _ANSWERS):
            self._answered(worker, message)
            return
        if not isinstance(message, _TRIAL_MESSAGES):
            raise ProtocolBroken(f"it sent {type(message).__name__} out of turn")
        if worker.running is None and not self._began(
                worker, ended=isinstance(message, _ENDS)):
            return
        job = worker.running
        assert job is not None  # set by _began
        if isinstance(message, Began):
            if not job.detached:
                job.trial.started(worker.name, worker.gpus, message.setup)
            return
        if isinstance(message, _REPORTS):
            if not job.detached:
                _forward(message, job.trial)
            return
        worker.running = None
        job.settle(_result(message, job))
        self._after_trial(worker)

    def _answered(self, worker: Worker, message: Started | Skipped) -> None:
        """The worker's answer to a Skip."""
        job = worker.queued_job(message.id)
        if job is None or not job.awaits_answer:  # it had begun, and we knew
            return
        if isinstance(message, Skipped):
            worker.queued.remove(job)
            self._unassigned(job)
            self._after_trial(worker)
        elif worker.running is None and worker.queued[0] is job:
            self._began(worker, ended=False)
        else:
            raise ProtocolBroken(f"it started run {message.id} out of order")

    def _began(self, worker: Worker, *, ended: bool) -> bool:
        """The first job queued in ``worker`` has begun (``ended``: and ended) though we
        held it back: a Skip for it came too late, or the worker is being stopped. False
        when it is left to go to another worker (a stopped worker's trial that had not
        ended); else it is ``worker.running``: a moved job runs here, a cancelled one's
        worker is killed unless it has ended."""
        if not worker.queued:
            raise ProtocolBroken("it reported a trial while it had none")
        job = worker.queued[0]
        job.answered()
        if worker.retired.is_set() and not ended:
            return False
        worker.running = worker.queued.popleft()
        if not job.detached:
            self._start(worker, job)
        elif not ended:
            worker.retire(f"its queued trial (model {job.trial.model_id}) was cancelled "
                          "as it started", graceful=False)
        return True

    def _after_trial(self, worker: Worker) -> None:
        """``worker`` ended (or dropped) a trial: it starts the next one it holds, unless
        that one waits for an answer to a Skip, or the worker is being stopped (then the
        next one waits for another worker)."""
        if (worker.running is None and worker.queued and not worker.queued[0].awaits_answer
                and not worker.retired.is_set()):
            worker.running = worker.queued.popleft()
            self._start(worker, worker.running)
        if worker.idle:
            worker.idle_since = time.monotonic()
            if self.recycle_after is not None and worker.trials >= self.recycle_after:
                worker.retire(f"recycled after {worker.trials} trials", graceful=True)
        self.dispatch()

    # -- endings ----------------------------------------------------------------------------

    def bury(self, worker: Worker, lost: BaseException) -> None:
        """``worker`` is gone: its running job ends with ``lost``, the jobs it had not
        started wait for another worker, ahead of the rest."""
        with contextlib.suppress(ValueError):
            self.ready.remove(worker)
        running, queued = worker.running, list(worker.queued)
        worker.running = None
        worker.queued.clear()
        if running is not None:
            running.settle(lost)
        for job in reversed(queued):
            job.worker = None
            job.answered()
            if not job.detached:
                self.waiting.appendleft(job)
        self.dispatch()

    def abandon(self, workers: Iterable[Worker], cause: BaseException | None = None) -> None:
        """The pool stopped (because of ``cause``, if given): every job waiting or queued
        in ``workers`` fails with ``stop_error``."""
        self.stopped = True
        error = self.stop_error = RuntimeError(
            "the ProcessPool stopped serving: run models only while its serve() runs "
            "(inside the Engine's block)")
        error.__cause__ = cause
        for job in self.waiting:
            job.settle(error)
        for worker in workers:
            for job in worker.queued:
                job.answered()
                job.settle(error)


def _forward(message: Intermediate | Final, trial: Trial) -> None:
    if isinstance(message, Intermediate):
        trial.intermediate(message.value)
    else:
        trial.final(message.value)


def _result(message: Done | Failed, job: Job) -> TrialOutput | TrialFailed:
    """What run() returns (or raises) for the message that ended ``job``."""
    if isinstance(message, Done) and message.final is not None and not job.detached:
        job.trial.final(message.final)
    return result_of(message)
