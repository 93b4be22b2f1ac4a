"""One direction and one "best" for the engine, the strategies, the CLI, the plot data
and the progress line (engine._objective); one sample key for the engine and the
strategies."""

from __future__ import annotations

import io
import math
import sqlite3
from pathlib import Path

import anyio
import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus, Objective, show_progress
from engine._objective import (
    best_first,
    best_of,
    better,
    check_mode,
    declare,
    objective_from_meta,
    objective_meta,
    sample_key,
)
from engine._progress import Progress
from engine.cli import main
from engine.cli._plot import run_points
from engine.store import RunReader
from strategies import RandomSearch, search
from tests._journal_fixtures import journal_space

NAN = math.nan


# --- the definitions --------------------------------------------------------------------


def test_check_mode_names_what_to_pass() -> None:
    assert (check_mode("max"), check_mode("min")) == ("max", "min")
    with pytest.raises(ValueError, match=r"mode must be 'max' .* or 'min', got 'maximize'"):
        check_mode("maximize")


def test_better_is_strict_in_both_directions() -> None:
    assert [better(2.0, 1.0, "max"), better(1.0, 2.0, "max"), better(1.0, 1.0, "max")] == [
        True, False, False]
    assert [better(1.0, 2.0, "min"), better(2.0, 1.0, "min"), better(1.0, 1.0, "min")] == [
        True, False, False]


def test_best_first_drops_missing_and_nan_and_keeps_ties_in_order() -> None:
    items = [("a", 1.0), ("b", None), ("c", 3.0), ("d", NAN), ("e", 3.0), ("f", 1.0)]
    value = lambda item: item[1]  # noqa: E731
    assert [i[0] for i in best_first(items, value, "max")] == ["c", "e", "a", "f"]
    assert [i[0] for i in best_first(items, value, "min")] == ["a", "f", "c", "e"]
    assert best_of(items, value, "max") == ("c", 3.0)
    assert best_of(items, value, "min") == ("a", 1.0)
    assert best_of([("x", NAN), ("y", None)], value, "max") is None


def test_a_run_has_one_objective() -> None:
    first = declare(None, "min", None)
    assert first == Objective(name="metric", mode="min")
    assert declare(first, "min", None) is first
    assert declare(first, "min", "metric") is first
    with pytest.raises(ValueError, match=r"optimizes min metric \(recorded in r.nasrun\), "
                       r"not max metric: .* pass mode='min'"):
        declare(first, "max", None, recorded_in="r.nasrun")
    with pytest.raises(ValueError, match="not min loss"):
        declare(first, "min", "loss")
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        declare(None, "min", "")


def test_the_objective_round_trips_through_meta() -> None:
    objective = Objective(name="val_loss", mode="min")
    assert objective_from_meta({"objective": objective_meta(objective)}) == objective
    assert objective_from_meta({"format": "nas-engine-run"}) is None
    for damaged in ('{"mode": "down"}', "not json"):
        with pytest.raises(ValueError, match=r"meta value .* is not an objective"):
            objective_from_meta({"objective": damaged})


def test_the_engine_and_the_strategies_share_one_sample_key() -> None:
    from engine._engine import _restoring, _submission
    from strategies import sample_key as strategies_key

    # submit's deduplication and a resumed run's both key samples as strategies do
    assert _submission.sample_key is _restoring.sample_key is sample_key is strategies_key
    assert sample_key({"a": 1, "b": (1, 2)}) == sample_key({"b": [1, 2], "a": 1})
    assert sample_key({"kind": int}) == sample_key({"kind": int}) != sample_key({"kind": float})


class Kinds(e.BaseModelSpace):
    def __init__(self) -> None:
        self.kind = e.ensure_frozen(e.Categorical([int, float], label="kind"))


async def kind_score(model: Kinds) -> float:
    return 1.0 if model.kind is int else 2.0


@pytest.mark.anyio
async def test_deduplication_keys_samples_msgspec_cannot_encode() -> None:
    # The engine's own key raised TypeError here, while the strategies' fell back to repr.
    space = e.RawFormatModelSpace.from_model(Kinds(), e.FunctionEvaluator(kind_score))
    async with Engine(InlinePool(1), deduplicate=True) as engine:
        first = await engine.submit(space.freeze({"kind": int}))
        again = await engine.submit(space.freeze({"kind": int}))
        other = await engine.submit(space.freeze({"kind": float}))
    assert [h.status for h in (first, again, other)] == [
        ModelStatus.Trained, ModelStatus.Invalid, ModelStatus.Trained]


# --- a min search, through a real run file ------------------------------------------------


async def min_search(run: Path, trials: int) -> tuple[Engine, Progress]:
    engine = Engine(InlinePool(2), journal=run, max_trials=trials)
    events = engine.subscribe()
    progress: list[Progress] = []

    async def watch() -> None:
        progress.append(await show_progress(events, engine=engine, stream=io.StringIO()))

    async with anyio.create_task_group() as tg, engine:
        tg.start_soon(watch)
        ranked = await search(journal_space(), RandomSearch(1, mode="min"), engine)
        assert [m.metric for m in ranked] == sorted(m.metric for m in ranked)  # type: ignore[type-var]
    return engine, progress[0]


def lowest(engine: Engine) -> e.ModelHandle:
    trained = [h for h in engine.handles() if h.status is ModelStatus.Trained]
    return min(trained, key=lambda h: (h.model.metric, h.model_id))


@pytest.mark.anyio
async def test_a_min_search_is_min_everywhere(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run.nasrun"
    engine, progress = await min_search(run, 8)
    best = lowest(engine)
    assert best.model.metric != max(h.model.metric for h in engine.handles())  # type: ignore[type-var]
    assert engine.objective == Objective(name="metric", mode="min")
    assert engine.best() is best.model
    assert progress.best == (best.model.metric, best.model_id)
    assert f"best {best.model.metric:.6g} (min, #{best.model_id})" in progress.line()
    with RunReader(run) as reader:
        assert reader.meta()["objective"] == '{"name":"metric","mode":"min"}'
        objective, points = run_points(reader)
    assert objective.mode == "min"
    assert points[-1][3] == best.model.metric
    assert [p[3] for p in points] == [min(p[2] for p in points[:i + 1])
                                      for i in range(len(points))]
    assert main(["show", str(run), "--top", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "trained (min final metric, recorded in the run):" in out[-3]
    assert out[-1].split()[:3] == ["1", str(best.model_id), f"{best.model.metric:.6g}"]


@pytest.mark.anyio
async def test_a_resumed_run_keeps_its_direction(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    first, _ = await min_search(run, 4)
    async with Engine(InlinePool(1), journal=run, max_trials=8) as engine:
        assert engine.objective == Objective(mode="min")  # before any strategy said so
        best = engine.best()
        assert best is not None
        assert best.metric == first.best().metric  # type: ignore[union-attr]
        with pytest.raises(ValueError, match=r"optimizes min metric \(recorded in .*run"
                           r"\.nasrun\), not max metric"):
            await search(journal_space(), RandomSearch(2), engine)
        await search(journal_space(), RandomSearch(2, mode="min"), engine)
    assert engine.best() is lowest(engine).model
    assert len(engine.handles()) == 8


@pytest.mark.anyio
async def test_an_objective_declared_by_hand_is_recorded_and_checked(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    engine = Engine(InlinePool(1), journal=run)
    engine.set_objective("min", name="loss")  # before the start: written at the start
    async with engine:
        for x in (5, 2, 7):
            await engine.submit(journal_space().freeze({"x": x}))
        with pytest.raises(ValueError, match="optimizes min loss"):
            engine.set_objective("max")
        assert engine.objective == Objective(name="loss", mode="min")
    assert engine.best().metric == 2.0  # type: ignore[union-attr]
    assert engine.best("max").metric == 7.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="mode"):
        engine.best("median")
    with sqlite3.connect(run) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'objective'").fetchone() == (
            '{"name":"loss","mode":"min"}',)
    conflicting = Engine(InlinePool(1), journal=run)
    conflicting.set_objective("max")
    with pytest.raises(ValueError, match=r"optimizes min loss \(recorded in"):
        async with conflicting:
            pass


@pytest.mark.anyio
async def test_best_leaves_out_nan() -> None:
    async def score(model: Kinds) -> float:
        return NAN if model.kind is int else 2.0

    space = e.RawFormatModelSpace.from_model(Kinds(), e.FunctionEvaluator(score))
    async with Engine(InlinePool(1)) as engine:
        await engine.submit(space.freeze({"kind": int}))
        other = await engine.submit(space.freeze({"kind": float}))
    assert engine.objective is None
    assert engine.best() is other.model
    assert engine.best("min") is other.model
