"""The pause race of issue 15: a ProcessPool worker trains on past the step its strategy
paused it at until the halt reaches it. The checkpoint of the paused step must survive
the checkpoints the worker saves meanwhile, so that the model resumes from it rather
than from scratch; the folder stays bounded all the same. The worker's lead is made
deterministic with a FIFO handshake (tests._pause_race_fixtures), not with timing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import Engine, InlinePool, ModelHandle, ModelStatus, ProcessPool
from engine import events as ev
from engine._checkpoint import CheckpointRoot, Pruner, prune_reported
from engine.store import RunReader
from tests._checkpoint_fixtures import climb, climb_sync, space, value
from tests._pause_race_fixtures import open_fifo, outrun, wait_for_worker

pytestmark = pytest.mark.anyio

EPOCHS, AT = 6, 2


def steps_in(folder: Path) -> list[int]:
    """The steps of the checkpoints in ``folder``, in order."""
    if not folder.exists():
        return []
    return sorted(int(name[5:13]) for name in os.listdir(folder) if name.startswith("step-"))


@pytest.mark.parametrize("ahead", [2, 3])
async def test_a_paused_model_continues_from_its_step_after_its_worker_ran_ahead(
        tmp_path: Path, ahead: int) -> None:
    fifo = open_fifo(str(tmp_path / "handshake"))
    handshakes: list[bool] = []
    seen: list[list[int]] = []

    def hear(handle: ModelHandle, step: int, _: float) -> None:
        if step == AT and not handshakes:
            handle.pause()
            # The driver hears step AT only once the worker saved and reported `ahead`
            # more epochs: as if the driver were slow, or the epochs quick.
            handshakes.append(wait_for_worker(fifo))
            seen.append(steps_in(folder))

    try:
        async with Engine(ProcessPool(1, prefetch=0), journal=tmp_path / "run.nasrun") \
                as engine:
            log = engine.subscribe()
            watch = engine.subscribe()
            engine.listen(hear)
            handle = await engine.submit(space(
                outrun, fifo=str(tmp_path / "handshake"), epochs=EPOCHS, at=AT,
                ahead=ahead).freeze({"x": 2}))
            assert engine._checkpoints is not None
            folder = engine._checkpoints.folder(handle.model_id)
            async for event in watch:
                if isinstance(event, ev.ModelPaused):
                    break
            kept = steps_in(folder)
            await handle.resume()
            await handle
    finally:
        os.close(fifo)
    assert handshakes == [True]
    assert handle.status is ModelStatus.Trained
    assert handle.model.metric == float(AT)  # it loaded the checkpoint of step AT
    # The lead is on disk, step AT too (the worker, told nothing yet, may have saved
    # its next epoch too by the time the driver looks).
    assert len(seen) == 1
    assert seen[0][:AT + ahead] == list(range(1, AT + ahead + 1))
    events = [event async for event in log]
    paused = next(e for e in events if isinstance(e, ev.ModelPaused))
    assert (paused.step, paused.checkpoint) == (AT, AT)
    assert kept == [AT - 1, AT]  # paused: what follows its step is gone, and older ones
    starts = [e.resume_step for e in events if isinstance(e, ev.TrainingStarted)]
    assert starts == [0, AT]
    assert handle.model.metrics.intermediates == [value(2, s) for s in range(1, EPOCHS + 1)]
    assert not folder.exists()  # trained: its checkpoints are deleted


async def test_a_running_model_keeps_the_two_newest_checkpoints_at_its_reported_step(
        tmp_path: Path) -> None:
    epochs = 10
    below: list[list[int]] = []

    def hear(handle: ModelHandle, step: int, _: float) -> None:
        # What the worker saved ahead of this report may be there too; at or below it,
        # only the two newest are.
        below.append([s for s in steps_in(folder) if s <= step])

    # Without a run file: with one, what is kept also waits for the reports' commits
    # (test_only_committed_reports_count_for_pruning).
    async with Engine(ProcessPool(1, prefetch=0)) as engine:
        assert engine._checkpoints is not None
        folder = engine._checkpoints.folder(1)
        engine.listen(hear)
        handle = await engine.submit(space(climb_sync, epochs=epochs).freeze({"x": 1}))
        await handle
    assert handle.status is ModelStatus.Trained
    assert below == [[1]] + [[s - 1, s] for s in range(2, epochs + 1)]
    assert not folder.exists()


def test_pruning_keeps_sparse_checkpoints_and_the_lead(tmp_path: Path) -> None:
    """A model that saves every fifth epoch keeps its two newest saves whatever the
    reported step; saves after the reported step (the worker's lead) stay."""
    for step in (5, 10, 15, 20):
        (tmp_path / f"step-{step:08d}.pkl").write_bytes(b"state")
    prune_reported(str(tmp_path), 12)
    assert steps_in(tmp_path) == [5, 10, 15, 20]
    prune_reported(str(tmp_path), 17)
    assert steps_in(tmp_path) == [10, 15, 20]
    prune_reported(str(tmp_path / "none"), 3)  # a model that saved nothing: no folder
    assert not (tmp_path / "none").exists()


def test_a_pause_keeps_the_two_newest_checkpoints_at_its_step(tmp_path: Path) -> None:
    root = CheckpointRoot(tmp_path, temporary=False)
    for step in range(1, 6):
        root.folder(7).mkdir(parents=True, exist_ok=True)
        (root.folder(7) / f"step-{step:08d}.pkl").write_bytes(b"state")
    assert root.paused(7, 3) == 3
    assert steps_in(root.folder(7)) == [2, 3]  # after its step: a future that is dropped
    (root.folder(8)).mkdir()
    (root.folder(8) / "step-00000004.pkl").write_bytes(b"state")
    assert root.paused(8, 2) is None  # nothing to continue from: it starts afresh
    assert steps_in(root.folder(8)) == []


def test_the_pruner_finds_a_folder_that_appears_late(tmp_path: Path) -> None:
    """An attempt that saved nothing yet costs no look at each report: the folder is
    looked for at reports 1, 2, 4, 8..., then every LOOK_EVERY; once seen, every report
    prunes."""
    folder = tmp_path / "3"
    pruner = Pruner(str(folder))
    pruner.reported(1)  # looked: no folder
    pruner.reported(2)  # looked: no folder
    folder.mkdir()  # the model's first save is of step 3; its worker is ahead
    for step in range(3, 9):
        (folder / f"step-{step:08d}.pkl").write_bytes(b"state")
    pruner.reported(3)  # not looked
    assert steps_in(folder) == [3, 4, 5, 6, 7, 8]
    pruner.reported(4)  # looked: seen, pruned (the lead stays)
    assert steps_in(folder) == [3, 4, 5, 6, 7, 8]
    pruner.reported(5)  # once seen, every report prunes
    assert steps_in(folder) == [4, 5, 6, 7, 8]
    pruner.reported(6)
    assert steps_in(folder) == [5, 6, 7, 8]
    resumed = Pruner(str(folder), seen=True)  # an attempt continued from a checkpoint
    resumed.reported(8)
    assert steps_in(folder) == [7, 8]


def test_only_reports_the_run_file_holds_count_for_pruning(tmp_path: Path) -> None:
    """With a run file the pruner keeps what a resume after a crash needs: the run file
    holds the reports whose events are committed, and a resumed model continues from
    its newest checkpoint at or below them, so the checkpoints above the last committed
    report stay until their reports are committed too."""
    folder = tmp_path / "5"
    folder.mkdir()
    committed = [0]
    pruner = Pruner(str(folder), seen=True, committed=lambda: committed[0])
    for step in range(1, 6):  # reports 1-5 are events 11-15; none committed yet
        (folder / f"step-{step:08d}.pkl").write_bytes(b"state")
        pruner.reported(step, seq=10 + step)
    assert steps_in(folder) == [1, 2, 3, 4, 5]  # without the lag: [4, 5]
    committed[0] = 13  # the batch with reports 1-3 is on disk
    (folder / "step-00000006.pkl").write_bytes(b"state")
    pruner.reported(6, seq=16)
    assert steps_in(folder) == [2, 3, 4, 5, 6]  # a resume continues from step 3
    committed[0] = 16
    pruner.reported(7, seq=17)
    assert steps_in(folder) == [5, 6]  # report 7 is not on disk: 6 is the newest kept


async def test_only_committed_reports_count_for_pruning(tmp_path: Path) -> None:
    """The run file's writer held back (its write lock taken): no report of the model
    is on disk while it trains, so none of its checkpoints is pruned, as a resume after
    a crash then would continue from the run file's steps. Its folder still goes when
    it ends, and the run file gets every event once the writer goes on."""
    run, epochs = tmp_path / "run.nasrun", 5
    kept: list[list[int]] = []

    def hear(handle: ModelHandle, step: int, _: float) -> None:
        kept.append(steps_in(folder))

    async with Engine(InlinePool(1), journal=run) as engine:
        assert engine._checkpoints is not None
        assert engine._journal is not None
        folder = engine._checkpoints.folder(1)
        watch = engine.subscribe()
        engine.listen(hear)
        async with engine._journal.store._write_lock:  # no batch is written meanwhile
            handle = await engine.submit(space(climb, epochs=epochs).freeze({"x": 1}))
            async for event in watch:  # not `await handle`: it resolves once committed
                if isinstance(event, ev.ModelTrained):
                    break
            assert not folder.exists()  # trained: its checkpoints are deleted
        await handle
    assert kept == [list(range(1, step + 1)) for step in range(1, epochs + 1)]
    assert handle.status is ModelStatus.Trained
    with RunReader(run) as reader:
        assert [m.status for m in reader.models()] == [ModelStatus.Trained]
