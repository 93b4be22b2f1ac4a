"""What the parent does per trial (issue 13 item 5): work that does not depend on the
trial is done once, and a trial that keeps no checkpoint touches no checkpoint folder.
The figures themselves are in benchmarks/engine_overhead.py; these tests pin the
behaviour that keeps them down, without timing anything."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from tests._checkpoint_fixtures import climb_sync, space

pytestmark = pytest.mark.anyio

# The file-system calls seen while `_watching` is on: (audit event, path). An audit hook
# cannot be removed, so one hook, installed once, records only while a test asks it to.
_seen: list[tuple[str, str]] | None = None
_hooked = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _seen is not None and event in ("os.scandir", "shutil.rmtree", "os.listdir"):
        _seen.append((event, str(args[0])))


@contextmanager
def _watching() -> Iterator[list[tuple[str, str]]]:
    global _seen, _hooked
    if not _hooked:
        sys.addaudithook(_hook)
        _hooked = True
    _seen = seen = []
    try:
        yield seen
    finally:
        _seen = None


def _noop(model: Any) -> float:
    return 0.0


class _Space(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Numerical(0.0, 1.0, label="x"))


async def test_a_trial_that_keeps_no_checkpoint_touches_no_checkpoint_folder(
        tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    root = str(run.with_name(run.name + ".checkpoints"))
    frozen = e.SimplifiedModelSpace.from_model(_Space(), e.FunctionEvaluator(_noop))
    async with Engine(InlinePool(2), journal=run) as engine:
        with _watching() as seen:
            handles = [await engine.submit(frozen.freeze({"x": i / 10})) for i in range(10)]
            for handle in handles:
                await handle
    assert [h.status for h in handles] == [ModelStatus.Trained] * 10
    assert [call for call in seen if call[1].startswith(root)] == []


async def test_a_retried_model_still_finds_and_frees_its_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    root = run.with_name(run.name + ".checkpoints")
    async with Engine(InlinePool(1), journal=run, max_retries=1) as engine:
        handle = await engine.submit(space(climb_sync, fail_at=2).freeze({"x": 1}))
        model = await handle
    assert model.status is ModelStatus.Trained
    assert handle.attempts == 2
    assert not (root / str(handle.model_id)).exists()


class _CountingSpace(e.BaseModelSpace):
    """Counts the walks of its mutables (each ``leaf_mutables`` call)."""

    walks = 0

    def __init__(self) -> None:
        self.op = e.Categorical(["a", "b", "c"], label="op")
        self.depth = e.Categorical([1, 2], label="depth")

    def leaf_mutables(self) -> Iterator[e.LabeledMutable]:
        type(self).walks += 1
        yield from super().leaf_mutables()


@pytest.mark.parametrize("kind", [e.RawFormatModelSpace, e.SimplifiedModelSpace])
def test_freezing_reads_the_space_once_not_per_sample(kind: Any) -> None:
    space = kind.from_model(_CountingSpace(), e.FunctionEvaluator(_noop, lr=e.Categorical(
        [0.1, 0.01], label="lr")))
    space.freeze({"op": "a", "depth": 1, "lr": 0.1})
    walks = _CountingSpace.walks
    models = [space.freeze({"op": op, "depth": 2, "lr": 0.01}) for op in "abc" * 10]
    assert _CountingSpace.walks == walks
    assert [m.sample for m in models[:3]] == [
        {"op": op, "depth": 2, "lr": 0.01} for op in "abc"]
    assert all(m.evaluator is not None and m.evaluator.kwargs == {"lr": 0.01} for m in models)
    with pytest.raises(e.SampleValidationError) as caught:
        space.freeze({"op": "z", "depth": 2, "lr": 0.01})
    assert caught.value.paths == ["model", "op"]
    with pytest.raises(e.SampleValidationError) as caught:
        space.freeze({"op": "a", "depth": 2, "lr": 5.0})
    assert caught.value.paths == ["evaluator", "lr"]
    assert "_nas_init_call" not in vars(models[0])  # a frozen model records no init call


class _Activation:
    def __repr__(self) -> str:
        return "<relu>"


class _ObjectSpace(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Numerical(0.0, 1.0, label="x"))
        self.act = e.ensure_frozen(e.Categorical([_ACTIVATION, "tanh"], label="act"))


_ACTIVATION = _Activation()


async def test_a_sample_the_journal_cannot_store_is_refused_naming_its_label(
        tmp_path: Path) -> None:
    frozen = e.RawFormatModelSpace.from_model(_ObjectSpace(), e.FunctionEvaluator(_noop))
    async with Engine(InlinePool(1), journal=tmp_path / "run.nasrun") as engine:
        with pytest.raises(TypeError, match=r"the value of 'act' .*<relu>"):
            await engine.submit(frozen.freeze({"x": 0.5, "act": _ACTIVATION}))
        handle = await engine.submit(frozen.freeze({"x": 0.5, "act": "tanh"}))
        assert (await handle).status is ModelStatus.Trained
    assert [h.model_id for h in engine.handles()] == [1]  # the refused one took no id


async def test_a_process_job_makes_its_over_event_only_for_a_waiter() -> None:
    from engine.workers._base import TrialOutput
    from engine.workers._child import Job

    quick = Job(1, b"", trial=None)  # type: ignore[arg-type]
    quick.settle(TrialOutput())
    assert quick.over is True
    assert quick._over is None
    await quick.wait_over()  # over already: returns (after a checkpoint)

    waited = Job(2, b"", trial=None)  # type: ignore[arg-type]
    ended: list[bool] = []

    async def waiter() -> None:
        await waited.wait_over()
        ended.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert ended == []
        assert waited._over is not None
        waited.settle(RuntimeError("worker lost"))
    assert ended == [True]
