"""ProcessPool against real worker processes: first driven directly with a recording
Trial, then through the Engine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

import engine as e
from engine import Engine, ModelStatus
from engine import events as ev
from engine.errors import TrialFailed, WorkerLost
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
    pool = ProcessPool(1)
    async with serving(pool) as monitor:
        trial = Recorder()
        with pytest.raises(TrialFailed) as caught:
            await pool.run(fx.model(fx.boom, x=3), trial)
        error = caught.value
        assert (error.error_type, error.message, error.invalid) == ("ValueError", "boom 3", False)
        assert 'process_fixtures.py", line' in error.traceback
        assert "in boom" in error.traceback
        assert error.traceback.rstrip().endswith("ValueError: boom 3")
        assert (error.stdout, error.stderr) == ("about to fail\n", "")
        assert trial.calls == [("started", "process-0", ())]
        with pytest.raises(TrialFailed) as caught:
            await pool.run(fx.model(fx.invalid), Recorder())
        assert caught.value.invalid
        assert caught.value.paths == ("model", "x")
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
async def test_worker_death_is_lost_and_replaced(
    tmp_path: Path, how: str, exitcode: int | None, signum: int | None, words: str
) -> None:
    pool = ProcessPool(2)
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
async def test_death_is_seen_while_a_forked_grandchild_holds_the_pipes() -> None:
    pool = ProcessPool(1)
    async with serving(pool) as monitor:
        with anyio.fail_after(10), pytest.raises(WorkerLost) as caught:  # not 30 s
            await pool.run(fx.model(fx.fork_and_die), Recorder())
        grandchild = int(caught.value.stdout.split("grandchild=")[1])
        os.kill(grandchild, signal.SIGKILL)
        assert caught.value.exitcode == 5
        assert monitor.died[0][2:4] == (5, None)


@pytest.mark.anyio
async def test_cancelled_run_kills_and_replaces_its_worker(tmp_path: Path) -> None:
    pool = ProcessPool(1)
    async with serving(pool) as monitor:
        old_pid = monitor.started[0][1]
        assert old_pid is not None
        trial = Recorder(7)
        async with anyio.create_task_group() as tg:
            async def run() -> None:
                await pool.run(fx.model(fx.wait_for, flag=str(tmp_path / "never")), trial)
            tg.start_soon(run)
            await trial.reported.wait()
            tg.cancel_scope.cancel()
        assert not psutil.pid_exists(old_pid)  # stopped before run() returned
        await monitor.wait_started(2)
        assert monitor.died == [("process-0", old_pid, None, signal.SIGKILL,
                                 "its trial (model 7) was stopped (was killed by SIGKILL)")]
        output = await pool.run(fx.model(fx.environment), Recorder(8))
        assert pid_of(output.stdout) == monitor.started[1][1] != old_pid


@pytest.mark.anyio
async def test_cancelling_serve_leaves_no_worker_process(tmp_path: Path) -> None:
    pool = ProcessPool(2)
    trial = Recorder()
    stopped = False
    async with anyio.create_task_group() as tg:
        await tg.start(pool.serve, Monitor())
        assert len(children()) == 2

        async def run() -> None:
            nonlocal stopped
            try:
                await pool.run(fx.model(fx.wait_for, flag=str(tmp_path / "never")), trial)
            finally:
                stopped = True
        tg.start_soon(run)
        await trial.reported.wait()  # one worker busy, one idle
        tg.cancel_scope.cancel()
    assert stopped
    assert children() == []
    with pytest.raises(RuntimeError, match="needs a serving pool"):
        await pool.run(fx.model(fx.noop), Recorder())


@pytest.mark.anyio
async def test_worker_is_recycled_after_n_trials() -> None:
    pool = ProcessPool(1, recycle_after=2)
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
    ("startup", "problem"),
    [("import time\ntime.sleep(60)\n",
      "did not answer within start_timeout=0.5 s and was killed"),
     ("import os\nos._exit(7)\n", "exited with code 7 before it was ready"),
     ("import os\nos.environ['CUDA_VISIBLE_DEVICES'] = '7'\n",
      "saw CUDA_VISIBLE_DEVICES='7' instead of '', so its trials would use the wrong GPUs")],
)
async def test_worker_that_does_not_start_is_a_clear_error(
    tmp_path: Path, startup: str, problem: str
) -> None:
    (tmp_path / "sitecustomize.py").write_text(startup)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    pool = ProcessPool(2, start_timeout=0.5, env={"PYTHONPATH": path})
    with pytest.raises(WorkerStartFailed, match=r"worker process-0 \(pid \d+\) ") as caught:
        await pool.serve(Monitor())
    assert problem in str(caught.value)
    assert "-m engine.workers._worker` starts in this environment" in str(caught.value)
    assert children() == []


def test_workers_exit_when_the_parent_dies(tmp_path: Path) -> None:
    """A SIGKILLed parent leaves no worker behind, idle or mid-trial."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
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
                tg.start_soon(pool.run, fx.model(fx.wait_for, flag=sys.argv[2]), trial)
                await trial.reported.wait()
                print("running", flush=True)
                await anyio.sleep_forever()

        anyio.run(main, backend=sys.argv[3])
    """))
    for backend in ("asyncio", "trio"):
        parent = subprocess.Popen(
            [sys.executable, str(script), str(REPO), str(tmp_path / "never"), backend],
            stdout=subprocess.PIPE, text=True)
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert parent.stdout.readline() == "running\n"
        parent.kill()
        parent.wait()
        parent.stdout.close()
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).wait(timeout=10)
        assert not [pid for pid in pids if psutil.pid_exists(pid)]


@pytest.mark.parametrize("value", [{"workers": 0}, {"recycle_after": 0},
                                   {"recycle_after": 1.5}, {"start_timeout": 0}])
def test_bad_arguments_are_value_errors(value: dict[str, Any]) -> None:
    name = next(iter(value))
    with pytest.raises(ValueError, match=f"^{name} must be a positive"):
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


async def training(events: Any, model_id: int) -> None:
    """Wait until ``model_id`` starts training (events from a subscription)."""
    async for event in events:
        if isinstance(event, ev.TrainingStarted) and event.model_id == model_id:
            return


def kinds(events: list[ev.Event], model_id: int) -> list[str]:
    return [str(type(x).__struct_config__.tag) for x in events
            if isinstance(x, ev.ModelEvent) and x.model_id == model_id]


@pytest.mark.anyio
async def test_engine_failures_retries_deaths_and_timeouts(tmp_path: Path) -> None:
    events: list[ev.Event] = []
    async with anyio.create_task_group() as tg:
        engine = Engine(ProcessPool(2), max_retries=1, trial_timeout=2.0)
        await tg.start(collect, engine, events)
        async with engine:
            events_of = engine.subscribe()
            flaky = await engine.submit(fx.model(fx.flaky, marker=str(tmp_path / "m")))
            boom = await engine.submit(fx.model(fx.boom))
            dies = await engine.submit(fx.model(fx.die, how="exit"))
            hangs = await engine.submit(fx.model(fx.wait_for, flag=str(tmp_path / "never")))
            cancelled = await engine.submit(fx.model(fx.wait_for, flag=str(tmp_path / "n2")))
            await flaky, await boom, await dies, await hangs
            await training(events_of, cancelled.model_id)
            cancelled.cancel()
            await cancelled
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
async def test_leaving_the_engine_interrupts_running_models(tmp_path: Path,
                                                            leave_by: str) -> None:
    handles = []
    with contextlib.suppress(KeyError):
        with anyio.CancelScope() as scope:
            async with Engine(ProcessPool(2)) as engine:
                events_of = engine.subscribe()
                for i in range(3):
                    flag = str(tmp_path / f"never{i}")
                    handles.append(await engine.submit(fx.model(fx.wait_for, flag=flag)))
                await training(events_of, handles[0].model_id)
                await training(events_of, handles[1].model_id)
                if leave_by == "error":
                    raise KeyError("the block failed")
                scope.cancel()
                await anyio.sleep_forever()
    assert [h.status for h in handles] == [ModelStatus.Interrupted] * 3
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
