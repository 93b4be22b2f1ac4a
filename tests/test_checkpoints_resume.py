"""A driver killed with SIGKILL mid-run, then resumed: the model caught training
continues from its last checkpoint, the paused model stays paused (with its step and
checkpoint) and can be resumed, and checkpoints of ended models are deleted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from engine import Engine, InlinePool, ModelStatus
from engine import events as ev
from engine.store import RunReader
from tests._checkpoint_fixtures import EPOCHS, value

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.anyio


def start_and_kill(run: Path) -> None:
    """Run the driver in a subprocess and SIGKILL it once it says ``ready``."""
    with subprocess.Popen([sys.executable, "-m", "tests._checkpoint_driver", str(run)],
                          cwd=ROOT, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
        finally:
            os.kill(child.pid, signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL


def folders(run: Path) -> list[str]:
    root = run.with_name(run.name + ".checkpoints")
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


async def test_a_killed_driver_resumes_from_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    await anyio.to_thread.run_sync(start_and_kill, run)
    with RunReader(run) as reader:
        before = {m.id: m for m in reader.models()}
        seq_before = reader.last_seq()
    assert before[1].status is ModelStatus.Training
    assert before[1].metrics.intermediates == [value(1, 1), value(1, 2)]
    assert before[3].status is ModelStatus.Paused
    assert (before[3].checkpoint, len(before[3].metrics.intermediates)) == (3, 3)
    assert before[4].status is ModelStatus.Trained
    assert before[4].metrics.stopped_at == 2
    # Only the unfinished and the paused model keep checkpoints.
    assert folders(run) == ["1", "3"]
    stale = run.with_name(run.name + ".checkpoints") / "2"
    stale.mkdir()
    (stale / "step-00000004.pkl").write_bytes(b"left by a driver killed mid-cleanup")

    async with Engine(InlinePool(2), journal=run) as engine:
        assert folders(run) == ["1", "3"]  # the stale one went at the start
        handles = {h.model_id: h for h in engine.handles()}
        paused = handles[3]
        assert paused.status is ModelStatus.Paused
        assert paused.model.metrics.intermediates == [value(3, s) for s in (1, 2, 3)]
        await paused.resume()
        caught = await handles[1]
        await paused
    assert folders(run) == []
    assert not run.with_name(run.name + ".checkpoints").exists()
    assert caught.status is ModelStatus.Trained
    assert caught.metric == 2.0  # continued from its checkpoint of epoch 2
    assert paused.model.metric == 3.0
    with RunReader(run) as reader:
        after = {m.id: m for m in reader.models()}
        events = list(reader.events(seq_before + 1))
    for model_id in (1, 3):
        assert after[model_id].metrics.intermediates == [
            value(model_id, s) for s in range(1, EPOCHS + 1)]
    starts = {e.model_id: e.resume_step for e in events if isinstance(e, ev.TrainingStarted)}
    assert starts == {1: 2, 3: 3}
    steps = [e.step for e in events if isinstance(e, ev.MetricReported) and e.model_id == 1]
    assert steps == [3, 4]
