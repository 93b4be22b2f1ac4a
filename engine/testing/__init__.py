"""The pool conformance kit, and a fake pool for strategy tests.

Every pool keeps the same promises (the :class:`~engine.workers._base.WorkerPool`
protocol): a trial's reports reach its Trial while it runs; an exception fails only its
trial, with the trial's output; a worker that dies is reported, its trial fails with
:class:`~engine.errors.WorkerLost` and a new worker takes its place; a cancelled or
timed-out ``run()`` has stopped its trial when it returns; leaving ``serve()`` leaves no
worker behind, nor any process a trial started. The ``check_*`` coroutines drive a
fresh pool through one promise each with real trials, the way
``trio.testing.check_*_stream`` drive a stream. A new pool (Dask, Slurm) runs those that
apply to it::

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", checks(Feature.EXCEPTION | Feature.CANCEL), ids=name)
    async def test_my_pool(check: Check) -> None:
        await check(lambda: MyPool(2))

The trials are functions of ``engine.testing._probe``, so a pool whose workers rebuild
models by recipe (a process, a Ray actor) finds them wherever ``engine`` imports. A
check raises AssertionError naming the broken promise.

:class:`MockPool` runs each model through a function of yours on the event loop, the
way httpx's ``MockTransport`` answers requests: strategy tests need no thread, no
process and no torch.

The kit's parts: ``_probe`` (the trials), ``_recording`` (a recording Trial and
PoolMonitor), ``_checks`` (the checks) and ``_mock`` (:class:`MockPool`).
"""

from engine.testing._checks import (
    Check,
    Feature,
    check_cancel,
    check_child_process,
    check_exception,
    check_exit,
    check_output,
    check_pool,
    check_segfault,
    check_sigkill,
    check_start_failure,
    check_stop,
    check_timeout,
    checks,
)
from engine.testing._mock import MockPool
from engine.testing._probe import ProbeSpace, probe, probe_trial
from engine.testing._recording import RecordingMonitor, RecordingTrial, process_gone

__all__ = (
    "Check",
    "Feature",
    "MockPool",
    "ProbeSpace",
    "RecordingMonitor",
    "RecordingTrial",
    "check_cancel",
    "check_child_process",
    "check_exception",
    "check_exit",
    "check_output",
    "check_pool",
    "check_segfault",
    "check_sigkill",
    "check_start_failure",
    "check_stop",
    "check_timeout",
    "checks",
    "probe",
    "probe_trial",
    "process_gone",
)
