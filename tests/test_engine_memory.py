"""The engine's memory per model is bounded: an output tail, no leftover bookkeeping."""

from __future__ import annotations

import anyio
import pytest

from engine import Engine, InlinePool, ModelStatus, ProcessPool
from engine.engine import OUTPUT_TAIL
from tests._engine_fixtures import loud_model
from tests.process_fixtures import children


@pytest.mark.anyio
async def test_a_handle_keeps_only_the_tail_of_a_trials_output() -> None:
    async with Engine(ProcessPool(1)) as engine:
        trained = await engine.submit(loud_model(5000))  # 500 KB on stdout
        failed = await engine.submit(loud_model(3000, fail=True))
        small = await engine.submit(loud_model(3))
        for handle in (trained, failed, small):
            await handle
    assert (trained.status, failed.status) == (ModelStatus.Trained, ModelStatus.Failed)
    for handle, lines in ((trained, 5000), (failed, 3000)):
        assert handle.output is not None
        stdout = handle.output.stdout
        head, _, tail = stdout.partition("\n")
        assert head == f"[... {lines * 100 - OUTPUT_TAIL} earlier characters dropped ...]"
        assert len(tail) == OUTPUT_TAIL
        assert tail.endswith(f"line {lines - 1:08d} " + "." * 85 + "\n")
        assert handle.output.stderr.startswith("the end of stderr")
    assert small.output is not None
    assert small.output.stdout.startswith("line 00000000")  # nothing dropped
    assert children() == []


@pytest.mark.anyio
async def test_a_finished_model_leaves_no_bookkeeping_behind() -> None:
    async with Engine(InlinePool(2)) as engine:
        handles = [await engine.submit(loud_model(1)) for _ in range(6)]
        for handle in handles:
            await handle
        assert engine._by_object == {}
        assert engine._samples == {}  # not deduplicating: no sample is kept
        assert engine.in_flight == 0
        while await engine.next_finished() is not None:
            pass
        assert not engine._finished  # handed out: dropped
    assert len(engine.handles()) == 6  # handles() still lists every model


@pytest.mark.anyio
async def test_a_finished_handle_holds_no_event_loop_object() -> None:
    async with Engine(InlinePool(2)) as engine:
        waited = await engine.submit(loud_model(1))
        unwaited = await engine.submit(loud_model(1))
        assert await waited is waited.model  # waited on before it finished
        while unwaited.status is not ModelStatus.Trained or not unwaited.done:
            await engine.next_finished()
    for handle in (waited, unwaited):
        assert handle.done
        held = [type(v).__name__ for v in vars(handle).values()
                if isinstance(v, anyio.Event | anyio.CancelScope)]
        assert held == []  # an Event costs ~900 bytes per finished model
        assert await handle is handle.model  # awaiting a finished handle still works

