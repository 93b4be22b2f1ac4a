"""A real search killed with SIGKILL mid-run, then resumed from its journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from engine import Engine, InlinePool, ModelStatus
from engine import events as ev
from engine.store import RunReader
from strategies import RandomSearch, RegularizedEvolution, search
from tests._resume_search import space

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 40


def start_and_kill(run: Path, strategy: str, after: int) -> None:
    """Run the search in a subprocess and SIGKILL it once ``after`` models trained."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests._resume_search", str(run), str(BUDGET),
         "--strategy", strategy], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        trained = 0
        for line in child.stdout:
            trained += line.startswith("trained")
            if trained >= after:
                break
        assert trained >= after, "the search ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_killed_search_resumes_to_the_same_budget(tmp_path: Path, strategy: str) -> None:
    run = tmp_path / "run.nasrun"
    start_and_kill(run, strategy, after=12)
    with RunReader(run) as reader:
        before = {m.id: m for m in reader.models()}
        seq_before = reader.last_seq()
    finished_before = {i for i, m in before.items() if m.status is ModelStatus.Trained}
    assert len(finished_before) >= 12
    assert len(before) < BUDGET

    async def resume() -> None:
        chosen = (RandomSearch(seed=1) if strategy == "random"
                  else RegularizedEvolution(population_size=8, sample_size=3, seed=1))
        async with Engine(InlinePool(2), max_trials=BUDGET, journal=run) as engine:
            await search(space(), chosen, engine)

    anyio.run(resume)
    with RunReader(run) as reader:
        models = reader.models()
        events = list(reader.events())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(events) > seq_before
    trained = [m for m in models if m.status is ModelStatus.Trained]
    assert len(models) == BUDGET
    assert len(trained) == BUDGET
    # No model that had finished before the kill was trained again after it.
    retrained = {e.model_id for e in events[seq_before:] if isinstance(e, ev.TrainingStarted)}
    assert not retrained & finished_before
    # Distinct samples: the resumed strategy knew what the killed one had tried.
    assert len({tuple(sorted(m.sample.items())) for m in models}) == BUDGET
    best = max(trained, key=lambda m: m.metrics.final if m.metrics.final is not None else -1e9)
    finals = {e.model_id: e.final for e in events if isinstance(e, ev.ModelTrained)}
    assert best.metrics.final == max(finals.values())
