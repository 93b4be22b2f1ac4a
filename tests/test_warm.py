"""Warm workers and honest timings (ProcessPool): start-up work happens before the first
trial, and a trial's training event, duration and timeout start once its worker has
built its model."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import anyio
import pytest

import engine.events as ev
from engine import (
    Engine,
    FunctionEvaluator,
    ProcessPool,
    SimplifiedModelSpace,
    WorkerStartFailed,
)
from tests.process_fixtures import children

pytestmark = pytest.mark.anyio

# A module whose import takes a while and logs "pid end-time" lines, with a space whose
# build takes ``BUILD`` seconds, and the evaluator (see the ``slow_module`` fixture).
MODULE = '''
import os, time
from pathlib import Path

import engine as e

LOG = Path({log!r})
time.sleep({sleep!r})
with LOG.open("a") as _file:
    _file.write(f"{{os.getpid()}} {{time.time()!r}}\\n")


class Space(e.BaseModelSpace):
    def __init__(self, build: float = 0.0, parent: int = 0) -> None:
        if os.getpid() != parent:  # the build is slow in a worker only
            time.sleep(build)
        self.x = e.ensure_frozen(e.Categorical([1, 2, 3], label="x"))


def train(model: Space) -> float:
    return float(model.x)


def warm_up() -> None:
    with (LOG.parent / "warmed").open("a") as file:
        file.write(f"{{os.getpid()}}\\n")
'''

IMPORT_SLEEP = 1.0


@pytest.fixture
def slow_module(tmp_path: Path) -> Iterator[ModuleType]:
    """``slow_<n>`` importable here and in workers (its folder on sys.path), imported."""
    name = f"slow_{os.getpid()}_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE.format(
        log=str(tmp_path / "imports.log"), sleep=IMPORT_SLEEP)))
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(name)
        (tmp_path / "imports.log").unlink()  # this process's import is not a worker's
        yield module
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def imports(module: ModuleType) -> dict[int, float]:
    """pid -> when that process finished importing ``module``."""
    path = Path(module.LOG)
    lines = path.read_text().split() if path.exists() else []
    return {int(pid): float(end) for pid, end in zip(lines[::2], lines[1::2], strict=True)}


def space(module: ModuleType, build: float = 0.0) -> SimplifiedModelSpace:
    return SimplifiedModelSpace.from_model(module.Space(build, os.getpid()),
                                           FunctionEvaluator(module.train))


async def run_models(pool: ProcessPool, models: list[SimplifiedModelSpace],
                     **engine_args: object) -> list[ev.Event]:
    """Run ``models`` one after another; every event of the run."""
    events: list[ev.Event] = []
    engine = Engine(pool, **engine_args)  # type: ignore[arg-type]
    subscription = engine.subscribe()
    async with engine:
        for model in models:
            await (await engine.submit(model))
    async for event in subscription:
        events.append(event)
    return events


def of(events: list[ev.Event], kind: type[ev.ModelEvent], model_id: int) -> ev.ModelEvent:
    return next(x for x in events if isinstance(x, kind) and x.model_id == model_id)


async def test_first_trial_starts_after_its_module_is_imported(
        slow_module: ModuleType) -> None:
    """The recipe's module is imported as the first model is submitted, outside the
    trial: its training starts after the import, its duration leaves it out."""
    events = await run_models(ProcessPool(1), [space(slow_module).freeze({"x": 2})])
    (_pid, imported), = imports(slow_module).items()
    training = of(events, ev.TrainingStarted, 1)
    trained = of(events, ev.ModelTrained, 1)
    assert isinstance(training, ev.TrainingStarted)
    assert isinstance(trained, ev.ModelTrained)
    assert training.time >= imported
    assert trained.final == 2.0
    assert trained.duration <= trained.time - imported
    assert children() == []


async def test_every_worker_imports_the_first_models_modules(
        slow_module: ModuleType) -> None:
    """Both workers import the module when model 1 is submitted; model 2 then runs on
    the other worker without paying for the import in its setup."""
    frozen = space(slow_module)
    events = await run_models(ProcessPool(2, prefetch=0),
                              [frozen.freeze({"x": 1}), frozen.freeze({"x": 3})])
    started = [x for x in events if isinstance(x, ev.TrainingStarted)]
    assert {x.worker for x in started} == {"process-0", "process-1"}
    assert len(imports(slow_module)) == 2
    assert all(x.setup < IMPORT_SLEEP for x in started)


async def test_setup_is_recorded_apart_and_the_timeout_counts_training(
        slow_module: ModuleType) -> None:
    """The build's seconds are the event's ``setup``, not the training's duration; the
    timeout bounds the setup (with the worker's import of the module) and the training
    each on its own."""
    build = 1.5
    events = await run_models(ProcessPool(1), [space(slow_module, build).freeze({"x": 3})],
                              trial_timeout=4.0)
    training = of(events, ev.TrainingStarted, 1)
    trained = of(events, ev.ModelTrained, 1)
    assert isinstance(training, ev.TrainingStarted)
    assert isinstance(trained, ev.ModelTrained)
    assert training.setup >= build
    assert trained.duration < training.setup
    assert trained.final == 3.0


async def test_a_build_that_hangs_is_timed_out(slow_module: ModuleType) -> None:
    """A model whose build never ends is interrupted by ``trial_timeout`` (not left
    waiting for a ``training`` that never comes), and its worker is replaced."""
    with anyio.fail_after(60):
        events = await run_models(ProcessPool(1), [space(slow_module, 600).freeze({"x": 3})],
                                  trial_timeout=1.0)
    interrupted = of(events, ev.ModelInterrupted, 1)
    assert isinstance(interrupted, ev.ModelInterrupted)
    assert interrupted.reason is ev.InterruptReason.timeout
    assert not [x for x in events if isinstance(x, ev.TrainingStarted)]
    assert children() == []


async def test_preload_runs_before_the_engine_starts(slow_module: ModuleType) -> None:
    """Named modules and functions are loaded by every worker before it says hello."""
    pool = ProcessPool(2, preload=[slow_module.__name__, f"{slow_module.__name__}:warm_up",
                                   slow_module.warm_up])
    events = await run_models(pool, [])
    hellos = {x.pid: x.time for x in events if isinstance(x, ev.WorkerStarted)}
    loaded = imports(slow_module)
    assert len(loaded) == 2
    assert loaded.keys() == hellos.keys()
    assert all(loaded[pid] <= hellos[pid] for pid in loaded)
    warmed = (Path(slow_module.LOG).parent / "warmed").read_text().split()
    assert sorted(warmed) == sorted(str(pid) for pid in loaded for _ in range(2))
    assert children() == []


async def test_a_preload_that_fails_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(WorkerStartFailed, match="before it was ready"):
        async with Engine(ProcessPool(1, preload=["no_such_module_for_nas_engine"])):
            pass
    assert children() == []


@pytest.mark.parametrize(("preload", "error", "words"), [
    ("torch", TypeError, "not a string"),
    (["torch", "not a module"], ValueError, "'not a module' is not a module name"),
    (["pkg:"], ValueError, "'pkg:' is not a module name"),
    ([lambda: None], TypeError, "cannot be called in a worker"),
    ([3], TypeError, "got 3"),
])
def test_bad_preload_is_refused(preload: object, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        ProcessPool(1, preload=preload)  # type: ignore[arg-type]


def test_echo_must_be_a_bool_or_none() -> None:
    with pytest.raises(TypeError, match="echo must be True, False or None"):
        ProcessPool(1, echo="yes")  # type: ignore[arg-type]


def _score(model: object) -> float:
    return 1.0


def _other_score(model: object) -> float:
    return 2.0


def test_each_recipe_and_evaluator_is_preloaded_once_per_pair() -> None:
    # The pool looks a model's modules up once per (factory, function) pair: a model
    # with a known pair adds nothing, a new evaluator function is still added.
    from engine._recipe import Symbol
    from tests._spaces import Net

    pool = ProcessPool(1)
    first = SimplifiedModelSpace.from_model(Net(), FunctionEvaluator(_score))
    second = SimplifiedModelSpace.from_model(Net(), FunctionEvaluator(_other_score))
    sample = {"width": 16, "dropout": 0.2, "k1": 3, "k2": 7}
    for model in (first.freeze(sample), first.freeze({**sample, "width": 8}),
                  second.freeze(sample)):
        pool.check(model)
    assert list(pool._modules) == [Symbol.of(Net), Symbol.of(_score), Symbol.of(_other_score)]
