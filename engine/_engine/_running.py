"""The runners: the tasks that take models off the queue and run their attempts on the
pool, and the callbacks an attempt reports through (``engine._handle.Trial``)."""

from __future__ import annotations

import time

import anyio

from engine._checkpoint import Pruner
from engine._engine._base import EngineBase
from engine._handle import ModelHandle, Trial
from engine._objective import missing_objective
from engine.errors import TrialFailed, WorkerLost
from engine.events import InterruptReason, ModelInvalid, ModelTrained, TrainingStarted
from engine.profile import ConstraintViolated, merged_name, profiled
from engine.space import ExecutableModelSpace, Metrics, ModelStatus
from engine.workers._base import TrialOutput

__all__ = ("OUTPUT_TAIL", "Runners")

#: Characters of each output stream (stdout, stderr) a handle keeps: the tail.
OUTPUT_TAIL = 64 * 1024


class Runners(EngineBase):
    async def _runner(self) -> None:
        while self._requeued:
            handle = self._requeued.popleft()
            handle._queued = False
            if handle._runnable:
                await self._run(handle)
        while True:
            try:
                handle = await self._queue.get()
            except anyio.EndOfStream:
                return
            handle._queued = False
            if handle._runnable:  # not paused (or ended) while it waited
                await self._run(handle)

    async def _run(self, handle: ModelHandle) -> None:
        while handle._runnable:
            handle.attempts += 1
            trial = Trial(self, handle)
            self._continue_from(handle, trial)
            stopped = True
            try:
                with anyio.CancelScope() as scope:
                    handle._scope = scope  # its timeout starts when a worker starts it
                    await self._attempt(handle, trial)
                    stopped = False
            finally:
                trial.open = False
                handle._scope = None
                if stopped and handle._pausing and handle._stop_reason in (
                        None, InterruptReason.shutdown):
                    self._paused(handle)
                elif stopped and not handle._ended:
                    # Cancelled: by its handle or the engine (reason set), by its timeout,
                    # or by a cancellation from outside the engine.
                    reason = handle._stop_reason or (
                        InterruptReason.timeout if scope.cancel_called
                        else InterruptReason.shutdown)
                    self._ended_early(handle, reason)

    def _continue_from(self, handle: ModelHandle, trial: Trial) -> None:
        """Where ``trial`` starts: from the model's newest checkpoint among the steps it
        kept (0: afresh), keeping the intermediates up to it. A pool that runs no
        training code (``resumes_from_step``, a simulation) continues from any step."""
        kept = handle.model.metrics.intermediates
        step = 0
        if getattr(self.pool, "resumes_from_step", False):
            step = len(kept)  # and no checkpoint folder: it saves none
        elif self._checkpoints is not None:
            if handle._may_have_checkpoints:
                step = self._checkpoints.continue_from(handle.model_id, len(kept))
            trial.checkpoint_dir = folder = self._checkpoint_folder(handle.model_id)
            trial.pruner = Pruner(folder, seen=step > 0, committed=(
                None if self._journal is None else self._journal.committed_seq))
            handle._may_have_checkpoints = True  # its worker may save from now on
        handle.model.metrics = Metrics(intermediates=kept[:step])
        trial.resume_step = step

    def _runnable(self, model: ExecutableModelSpace) -> ExecutableModelSpace:
        """What the pool runs: ``model``, measured first when a profiler is set."""
        if self._profiler is None:
            return model
        return profiled(model, self._profiler, merged_name(self._objectives, self._profiler))

    async def _attempt(self, handle: ModelHandle, trial: Trial) -> None:
        try:
            output = await self.pool.run(self._runnable(handle.model), trial)
        except TrialFailed as exc:
            trial.open = False
            self._record_output(handle, exc.stdout, exc.stderr)
            self._keep_output(handle, TrialOutput(stdout=exc.stdout, stderr=exc.stderr))
            if exc.invalid:
                if exc.error_type == ConstraintViolated.__name__:  # counted apart
                    self._trials -= 1
                    self._violations += 1
                self._finish(handle, ModelStatus.Invalid, ModelInvalid(
                    **self._stamp(), model_id=handle.model_id, message=exc.message,
                    paths=exc.paths))
            else:
                self._failed(handle, exc.error_type, exc.message, exc.traceback)
            return
        except WorkerLost as exc:
            trial.open = False
            self._record_output(handle, exc.stdout, exc.stderr)
            self._keep_output(handle, TrialOutput(stdout=exc.stdout, stderr=exc.stderr))
            self._failed(handle, "WorkerLost", str(exc), "")
            return
        trial.open = False
        self._keep_output(handle, output)
        if trial.final_value is None:
            self._failed(handle, "NoFinalMetric", "the evaluator neither returned a number "
                         "nor called report_final()", "", retry=False)
            return
        final = trial.final_value
        problem = missing_objective(final, self._objectives)
        if problem is not None:
            self._failed(handle, "MissingObjective", problem, "", retry=False)
            return
        handle.model.metrics.final = final
        duration = time.time() - (handle.started_at or time.time())
        self._finish(handle, ModelStatus.Trained, ModelTrained(
            **self._stamp(), model_id=handle.model_id, final=final, duration=duration))

    def _keep_output(self, handle: ModelHandle, output: TrialOutput) -> None:
        """What the handle keeps of an attempt's captured output: the last
        ``OUTPUT_TAIL`` characters of each stream, so memory stays bounded however much
        a trial prints. (A failed trial's full output is stored before this, where the
        run keeps it.)"""
        handle.output = TrialOutput(stdout=_tail(output.stdout), stderr=_tail(output.stderr))

    def _record_output(self, handle: ModelHandle, stdout: str, stderr: str) -> None:
        """A failed attempt's full output goes to the run file (RunReader.outputs)."""
        if self._journal is not None and (stdout or stderr):
            self._journal.store.record_output(handle.model_id, handle.attempts, stdout, stderr)

    # -- what a Trial reports ----------------------------------------------------------

    def _loading(self, handle: ModelHandle) -> None:
        """A worker began building ``handle``'s model: ``trial_timeout`` bounds the setup
        (and, from ``training`` on, the training), so a build that hangs is ended too."""
        if self.trial_timeout is not None and handle._scope is not None:
            handle._scope.deadline = anyio.current_time() + self.trial_timeout

    def _training(self, handle: ModelHandle, worker: str, gpus: tuple[int, ...],
                  setup: float = 0.0, resume_step: int = 0) -> None:
        if self.trial_timeout is not None and handle._scope is not None:
            handle._scope.deadline = anyio.current_time() + self.trial_timeout
        handle.model.status = ModelStatus.Training
        handle.started_at = time.time()
        self._emit(TrainingStarted(**self._stamp(), model_id=handle.model_id, worker=worker,
                   attempt=handle.attempts, gpus=gpus, setup=setup,
                   resume_step=resume_step))


def _tail(text: str) -> str:
    if len(text) <= OUTPUT_TAIL:
        return text
    dropped = len(text) - OUTPUT_TAIL
    return f"[... {dropped} earlier characters dropped ...]\n{text[-OUTPUT_TAIL:]}"
