"""ProcessPool against real worker processes: first driven directly with a recording
Trial, then through the Engine."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

import engine as e
from engine import Engine, ModelStatus
from engine import events as ev
from engine.errors import TrialFailed, WorkerLost
from engine.testing import check_start_failure
from engine.workers.process import ProcessPool, WorkerStartFailed
from tests import process_fixtures as fx
from tests.process_fixtures import Monitor, Recorder, children, pid_of, run_in, serving

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]


# -- the pool on its own ---------------------------------------------------------------


def test_check_rejects_models_that_cannot_leave_the_process() -> None:
    pool = ProcessPool(1)
    raw = e.RawFormatModelSpace.from_model(fx.Space(), e.FunctionEvaluator(fx.noop))
    with pytest.raises(TypeError, match="RawFormatModelSpace holds a live model"):
        pool.check(raw.freeze({"x": 1}))
    with pytest.raises(TypeError, match="evaluator argument 'data' is a object and cannot be"):
        pool.check(fx.model(fx.noop, data=object()))
    with pytest.raises(TypeError, match="only a frozen SimplifiedModelSpace can be dumped"):
        pool.check(e.SimplifiedModelSpace.from_model(fx.Space(), e.FunctionEvaluator(fx.noop)))
    with pytest.raises(TypeError, match="evaluator's function cannot be sent to a worker"):
        pool.check(fx.model(lambda model: 0.0))
    assert (pool.name, pool.capacity) == ("process", 1)
    assert children() == []  # nothing starts before serve()


@pytest.mark.anyio
async def test_run_before_serve_is_a_clear_error() -> None:
    pool = ProcessPool(1)
    with pytest.raises(RuntimeError, match=r"needs a serving pool: start it with task_group"):
        await pool.run(fx.model(fx.noop), Recorder())
    raw = e.RawFormatModelSpace.from_model(fx.Space(), e.FunctionEvaluator(fx.noop))
    with pytest.raises(TypeError, match="RawFormatModelSpace"):  # checked before serving
        await pool.run(raw.freeze({"x": 1}), Recorder())


@pytest.mark.anyio
async def test_reports_stream_live_and_output_is_captured(tmp_path: Path) -> None:
    pool = ProcessPool(2)
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        assert [(w, g) for w, _, g in monitor.started] == [("process-0", ()), ("process-1", ())]
        waiting, chatty = Recorder(1), Recorder(2)
        async with anyio.create_task_group() as tg:
            await run_in(tg, pool, fx.model(fx.wait_for, flag=str(tmp_path / "go")), waiting,
                         results)
            await waiting.reported.wait()  # arrived while the trial still runs
            assert waiting.calls == [("started", "process-0", ()), ("intermediate", 1.0)]
            output = await pool.run(fx.model(fx.chatty, x=2), chatty)
            (tmp_path / "go").touch()
        assert chatty.calls == [("started", "process-1", ()), ("intermediate", 0.25),
                                ("intermediate", 0.5), ("final", 20.0)]
        assert output.stdout == "stdout of x=2\nstraight to fd 1\n"
        assert output.stderr == "stderr of x=2\n"
        assert waiting.calls[-1] == ("final", 2.0)
        assert results[1].stdout == results[1].stderr == ""
        finalized = Recorder(4)  # a final reported mid-trial arrives while it runs on
        async with anyio.create_task_group() as tg:
            await run_in(tg, pool, fx.model(fx.final_then_wait, flag=str(tmp_path / "end")),
                         finalized, results)
            await finalized.finalized.wait()
            (tmp_path / "end").touch()
        assert finalized.calls[1:] == [("final", 5.0)]
        asynchronous = Recorder(3)
        output = await pool.run(fx.model(fx.async_chatty, x=3), asynchronous)
        assert asynchronous.calls[1:] == [("intermediate", 0.5), ("final", 3.0)]
        assert output.stdout == "async stdout\n"
        assert monitor.died == []


@pytest.mark.anyio
async def test_exception_fails_the_trial_and_keeps_the_worker() -> None:
    """The pool-specific part (the rest: engine.testing.check_exception and
    check_output, in tests/test_conformance.py)."""
    pool = ProcessPool(1)
    async with serving(pool) as monitor:
        with pytest.raises(TrialFailed) as caught:
            await pool.run(fx.model(fx.boom, x=3), Recorder())
        assert 'process_fixtures.py", line' in caught.value.traceback
        output = await pool.run(fx.model(fx.environment), Recorder())
        assert pid_of(output.stdout) == monitor.started[0][1]  # the same worker, still alive
        assert "CUDA_VISIBLE_DEVICES=''" in output.stdout  # no GPU share: no GPU
        assert monitor.died == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("how", "exitcode", "signum", "words"),
    [("exit", 3, None, "exited with code 3"),
     ("sigkill", None, signal.SIGKILL, "was killed by SIGKILL"),
     ("segfault", None, signal.SIGSEGV, "was killed by SIGSEGV")],
)
@pytest.mark.parametrize("prefetch", [0, 1])
async def test_worker_death_is_lost_and_replaced(
    tmp_path: Path, how: str, exitcode: int | None, signum: int | None, words: str,
    prefetch: int,
) -> None:
    pool = ProcessPool(2, prefetch=prefetch)
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        bystander = Recorder(1)
        async with anyio.create_task_group() as tg:
            await run_in(tg, pool, fx.model(fx.wait_for, flag=str(tmp_path / "go")), bystander,
                         results)
            await bystander.reported.wait()
            with pytest.raises(WorkerLost) as caught:
                await pool.run(fx.model(fx.die, how=how), Recorder(2, attempt=4))
            await monitor.wait_started(3)  # the replacement
            (tmp_path / "go").touch()
        lost = caught.value
        dead_pid = monitor.started[1][1]
        assert (lost.worker, lost.pid, lost.exitcode, lost.signal) == (
            "process-1", dead_pid, exitcode, signum)
        assert str(lost) == (f"worker process-1 (pid {dead_pid}) {words} while it ran model 2 "
                             "(attempt 4); its last output is on this error's .stdout and "
                             ".stderr")
        assert lost.stdout == f"dying by {how}\n"
        if how == "segfault":  # faulthandler's last words, captured with the trial
            assert "Fatal Python error: Segmentation fault" in lost.stderr
            assert "in die" in lost.stderr
        assert monitor.died == [("process-1", dead_pid, exitcode, signum, words)]
        assert monitor.started[2][0] == "process-1"
        assert not psutil.pid_exists(dead_pid)
        assert bystander.calls[-1] == ("final", 2.0)  # the other trial was unaffected
        assert results[1].stdout == ""
        output = await pool.run(fx.model(fx.environment), Recorder(3))
        assert pid_of(output.stdout) in {monitor.started[0][1], monitor.started[2][1]}


@pytest.mark.anyio
@pytest.mark.parametrize("prefetch", [0, 1])
async def test_death_is_seen_while_a_forked_grandchild_holds_the_pipes(prefetch: int) -> None:
    pool = ProcessPool(1, prefetch=prefetch)
    async with serving(pool) as monitor:
        with anyio.fail_after(10), pytest.raises(WorkerLost) as caught:  # not 30 s
            await pool.run(fx.model(fx.fork_and_die), Recorder())
        grandchild = int(caught.value.stdout.split("grandchild=")[1])
        assert fx.gone(grandchild)  # ended with its worker's process group
        assert caught.value.exitcode == 5
        assert monitor.died[0][2:4] == (5, None)


@pytest.mark.anyio
@pytest.mark.parametrize("prefetch", [0, 1])
async def test_worker_is_recycled_after_n_trials(prefetch: int) -> None:
    pool = ProcessPool(1, prefetch=prefetch, recycle_after=2)
    async with serving(pool) as monitor:
        pids = [pid_of((await pool.run(fx.model(fx.environment), Recorder(i))).stdout)
                for i in range(5)]
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
        assert [pid for _, pid, _ in monitor.started] == [pids[0], pids[2], pids[4]]
        assert monitor.died == [
            ("process-0", pids[0], 0, None, "recycled after 2 trials (exited with code 0)"),
            ("process-0", pids[2], 0, None, "recycled after 2 trials (exited with code 0)"),
        ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("startup", "start_timeout", "problem"),
    [("import time\ntime.sleep(60)\n", 0.5,
      "did not answer within start_timeout=0.5 s and was killed"),
     ("import os\nos._exit(7)\n", 30, "exited with code 7 before it was ready"),
     ("import os\nos.environ['CUDA_VISIBLE_DEVICES'] = '7'\n", 30,
      "saw CUDA_VISIBLE_DEVICES='7' instead of '', so its trials would use the wrong GPUs")],
)
async def test_worker_that_does_not_start_is_a_clear_error(
    tmp_path: Path, startup: str, start_timeout: float, problem: str
) -> None:
    (tmp_path / "sitecustomize.py").write_text(startup)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    error = await check_start_failure(
        lambda: ProcessPool(2, start_timeout=start_timeout, env={"PYTHONPATH": path}))
    assert re.match(r"worker process-0 \(pid \d+\) ", str(error))
    assert problem in str(error)
    assert str(error).endswith(
        f": check that `{sys.executable} -c 'import engine.workers._worker'` works in this "
        "environment, or raise start_timeout")
    assert children() == []


PARENT = """
import sys
import anyio
sys.path.insert(0, sys.argv[1])
from engine.workers.process import ProcessPool
from tests import process_fixtures as fx

async def main():
    pool, trial = ProcessPool(2), fx.Recorder()
    async with anyio.create_task_group() as tg:
        monitor = fx.Monitor()
        await tg.start(pool.serve, monitor)
        print(*[pid for _, pid, _ in monitor.started], flush=True)
        tg.start_soon(pool.run, fx.model(fx.spawn_then_wait, flag=sys.argv[2]), trial)
        await trial.reported.wait()
        print(int(trial.calls[1][1]), flush=True)  # the pid of the trial's child
        await anyio.sleep_forever()

anyio.run(main, backend=sys.argv[3])
"""


def start_parent(tmp_path: Path, backend: str) -> tuple[subprocess.Popen[str], list[int], int]:
    """A driver process serving ProcessPool(2) (temp dir: ``tmp_path``), one worker
    running a trial that started a child: the driver, its workers' pids, the child's."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(REPO), str(tmp_path / "never"), backend],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert parent.stdout is not None
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    child = int(parent.stdout.readline())
    return parent, pids, child


def scratch_folders(where: Path) -> list[Path]:
    return sorted(where.glob("nas-workers-*"))


def test_workers_exit_when_the_parent_dies(tmp_path: Path) -> None:
    """A SIGKILLed parent leaves no worker behind, idle or mid-trial, no process a trial
    started, and no scratch folder."""
    for backend in ("asyncio", "trio"):
        parent, pids, child = start_parent(tmp_path, backend)
        assert len(scratch_folders(tmp_path)) == 1
        parent.kill()
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()
        assert [pid for pid in [*pids, child] if not fx.gone(pid)] == []
        assert scratch_folders(tmp_path) == []


def kill_driver_and_workers(tmp_path: Path) -> None:
    """A driver, its workers and their trial's child all SIGKILLed, the workers first
    stopped so that they cannot clean up when the driver dies."""
    parent, pids, child = start_parent(tmp_path, "asyncio")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    for pid in pids:  # the signal is delivered when the kernel gets to it
        process = psutil.Process(pid)
        while process.status() != psutil.STATUS_STOPPED:
            time.sleep(0.001)
    assert len(scratch_folders(tmp_path)) == 1
    parent.kill()
    parent.wait()
    assert parent.stdout is not None
    parent.stdout.close()
    for pid in pids:
        os.killpg(pid, signal.SIGKILL)  # the worker and the trial's child
    assert [pid for pid in [*pids, child] if not fx.gone(pid)] == []


@pytest.mark.anyio
async def test_the_next_pool_removes_a_dead_pools_scratch_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver and its workers all killed: the next pool to start cleans up."""
    kill_driver_and_workers(tmp_path)
    (stale,) = scratch_folders(tmp_path)
    live = tmp_path / "nas-workers-other"  # another pool's, alive: left alone
    live.mkdir()
    held = os.open(live / "owner.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    try:
        async with serving(ProcessPool(1)):
            assert not stale.exists()
            assert len(scratch_folders(tmp_path)) == 2
    finally:
        os.close(held)
    assert scratch_folders(tmp_path) == [live]


@pytest.mark.parametrize("value", [{"workers": 0}, {"recycle_after": 0},
                                   {"recycle_after": 1.5}, {"start_timeout": 0},
                                   {"workers": True}, {"recycle_after": True},
                                   {"start_timeout": True}])
def test_bad_arguments_are_value_errors(value: dict[str, Any]) -> None:
    name = next(iter(value))
    with pytest.raises(ValueError,
                       match=f"^{name} must be (an int >= 1|a positive, finite number)"):
        ProcessPool(**value)


def test_script_run_as_main_works_in_workers(tmp_path: Path) -> None:
    """Spaces and evaluators defined in ``python script.py`` load in the workers."""
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent("""
        import anyio
        from engine import (BaseModelSpace, Categorical, Engine, FunctionEvaluator,
                            SimplifiedModelSpace, ensure_frozen, report_intermediate)
        from engine.workers.process import ProcessPool

        class ScriptSpace(BaseModelSpace):
            def __init__(self, scale):
                self.x = ensure_frozen(Categorical([2, 3], label="x"))
                self.scale = scale

        def evaluate(model, offset):
            report_intermediate(0.5)
            print("evaluated in", __name__)
            return model.x * model.scale + offset

        async def main():
            space = SimplifiedModelSpace.from_model(
                ScriptSpace(10), FunctionEvaluator(evaluate, offset=1))
            async with Engine(ProcessPool(1)) as engine:
                handle = await engine.submit(space.freeze({"x": 3}))
                model = await handle
            print("result", model.status.value, model.metric, handle.output.stdout.strip())

        if __name__ == "__main__":
            anyio.run(main)
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "result trained 31.0 evaluated in __nas_engine_main__"


# -- through the engine ----------------------------------------------------------------


async def collect(engine: Engine, into: list[ev.Event], *,
                  task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    subscription = engine.subscribe()
    task_status.started()
    async for event in subscription:
        into.append(event)


async def training(events: Any, *model_ids: int) -> None:
    """Wait until every one of ``model_ids`` started training (events from a
    subscription), in any order: each starts when its worker has built it."""
    waiting = set(model_ids)
    async for event in events:
        if isinstance(event, ev.TrainingStarted):
            waiting.discard(event.model_id)
            if not waiting:
                return


def kinds(events: list[ev.Event], model_id: int) -> list[str]:
    return [str(type(x).__struct_config__.tag) for x in events
            if isinstance(x, ev.ModelEvent) and x.model_id == model_id]


@pytest.mark.anyio
@pytest.mark.parametrize("prefetch", [0, 1])
async def test_engine_failures_retries_deaths_and_timeouts(tmp_path: Path,
                                                           prefetch: int) -> None:
    events: list[ev.Event] = []
    async with anyio.create_task_group() as tg:
        engine = Engine(ProcessPool(2, prefetch=prefetch), max_retries=1, trial_timeout=4.0)
        await tg.start(collect, engine, events)
        async with engine:
            events_of = engine.subscribe()
            flaky = await engine.submit(fx.model(fx.flaky, marker=str(tmp_path / "m")))
            boom = await engine.submit(fx.model(fx.boom))
            dies = await engine.submit(fx.model(fx.die, how="exit"))
            hangs = await engine.submit(fx.model(fx.wait_for, flag=str(tmp_path / "never")))
            cancelled = await engine.submit(fx.model(fx.wait_for, flag=str(tmp_path / "n2")))
            await flaky, await boom, await dies
            # Cancelled as soon as it trains, well within its 4 s (hangs times out then).
            await training(events_of, cancelled.model_id)
            cancelled.cancel()
            await cancelled, await hangs
    assert (flaky.status, flaky.model.metric) == (ModelStatus.Trained, 1.0)
    assert kinds(events, flaky.model_id) == [
        "queued", "training", "retrying", "training", "trained"]
    assert kinds(events, boom.model_id)[-3:] == ["retrying", "training", "failed"]
    failed = [x for x in events if isinstance(x, ev.ModelFailed)]
    assert {x.error_type for x in failed} == {"ValueError", "WorkerLost"}
    assert dies.status is ModelStatus.Failed
    interrupted = {x.model_id: x.reason for x in events if isinstance(x, ev.ModelInterrupted)}
    assert interrupted == {hangs.model_id: ev.InterruptReason.timeout,
                           cancelled.model_id: ev.InterruptReason.cancelled}
    died = [x.reason for x in events if isinstance(x, ev.WorkerDied)]
    assert died.count("exited with code 3") == 2  # the first attempt and its retry
    assert sum("was stopped (was killed by SIGKILL)" in r for r in died) == 2
    started = [x for x in events if isinstance(x, ev.WorkerStarted)]
    # The crashed workers were replaced (the killed ones' replacements may still have been
    # starting when the engine shut down).
    assert 2 + 2 <= len(started) <= 2 + len(died)
    assert children() == []


@pytest.mark.anyio
@pytest.mark.parametrize("leave_by", ["cancellation", "error"])
@pytest.mark.parametrize("prefetch", [0, 1])
async def test_leaving_the_engine_interrupts_running_models(tmp_path: Path, leave_by: str,
                                                            prefetch: int) -> None:
    """Models running, queued in a worker (prefetch) and queued in the engine."""
    handles = []
    with contextlib.suppress(KeyError):
        with anyio.CancelScope() as scope:
            async with Engine(ProcessPool(2, prefetch=prefetch), queue_size=8) as engine:
                events_of = engine.subscribe()
                for i in range(7):
                    flag = str(tmp_path / f"never{i}")
                    handles.append(await engine.submit(fx.model(fx.wait_for, flag=flag)))
                await training(events_of, handles[0].model_id, handles[1].model_id)
                if leave_by == "error":
                    raise KeyError("the block failed")
                scope.cancel()
                await anyio.sleep_forever()
    assert [h.status for h in handles] == [ModelStatus.Interrupted] * 7
    assert [h.started_at is not None for h in handles] == [True] * 2 + [False] * 5
    assert children() == []


@pytest.mark.anyio
@pytest.mark.parametrize("end", ["cancel", "timeout", "error"])
async def test_processes_a_trial_started_end_with_its_model(tmp_path: Path, end: str) -> None:
    """A trial's own child process ends when its model is cancelled, times out, or the
    engine stops by an error."""
    pids: list[int] = []
    with contextlib.suppress(KeyError):
        async with Engine(ProcessPool(1), trial_timeout=3.0 if end == "timeout" else None
                          ) as engine:
            events = engine.subscribe()
            handle = await engine.submit(fx.model(fx.spawn_then_wait,
                                                  flag=str(tmp_path / "never")))
            async for event in events:
                if isinstance(event, ev.MetricReported):
                    pids.append(int(event.value))
                    break
            assert psutil.Process(pids[0]).status() != psutil.STATUS_ZOMBIE
            if end == "cancel":
                handle.cancel()
            elif end == "error":
                raise KeyError("the block failed")
            await handle
    assert handle.status is ModelStatus.Interrupted
    assert fx.gone(pids[0], timeout=5)
    assert children() == []


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions in ``error``, groups flattened."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


@pytest.mark.anyio
async def test_a_replacement_that_cannot_start_is_one_error(tmp_path: Path) -> None:
    """The first worker starts, its trial kills it, its replacement cannot start: the
    caller gets one WorkerStartFailed, and every model ends."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import os
        if os.path.exists({str(tmp_path / "started")!r}):
            os._exit(7)
        open({str(tmp_path / "started")!r}, "w").close()
    """))
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    handles: list[e.ModelHandle] = []

    async def search() -> None:
        async with Engine(ProcessPool(1, prefetch=0, env={"PYTHONPATH": path}),
                          queue_size=4) as engine:
            handles.append(await engine.submit(fx.model(fx.die, how="exit")))
            for x in (1, 2, 3):
                handles.append(await engine.submit(fx.model(fx.noop, x=x)))
            await anyio.sleep_forever()  # until the pool's error cancels the block

    with pytest.raises(WorkerStartFailed, match="exited with code 7 before it was ready"):
        await search()  # the error itself, not an ExceptionGroup of one
    assert [h.status for h in handles] == [ModelStatus.Failed] + [ModelStatus.Interrupted] * 3
    assert children() == []


@pytest.mark.anyio
async def test_engine_output_and_pids_in_events() -> None:
    events: list[ev.Event] = []
    async with anyio.create_task_group() as tg:
        engine = Engine(ProcessPool(1))
        await tg.start(collect, engine, events)
        async with engine:
            handle = await engine.submit(fx.model(fx.chatty))
            await handle
    assert handle.output is not None
    assert handle.output.stdout == "stdout of x=1\nstraight to fd 1\n"
    started = [x for x in events if isinstance(x, ev.WorkerStarted)]
    assert [(x.worker, x.gpus) for x in started] == [("process-0", ())]
    assert started[0].pid != os.getpid()
    assert kinds(events, handle.model_id) == [
        "queued", "training", "metric", "metric", "trained"]


# -- prefetch: a worker holds its next model ---------------------------------------------


def test_prefetch_is_per_worker() -> None:
    assert (ProcessPool(3).prefetch, ProcessPool(3, prefetch=2).prefetch) == (3, 6)
    assert ProcessPool(2, prefetch=0).prefetch == 0
    assert repr(ProcessPool(1, prefetch=0)) == "ProcessPool(workers=1, gpus=[()], prefetch=0)"
    for bad in (-1, 1.5, True, None):
        with pytest.raises(ValueError, match=(
                r"^prefetch must be an int >= 0 \(models each worker holds besides the one "
                rf"it runs\), got {re.escape(repr(bad))}$")):
            ProcessPool(1, prefetch=bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_queued_model_starts_when_the_one_before_ends(tmp_path: Path) -> None:
    pool = ProcessPool(1, prefetch=1)
    log: list[tuple[int, str]] = []
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        first, second, third = (Recorder(i, log=log) for i in (1, 2, 3))
        async with anyio.create_task_group() as tg:
            await run_in(tg, pool, fx.model(fx.wait_for, flag=str(tmp_path / "go")), first,
                         results)
            await run_in(tg, pool, fx.model(fx.environment), second, results)
            await run_in(tg, pool, fx.model(fx.environment), third, results)
            await first.reported.wait()
            await anyio.wait_all_tasks_blocked()
            assert log == [(1, "started"), (1, "intermediate")]  # held, not started
            (tmp_path / "go").touch()
    assert log == [(1, "started"), (1, "intermediate"), (1, "final"), (2, "started"),
                   (2, "final"), (3, "started"), (3, "final")]
    pid = monitor.started[0][1]
    assert pid_of(results[2].stdout) == pid_of(results[3].stdout) == pid
    assert monitor.died == []


@pytest.mark.anyio
async def test_idle_worker_first_then_the_earliest_started(tmp_path: Path) -> None:
    pool = ProcessPool(2, prefetch=1)
    flags = [tmp_path / f"go{i}" for i in range(2)]
    trials = [Recorder(i) for i in range(3)]
    results: dict[int, Any] = {}
    async with serving(pool):
        async with anyio.create_task_group() as tg:
            for i in range(2):  # each takes an idle worker
                await run_in(tg, pool, fx.model(fx.wait_for, flag=str(flags[i])), trials[i],
                             results)
                await trials[i].reported.wait()
            await run_in(tg, pool, fx.model(fx.wait_for, flag=str(flags[0])), trials[2],
                         results)
            flags[0].touch()  # its worker starts the third at once
            await trials[2].reported.wait()
            flags[1].touch()
    assert [t.worker for t in trials] == ["process-0", "process-1", "process-0"]


@pytest.mark.anyio
async def test_an_idle_worker_takes_a_model_queued_behind_another(tmp_path: Path) -> None:
    """The third model waits behind the first; when the second's worker comes free and
    stays idle, the third is taken back (Skip, Skipped) and runs there."""
    pool = ProcessPool(2, prefetch=1)
    flags = [tmp_path / f"go{i}" for i in range(2)]
    trials = [Recorder(i) for i in range(3)]
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        async with anyio.create_task_group() as tg:
            for i in range(2):
                await run_in(tg, pool, fx.model(fx.wait_for, flag=str(flags[i])), trials[i],
                             results)
                await trials[i].reported.wait()
            await run_in(tg, pool, fx.model(fx.environment), trials[2], results)
            flags[1].touch()
            await trials[2].finalized.wait()
            assert trials[0].calls[-1] == ("intermediate", 1.0)  # still running
            flags[0].touch()
    assert [t.worker for t in trials] == ["process-0", "process-1", "process-1"]
    assert pid_of(results[2].stdout) == monitor.started[1][1]
    assert [c[0] for c in trials[2].calls] == ["started", "final"]
    assert monitor.died == []


@pytest.mark.anyio
async def test_training_and_timeout_start_when_the_worker_starts() -> None:
    """Two 0.5 s models on one worker with trial_timeout=0.8: the second would time
    out if its clock started when it was handed to the busy worker."""
    events: list[ev.Event] = []
    async with anyio.create_task_group() as tg:
        engine = Engine(ProcessPool(1, prefetch=1), trial_timeout=0.8)
        await tg.start(collect, engine, events)
        async with engine:
            handles = [await engine.submit(fx.model(fx.sleep_for, x=x, seconds=0.5))
                       for x in (1, 2)]
            await handles[0], await handles[1]
    assert [h.status for h in handles] == [ModelStatus.Trained] * 2
    assert [h.attempts for h in handles] == [1, 1]
    first, second = handles
    assert second.started_at is not None
    assert first.started_at is not None
    # Once the first had slept 0.5 s. Both times are taken when the parent reads the
    # worker's message, so a late read of the first's start shortens the gap a little;
    # a clock started at hand-over would have timed the second out (attempts above).
    assert second.started_at - first.started_at >= 0.4
    training = [x for x in events if isinstance(x, ev.TrainingStarted)]
    assert [(x.model_id, x.worker, x.attempt) for x in training] == [
        (first.model_id, "process-0", 1), (second.model_id, "process-0", 1)]
    assert children() == []


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [1, 2])
async def test_death_reruns_the_queued_model_elsewhere(tmp_path: Path, workers: int) -> None:
    """The running model fails with WorkerLost; the one queued behind it never started,
    so it runs on another worker (or the replacement) as the same attempt."""
    pool = ProcessPool(workers, prefetch=1)
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        dying, queued = Recorder(1), Recorder(2, attempt=3)
        async with anyio.create_task_group() as tg:
            await run_in(tg, pool, fx.model(
                fx.wait_then_die, flag=str(tmp_path / "die"), how="exit"), dying, results)
            await dying.reported.wait()
            if workers == 2:  # the other worker is busy until the end
                other = Recorder(3)
                await run_in(tg, pool, fx.model(fx.wait_for, flag=str(tmp_path / "end")),
                             other, results)
                await other.reported.wait()
            await run_in(tg, pool, fx.model(fx.environment), queued, results)
            assert queued.calls == []
            (tmp_path / "die").touch()
            await monitor.wait_started(workers + 1)
            if workers == 2:
                await queued.finalized.wait()
                (tmp_path / "end").touch()
    assert isinstance(results[1], WorkerLost)
    assert results[1].exitcode == 3
    assert [c[0] for c in queued.calls] == ["started", "final"]  # started once
    dead_pid = monitor.started[0][1]
    ran_on = pid_of(results[2].stdout)
    assert ran_on != dead_pid
    assert ran_on in [pid for _, pid, _ in monitor.started]
    assert [d[1] for d in monitor.died] == [dead_pid]


@pytest.mark.anyio
async def test_cancelling_a_queued_model_keeps_its_worker(tmp_path: Path) -> None:
    pool = ProcessPool(1, prefetch=1)
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        running, queued = Recorder(1), Recorder(2)
        async with anyio.create_task_group() as tg:
            await run_in(tg, pool, fx.model(fx.wait_for, flag=str(tmp_path / "go")), running,
                         results)
            await running.reported.wait()
            run = await run_in(tg, pool, fx.model(fx.environment), queued, results)
            await run.cancel()
            (tmp_path / "go").touch()
        assert 2 not in results
        assert queued.calls == []
        assert running.calls[-1] == ("final", 2.0)
        output = await pool.run(fx.model(fx.environment), Recorder(3))
        assert pid_of(output.stdout) == monitor.started[0][1]  # the same worker
        assert monitor.died == []


@pytest.mark.anyio
async def test_a_model_bigger_than_the_pipe_waits_and_can_be_taken_back(
        tmp_path: Path) -> None:
    """Runs that do not fit in the pipe while the worker is busy wait in the parent: a
    cancelled one half written is skipped by the worker, one not written at all is
    dropped there; the worker lives on."""
    pool = ProcessPool(1, prefetch=3)
    big = "x" * 300_000  # several times a pipe's buffer
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        trials = [Recorder(i) for i in range(4)]
        async with anyio.create_task_group() as tg:
            await run_in(tg, pool, fx.model(fx.wait_for, flag=str(tmp_path / "go")),
                         trials[0], results)
            await trials[0].reported.wait()
            runs = [await run_in(tg, pool, fx.model(fx.payload_size, x=x, payload=big),
                                 trials[x], results) for x in (1, 2, 3)]
            await runs[0].cancel()  # written, at least in part
            await runs[1].cancel()  # perhaps not written yet
            (tmp_path / "go").touch()
        assert sorted(results) == [0, 3]
        assert trials[3].calls[1:] == [("final", 300_000.0)]
        assert trials[1].calls == trials[2].calls == []
        assert monitor.died == []


@pytest.mark.anyio
async def test_cancelling_a_queued_model_as_it_starts_kills_its_worker(
        tmp_path: Path) -> None:
    """The worker starts the queued model before the parent has read that the one
    before ended (its loop is held up here): the Skip comes too late, so the worker is
    killed and replaced; the model before it keeps its result."""
    pool = ProcessPool(1, prefetch=1)
    results: dict[int, Any] = {}
    marker = tmp_path / "second began"
    async with serving(pool) as monitor:
        first, second = Recorder(1), Recorder(2)
        async with anyio.create_task_group() as tg:
            await run_in(tg, pool, fx.model(fx.wait_for, flag=str(tmp_path / "go")), first,
                         results)
            await first.reported.wait()
            run = await run_in(tg, pool, fx.model(
                fx.wait_for, flag=str(tmp_path / "never"), marker=str(marker)), second,
                results)
            (tmp_path / "go").touch()
            while not marker.exists():  # block the event loop: nothing is read meanwhile
                time.sleep(0.005)  # noqa: ASYNC251
            await run.cancel()
            await monitor.wait_died(1)
        await monitor.wait_started(2)
    assert results[1].stdout == ""
    assert first.calls[-1] == ("final", 2.0)
    assert 2 not in results
    (died,) = monitor.died
    assert died[1] == monitor.started[0][1]
    assert died[4] in {  # which one it is depends on what the parent reads first
        "its queued trial (model 2) was cancelled as it started (was killed by SIGKILL)",
        "its trial (model 2) was stopped (was killed by SIGKILL)"}


@pytest.mark.anyio
async def test_cancelling_a_running_model_moves_its_queued_one(tmp_path: Path) -> None:
    pool = ProcessPool(1, prefetch=1)
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        running, queued = Recorder(1), Recorder(2)
        async with anyio.create_task_group() as tg:
            run = await run_in(tg, pool, fx.model(
                fx.wait_for, flag=str(tmp_path / "never")), running, results)
            await running.reported.wait()
            await run_in(tg, pool, fx.model(fx.environment), queued, results)
            await run.cancel()
        old_pid, new_pid = (pid for _, pid, _ in monitor.started)
        assert monitor.died == [("process-0", old_pid, None, signal.SIGKILL,
                                 "its trial (model 1) was stopped (was killed by SIGKILL)")]
        assert pid_of(results[2].stdout) == new_pid
        assert [c[0] for c in queued.calls] == ["started", "final"]


@pytest.mark.anyio
async def test_recycling_keeps_queued_models() -> None:
    pool = ProcessPool(1, prefetch=1, recycle_after=2)
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        async with anyio.create_task_group() as tg:
            for i in range(5):
                await run_in(tg, pool, fx.model(fx.environment), Recorder(i), results)
    pids = [pid_of(results[i].stdout) for i in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert [pid for _, pid, _ in monitor.started] == [pids[0], pids[2], pids[4]]
    assert [d[4] for d in monitor.died] == [
        "recycled after 2 trials (exited with code 0)"] * 2


@pytest.mark.anyio
async def test_stopping_the_pool_fails_models_not_started(tmp_path: Path) -> None:
    """Leaving serve() while run() calls still wait (not cancelled themselves)."""
    pool = ProcessPool(1, prefetch=1)
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    async def run(trial: Recorder, flag: str) -> None:
        try:
            results[trial.model_id] = await pool.run(fx.model(fx.wait_for, flag=flag), trial)
        except (RuntimeError, WorkerLost) as exc:
            errors.append(exc)

    running = Recorder(1)
    async with anyio.create_task_group() as outer:
        async with anyio.create_task_group() as tg:
            await tg.start(pool.serve, Monitor())
            outer.start_soon(run, running, str(tmp_path / "never"))
            await running.reported.wait()
            for i in (2, 3):  # one queued in the worker, one waiting for it
                outer.start_soon(run, Recorder(i), str(tmp_path / "never"))
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert sorted(type(e).__name__ for e in errors) == ["RuntimeError", "RuntimeError",
                                                        "WorkerLost"]
    assert any("stopped serving" in str(e) for e in errors)
    assert children() == []
