"""RayPool against a real local Ray cluster (started once for the module)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

import engine as e
from engine import Engine, ModelStatus
from engine import events as ev
from engine.testing import Check, Feature, check_start_failure, checks

ray = pytest.importorskip("ray", reason="RayPool needs Ray: pip install 'nas-engine[ray]'")

import engine.workers.ray_pool as ray_pool  # noqa: E402 - after the skip
from engine.workers.ray_pool import RayPool  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import ray_fixtures as fx  # noqa: E402

import tests._stop_warm_fixtures as warm  # noqa: E402

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """One local Ray cluster (a head node with 2 CPUs) that this process is connected
    to: every RayPool here uses that session as it is."""
    from ray.cluster_utils import Cluster

    head = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 2})
    try:
        yield head
    finally:
        ray.shutdown()
        head.shutdown()


@pytest.fixture
def ray_session(cluster: Any) -> Iterator[Any]:
    """The cluster; after the test, no actor of any RayPool is left."""
    yield cluster
    assert our_actors() == []


def our_actors() -> list[str]:
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["name"].startswith("nas-engine-"))


def assert_exited(pids: list[int]) -> None:
    """Each process exits within 10 s (a zombie has exited: it waits for its parent)."""
    deadline = time.monotonic() + 10
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            while proc.status() != psutil.STATUS_ZOMBIE:
                if time.monotonic() > deadline:
                    pytest.fail(f"process {pid} is still running")
                with contextlib.suppress(psutil.TimeoutExpired):
                    proc.wait(timeout=0.1)


class Recorder:
    """Every event of an engine, from before it starts."""

    def __init__(self, engine: Engine) -> None:
        self.events: list[ev.Event] = []
        self._subscription = engine.subscribe()

    async def run(self) -> None:
        async for event in self._subscription:
            self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [x for x in self.events if isinstance(x, kind)]

    def kinds(self, model_id: int) -> list[str]:
        return [type(x).__struct_config__.tag for x in self.events  # type: ignore[misc]
                if isinstance(x, ev.ModelEvent) and x.model_id == model_id]


@contextlib.asynccontextmanager
async def recording(engine: Engine) -> AsyncIterator[Recorder]:
    recorder = Recorder(engine)
    async with anyio.create_task_group() as tg:
        tg.start_soon(recorder.run)
        yield recorder


async def first_metric(subscription: e.Subscription, model_id: int | None = None) -> float:
    """The value of the next intermediate report (of ``model_id``)."""
    async for event in subscription:
        if isinstance(event, ev.MetricReported) and model_id in (None, event.model_id):
            return event.value
    raise AssertionError("the engine stopped before a metric was reported")


# -- runs through the engine -----------------------------------------------------------------


@pytest.mark.anyio
async def test_search_streams_reports_and_output(ray_session: Any) -> None:
    models = [fx.space(fx.score).freeze({"x": i}) for i in range(4)]
    models += [fx.space(fx.loud).freeze({"x": 7}), fx.space(fx.async_score).freeze({"x": 3})]
    engine = Engine(RayPool(2), queue_size=6)
    async with recording(engine) as rec, engine:
        handles = [await engine.submit(m) for m in models]
        done = [await h for h in handles]
    assert [m.status for m in done] == [ModelStatus.Trained] * 6
    assert [m.metric for m in done] == [0.0, 1.0, 2.0, 3.0, 7.0, 6.0]
    assert done[2].metrics.intermediates == [0.2, 0.4]
    for handle in handles[:4]:  # each report is an event before the trained one
        assert rec.kinds(handle.model_id) == ["queued", "training", "metric", "metric", "trained"]
    assert rec.kinds(handles[5].model_id) == ["queued", "training", "metric", "trained"]
    assert handles[4].output == e.TrialOutput(stdout="training 7\n", stderr="warning 7\n")
    started = rec.of(ev.WorkerStarted)
    assert sorted(w.worker for w in started) == ["ray-0", "ray-1"]
    pids = [w.pid for w in started]
    assert os.getpid() not in pids
    assert {x.worker for x in rec.of(ev.TrainingStarted)} <= {"ray-0", "ray-1"}
    assert rec.of(ev.EngineStarted)[0].pool == "ray"
    assert rec.of(ev.WorkerDied) == []
    assert our_actors() == []
    assert_exited(pids)


@pytest.mark.anyio
async def test_failures_keep_the_worker(ray_session: Any) -> None:
    engine = Engine(RayPool(1), queue_size=3)
    async with recording(engine) as rec, engine:
        raw = e.RawFormatModelSpace.from_model(fx.Toy(), e.FunctionEvaluator(fx.score))
        with pytest.raises(TypeError, match="RawFormatModelSpace holds a live model"):
            await engine.submit(raw.freeze({"x": 1}))
        with pytest.raises(TypeError, match="evaluator argument 'blob' is a object"):
            await engine.submit(fx.space(fx.score, blob=object()).freeze({"x": 1}))
        boom = await engine.submit(fx.space(fx.boom).freeze({"x": 3}))
        bad = await engine.submit(fx.space(fx.invalid).freeze({"x": 4}))
        good = await engine.submit(fx.space(fx.score).freeze({"x": 5}))
        assert [(await h).status for h in (boom, bad, good)] == [
            ModelStatus.Failed, ModelStatus.Invalid, ModelStatus.Trained]
    failed = rec.of(ev.ModelFailed)[0]
    assert (failed.error_type, failed.message, failed.attempt) == ("ValueError", "boom 3", 1)
    assert "ray_fixtures.py" in failed.traceback
    assert "in boom" in failed.traceback
    assert boom.output == e.TrialOutput(stdout="about to fail 3\n",
                                        stderr="stderr before failing 3\n")
    invalid = rec.of(ev.ModelInvalid)[0]
    assert (invalid.message, invalid.paths) == ("this architecture cannot be built",
                                                ("model", "x"))
    assert len(rec.of(ev.WorkerStarted)) == 1  # the same actor ran all three
    assert rec.of(ev.WorkerDied) == []


@pytest.mark.anyio
async def test_killed_worker_is_lost_replaced_and_retried(ray_session: Any,
                                                         tmp_path: Path) -> None:
    model = fx.space(fx.pid_then_wait_once, marker=str(tmp_path / "once")).freeze({"x": 1})
    engine = Engine(RayPool(1), max_retries=1)
    async with recording(engine) as rec, engine:
        reports = engine.subscribe()
        handle = await engine.submit(model)
        pid = int(await first_metric(reports))  # streamed while the trial runs
        os.kill(pid, signal.SIGKILL)
        assert (await handle).metric == 2.0
    assert rec.kinds(handle.model_id) == ["queued", "training", "metric", "retrying",
                                          "training", "trained"]
    retrying = rec.of(ev.ModelRetrying)[0]
    assert retrying.reason == (f"WorkerLost: ray-0 (Ray actor, pid {pid}) was lost while it "
                               "ran this model: The actor is dead because its worker process "
                               "has died.")
    died = rec.of(ev.WorkerDied)
    assert [(d.worker, d.pid) for d in died] == [("ray-0", pid)]
    started = rec.of(ev.WorkerStarted)
    assert [w.worker for w in started] == ["ray-0", "ray-0"]
    assert started[1].pid != pid
    assert rec.events.index(died[0]) < rec.events.index(started[1])
    assert_exited([w.pid for w in started])


@pytest.mark.anyio
async def test_timeout_kills_the_actor(ray_session: Any) -> None:
    engine = Engine(RayPool(1), trial_timeout=0.5)
    async with recording(engine) as rec, engine:
        workers = engine.subscribe()
        stuck = await engine.submit(fx.space(fx.pid_then_wait).freeze({"x": 1}))
        assert (await stuck).status is ModelStatus.Interrupted
        # The timeout counts from run(): let the replacement actor start first.
        async for event in workers:
            if isinstance(event, ev.WorkerStarted):
                break
        after = await engine.submit(fx.space(fx.score).freeze({"x": 2}))
        assert (await after).metric == 2.0
    assert [x.reason for x in rec.of(ev.ModelInterrupted)] == [ev.InterruptReason.timeout]
    first, second = rec.of(ev.WorkerStarted)
    died = rec.of(ev.WorkerDied)
    assert [(d.pid, d.reason) for d in died] == [
        (first.pid, "its trial (model 1) was stopped (actor killed)")]
    assert_exited([first.pid, second.pid])


@pytest.mark.anyio
async def test_cancelled_handle_kills_the_actor(ray_session: Any) -> None:
    engine = Engine(RayPool(1))
    async with recording(engine) as rec, engine:
        reports = engine.subscribe()
        handle = await engine.submit(fx.space(fx.pid_then_wait).freeze({"x": 1}))
        pid = int(await first_metric(reports))
        handle.cancel()
        assert (await handle).status is ModelStatus.Interrupted
        assert_exited([pid])
    assert [x.reason for x in rec.of(ev.ModelInterrupted)] == [ev.InterruptReason.cancelled]
    assert [d.pid for d in rec.of(ev.WorkerDied)] == [pid]


async def stop_then_next(trains: Any) -> tuple[Recorder, e.ModelHandle, e.ModelHandle]:
    """On one actor: a model of ``trains`` that its strategy stops at step 2, then a
    model that returns the pid of its actor's process."""
    engine = Engine(RayPool(1))
    async with recording(engine) as rec, engine:
        engine.listen(warm.at_step(2, "stop"))
        stopped = await engine.submit(warm.space(trains).freeze({"x": 1}))
        await stopped
        following = await engine.submit(warm.space(warm.pid).freeze({"x": 2}))
        await following
    return rec, stopped, following


@pytest.mark.anyio
async def test_a_stopped_model_keeps_its_actor(ray_session: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Its strategy's stop ends the trial at its next report: the same actor (same
    process) runs the next model, and no actor died."""
    monkeypatch.setattr(ray_pool, "HALT_GRACE", 60.0)  # a kill would not come in time
    rec, stopped, following = await stop_then_next(warm.keep_reporting)
    started = rec.of(ev.WorkerStarted)
    assert rec.of(ev.WorkerDied) == []
    assert len(started) == 1
    assert following.model.metric == float(started[0].pid)
    assert stopped.status is ModelStatus.Trained
    assert stopped.model.metrics.intermediates == [1.0, 2.0]
    assert stopped.model.metrics.stopped_at == 2
    assert_exited([started[0].pid])


@pytest.mark.anyio
async def test_a_paused_model_keeps_its_actor_and_resumes_from_its_checkpoint(
        ray_session: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_pool, "HALT_GRACE", 60.0)
    engine = Engine(RayPool(1))
    async with recording(engine) as rec, engine:
        watch = engine.subscribe()
        engine.listen(warm.at_step(2, "pause"))
        paused = await engine.submit(warm.space(warm.pause_me).freeze({"x": 1}))
        async for event in watch:
            if isinstance(event, ev.ModelPaused):
                break
        await paused.resume()
        await paused
    assert rec.of(ev.WorkerDied) == []
    assert paused.status is ModelStatus.Trained
    assert paused.model.metrics.intermediates == [1.0, 2.0, 3.0, 4.0]
    assert paused.model.metric == 2.0  # continued from the checkpoint of epoch 2
    pause = rec.of(ev.ModelPaused)[0]
    assert (pause.step, pause.checkpoint) == (2, 2)
    assert_exited([rec.of(ev.WorkerStarted)[0].pid])


@pytest.mark.anyio
async def test_a_stopped_trial_that_never_reports_again_loses_its_actor(
        ray_session: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_pool, "HALT_GRACE", 0.2)
    rec, stopped, following = await stop_then_next(warm.go_quiet)
    first, second = rec.of(ev.WorkerStarted)
    assert [(d.pid, d.reason) for d in rec.of(ev.WorkerDied)] == [
        (first.pid, "its trial (model 1) was stopped (actor killed)")]
    assert following.model.metric == float(second.pid)  # on the replacement
    assert stopped.model.metrics.stopped_at == 2
    assert_exited([first.pid, second.pid])


@pytest.mark.anyio
async def test_leaving_the_engine_stops_every_actor(ray_session: Any) -> None:
    engine = Engine(RayPool(2), queue_size=3)
    async with recording(engine) as rec:
        with anyio.CancelScope() as outer:
            async with engine:
                reports = engine.subscribe()
                handles = [await engine.submit(fx.space(fx.pid_then_wait).freeze({"x": i}))
                           for i in range(3)]  # two run, one waits in the queue
                pids = {int(await first_metric(reports)), int(await first_metric(reports))}
                assert len(our_actors()) == 2
                outer.cancel()
    assert outer.cancelled_caught
    assert [h.status for h in handles] == [ModelStatus.Interrupted] * 3
    assert {x.reason for x in rec.of(ev.ModelInterrupted)} == {ev.InterruptReason.shutdown}
    assert rec.events[-1] == ev.EngineStopped(seq=rec.events[-1].seq,
                                              time=rec.events[-1].time, reason="cancelled")
    assert our_actors() == []
    assert_exited(sorted(pids))


@pytest.mark.anyio
async def test_lost_node_is_a_lost_worker(ray_session: Any) -> None:
    node = ray_session.add_node(num_cpus=3)  # the only node with room for 3-CPU trials
    engine = Engine(RayPool(1, num_cpus_per_trial=3, start_timeout=30))
    async with recording(engine) as rec, engine:
        reports = engine.subscribe()
        handle = await engine.submit(fx.space(fx.pid_then_wait).freeze({"x": 1}))
        await first_metric(reports)
        await anyio.to_thread.run_sync(ray_session.remove_node, node)
        model = await handle
        # The replacement waits for a node with 3 free CPUs; leaving cancels it.
    assert model.status is ModelStatus.Failed
    failed = rec.of(ev.ModelFailed)[0]
    assert failed.error_type == "WorkerLost"
    assert failed.message.startswith("ray-0 (Ray actor, pid ")
    assert failed.message.endswith("because its node has died.")
    assert [d.worker for d in rec.of(ev.WorkerDied)] == ["ray-0"]
    assert len(rec.of(ev.WorkerStarted)) == 1


# -- a Ray instance of the pool's own, in a fresh process --------------------------------------

OWN_CLUSTER = """
import sys, anyio, psutil, ray
sys.path.insert(0, {tests!r})
import ray_fixtures as fx
from engine import Engine
from engine.workers.ray_pool import RayPool

async def main():
    try:  # a failed ray.init comes out of the engine as it is
        async with Engine(RayPool(1, init_kwargs={{"no_such_option": 1}})):
            raise AssertionError("started")
    except Exception as exc:
        assert "no_such_option" in str(exc), repr(exc)
    assert not ray.is_initialized()
    async with Engine(RayPool(1)) as engine:
        assert ray.is_initialized()
        assert ray.cluster_resources()["CPU"] == 1
        model = await (await engine.submit(fx.space(fx.score).freeze({{"x": 3}})))
    assert model.metric == 3.0, model
    assert not ray.is_initialized()
    children = psutil.Process().children(recursive=True)
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, alive
    print("ok")

anyio.run(main, backend="trio")
"""


def test_starts_and_stops_its_own_ray(cluster: Any) -> None:
    script = OWN_CLUSTER.format(tests=str(Path(__file__).parent))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=50, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "ok"


# -- no Ray needed ------------------------------------------------------------------------------


def test_import_engine_does_not_import_ray() -> None:
    code = "import sys, engine, engine.workers.ray_pool; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "False"


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'nas-engine\[ray\]'"):
        RayPool(1)


def test_check_refuses_what_cannot_leave() -> None:
    pool = RayPool(1)
    raw = e.RawFormatModelSpace.from_model(fx.Toy(), e.FunctionEvaluator(fx.score))
    with pytest.raises(TypeError, match="run it with InlinePool"):
        pool.check(raw.freeze({"x": 1}))
    with pytest.raises(TypeError, match="evaluator argument 'blob'"):
        pool.check(fx.space(fx.score, blob=object()).freeze({"x": 1}))
    with pytest.raises(ValueError, match="no evaluator"):
        pool.check(e.SimplifiedModelSpace.from_model(fx.Toy()).freeze({"x": 1}))
    pool.check(fx.space(fx.score).freeze({"x": 1}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"workers": 0}, "workers must be an int >= 1, got 0"),
     ({"workers": True}, "workers must be an int >= 1, got True"),
     ({"address": "auto"}, "pass workers=N with address='auto'"),
     ({"workers": 1, "num_cpus_per_trial": -1}, "num_cpus_per_trial must be a finite number"),
     ({"workers": 1, "num_gpus_per_trial": 1.5}, "whole number of GPUs, got 1.5"),
     ({"workers": 1, "start_timeout": 0}, "start_timeout must be a positive, finite number")],
)
def test_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RayPool(**kwargs)


@pytest.mark.anyio
async def test_no_room_for_the_workers(ray_session: Any) -> None:
    error = await check_start_failure(
        lambda: RayPool(1, num_cpus_per_trial=64, start_timeout=0.5))
    assert str(error).startswith("Ray did not place 1 actor(s) of num_cpus=64")


# -- the conformance kit (engine.testing): what applies to a Ray actor, kept small ----------

RAY = (Feature.EXCEPTION | Feature.OUTPUT | Feature.SIGKILL | Feature.CANCEL | Feature.STOP
       | Feature.CHILD_PROCESS)


@pytest.mark.anyio
@pytest.mark.parametrize("check", checks(RAY), ids=lambda c: c.__name__)
async def test_conformance(ray_session: Any, check: Check) -> None:
    await check(lambda: RayPool(1))
