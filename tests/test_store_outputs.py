"""The full output of failed trials is kept in the run file, where RunReader finds it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine import Engine, ModelStatus
from engine.events import EngineStarted, EngineStopped
from engine.store import RunReader, RunStore, StoredOutput
from engine.workers.process import ProcessPool
from tests.process_fixtures import boom, die, model

pytestmark = pytest.mark.anyio


async def test_record_output_is_written_with_the_next_batch(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    store = await RunStore.open(run)
    big = "".join(f"line {i}\n" for i in range(300_000))  # about 3 MB, kept whole
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        store.append(EngineStarted(seq=1, time=0.0, pool="inline", capacity=1))
        store.record_output(1, 1, big, "")
        store.record_output(1, 2, "", "second\n")
        store.record_output(3, 1, "three\n", "err\n")
        await store.flushed(1)
        store.append(EngineStopped(seq=2, time=1.0, reason="finished"))
        await store.aclose()  # writes the outputs recorded after the last event too
        tg.cancel_scope.cancel()
    with RunReader(run) as reader:
        every = reader.outputs()
        assert reader.outputs(1) == every[:2]
        assert reader.outputs(2) == []
    assert every == [StoredOutput(model_id=1, attempt=1, stdout=big, stderr=""),
                     StoredOutput(model_id=1, attempt=2, stdout="", stderr="second\n"),
                     StoredOutput(model_id=3, attempt=1, stdout="three\n", stderr="err\n")]


async def test_engine_keeps_the_output_of_each_failed_attempt(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    async with Engine(ProcessPool(1), journal=run, max_retries=1) as engine:
        raised = await engine.submit(model(boom, x=2))
        died = await engine.submit(model(die, x=1, how="exit"))
        assert (await raised).status is ModelStatus.Failed
        assert (await died).status is ModelStatus.Failed
    with RunReader(run) as reader:
        outputs = {(o.model_id, o.attempt): o for o in reader.outputs()}
    ids = (raised.model_id, died.model_id)
    assert sorted(outputs) == [(ids[0], 1), (ids[0], 2), (ids[1], 1), (ids[1], 2)]
    assert outputs[ids[0], 2].stdout == "about to fail\n"
    assert outputs[ids[1], 1].stdout == "dying by exit\n"
