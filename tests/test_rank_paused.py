"""Ranking knows fidelity for paused models too: a model its strategy left paused (as
promotion ASHA leaves models at a rung when the run ends) ranks by its last report at
the step it reached, exactly like a model stopped there, in ``rank``, ``search``,
``best()``, ``RunResults.best``, ``nas-engine show``, the plot and the progress line;
from a live engine, from the run file, and after a resume."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from engine import events as ev
from engine._progress import Progress
from engine.cli import main
from engine.cli._plot import run_points
from engine.results import open_run
from engine.store import RunReader
from strategies import RandomSearch, rank, search
from strategies.base import HandleLike
from tests._checkpoint_fixtures import space, value

pytestmark = pytest.mark.anyio

# What becomes of the model of each x (its reports are value(x, step) = 10 x + step):
# ("pause" | "stop", at step). No model trains to its end, so the best is a paused one.
PLAN = {1: ("stop", 1), 2: ("pause", 3), 3: ("pause", 2), 4: ("stop", 2), 5: ("pause", 1),
        6: ("pause", 2)}
# Highest fidelity first, then best value: x=2 at step 3; at step 2 x=6 (62), x=4
# (42, stopped), x=3 (32); at step 1 x=5 (51), x=1 (11, stopped).
RANKED = [2, 6, 4, 3, 5, 1]
STEP = {x: at for x, (_, at) in PLAN.items()}


class Planned(RandomSearch):
    """Random search that pauses or stops each model where :data:`PLAN` says."""

    def on_intermediate(self, handle: HandleLike, step: int, value: float) -> None:
        action, at = PLAN[int((handle.model.sample or {})["x"])]
        if step == at:
            handle.pause() if action == "pause" else handle.stop()  # type: ignore[attr-defined]


def xs(models: list[e.ExecutableModelSpace]) -> list[int]:
    return [int((m.sample or {})["x"]) for m in models]


async def planned_run(run: Path) -> tuple[list[e.ExecutableModelSpace], list[ev.Event]]:
    """The planned search, journaled to ``run``: what ``search`` returned, and its
    events."""
    async with Engine(InlinePool(2), journal=run) as engine:
        log = engine.subscribe()
        found = await search(space(), Planned(0), engine)
        statuses = sorted(h.status.value for h in engine.handles())
    assert statuses == ["paused"] * 4 + ["trained"] * 2
    return found, [event async for event in log]


def ids_by_x(run: Path) -> dict[int, int]:
    with open_run(run) as results:
        return {int(m.sample["x"]): m.id for m in results.models()}


async def test_search_ranks_paused_models_at_their_step(tmp_path: Path) -> None:
    found, _ = await planned_run(tmp_path / "run.nasrun")
    assert xs(found) == RANKED


async def test_rank_ranks_paused_models_live_and_after_a_resume(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    await planned_run(run)
    async with Engine(InlinePool(1), journal=run) as engine:
        restored = [h.model for h in engine.handles()]
        assert [m.status for m in restored].count(ModelStatus.Paused) == 4
        assert xs(rank(restored)) == RANKED
        assert xs(rank(restored, "min"))[:3] == [2, 3, 4]  # step 3, then the worst at 2


async def test_best_is_a_paused_model_at_the_top_step(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    async with Engine(InlinePool(2), journal=run) as engine:
        await search(space(), Planned(0), engine)
        live = engine.best()
    assert live is not None
    assert xs([live]) == [2]
    assert live.status is ModelStatus.Paused
    async with Engine(InlinePool(1), journal=run) as engine:
        resumed = engine.best()
        assert resumed is not None
        assert xs([resumed]) == [2]
        assert resumed.metrics.intermediates[-1] == value(2, 3)


async def test_run_results_best_ranks_paused_models(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    await planned_run(run)
    for _ in range(2):  # as written, then after a resumed run that left them paused
        with open_run(run) as results:
            best = results.best()
            assert [int(m.sample["x"]) for m in best] == RANKED
            assert [m.fidelity for m in best] == [STEP[x] for x in RANKED]
            assert [int(m.sample["x"]) for m in results.best("min")][:3] == [2, 3, 4]
        async with Engine(InlinePool(1), journal=run):
            pass


async def test_show_ranks_paused_models_and_says_at_which_step(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run.nasrun"
    await planned_run(run)
    ids = ids_by_x(run)
    assert main(["show", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = lines.index("best 6 of 6 ranked (2 trained, 4 paused) (max final metric, "
                       "recorded in the run):")
    rows = [line.split() for line in lines[head + 2:head + 8]]
    assert [int(row[1]) for row in rows] == [ids[x] for x in RANKED]
    assert [float(row[2]) for row in rows] == [value(x, STEP[x]) for x in RANKED]
    said = {"pause": "paused", "stop": "stopped"}
    for row, x in zip(rows, RANKED, strict=True):
        assert f"({said[PLAN[x][0]]} at step {STEP[x]})" in " ".join(row)


async def test_plot_ranks_paused_models_at_their_step(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    _, events = await planned_run(run)
    with RunReader(run) as reader:
        _, points = run_points(reader)
    assert len(points) == 6  # every model, paused ones included
    by_value = {p[2]: p for p in points}
    assert {v: p[4] for v, p in by_value.items()} == {
        value(x, STEP[x]): float(STEP[x]) for x in PLAN}
    assert points[-1][3] == value(2, 3)  # the best so far ends at the top step's best
    # The best so far never drops to a lower step: once x=2 paused at step 3, it stays.
    at = next(p[0] for p in points if p[2] == value(2, 3))
    assert {p[3] for p in points if p[0] >= at} == {value(2, 3)}
    # Points come in the order the models ended or paused.
    order = [e.model_id for e in events if isinstance(e, ev.ModelPaused | ev.ModelTrained)]
    ids = ids_by_x(run)
    assert [ids[int(p[2] // 10)] for p in points] == order  # value(x, step) // 10 == x


async def test_progress_line_ranks_paused_models_live_and_after_a_resume(
        tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    _, events = await planned_run(run)
    best_id = ids_by_x(run)[2]
    live = Progress()
    for event in events:
        live.update(event)
    assert live.best == (value(2, 3), best_id)
    assert live.best_fidelity == 3
    assert f"best {value(2, 3):.6g} (max, #{best_id} at step 3)" in live.line()
    resumed_engine = Engine(InlinePool(1), journal=run)
    resumed, stream = Progress(engine=resumed_engine), resumed_engine.subscribe()
    async with resumed_engine:
        resumed.update(await stream.__anext__())  # its first event: engine_started
        assert resumed.best == (value(2, 3), best_id)
        assert "| 4 paused |" in resumed.line()


async def test_a_paused_model_that_is_cancelled_leaves_the_progress_ranking() -> None:
    async with Engine(InlinePool(1)) as engine:
        log = engine.subscribe()

        def pause(handle: e.ModelHandle, step: int, _: object) -> None:
            if step == 2:
                handle.pause()

        engine.listen(pause)
        handle = await engine.submit(space().freeze({"x": 3}))
        progress = Progress()
        async for event in log:
            progress.update(event)
            if isinstance(event, ev.ModelPaused):
                break
        assert progress.best == (value(3, 2), handle.model_id)
        handle.cancel()
        async for event in log:
            progress.update(event)
            if isinstance(event, ev.ModelInterrupted):
                break
    assert handle.status is ModelStatus.Interrupted
    assert progress.best is None
    assert engine.best() is None
