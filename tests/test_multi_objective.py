"""Several metrics per model: dicts reported as intermediates and finals, the run's
objectives (names and directions, kept in the run file), and every reader of a run
(events, journal, resume, results, pandas, CLI, progress line, dashboard feed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import Engine, InlinePool, ModelStatus, Objective, ProcessPool
from engine._objective import (
    META_KEY,
    OBJECTIVES_KEY,
    missing_objective,
    objectives_from_meta,
    objectives_meta,
    score,
)
from engine._progress import Progress
from engine.cli import main
from engine.events import MetricReported, ModelTrained
from engine.results import open_run
from engine.store import RunReader
from engine.web._feed import Cursor, Feed
from tests._objective_spaces import pair_space, reports_final

pytestmark = pytest.mark.anyio

ACC, SIZE = Objective(name="accuracy", mode="max"), Objective(name="size", mode="min")


async def _run_pairs(path: Path, xs: list[int], **kwargs: object) -> list[ModelStatus]:
    space = pair_space(**kwargs)  # type: ignore[arg-type]
    async with Engine(InlinePool(1), journal=path) as engine:
        engine.set_objectives([ACC, SIZE])
        handles = [await engine.submit(space.freeze({"x": x})) for x in xs]
        return [(await h).status for h in handles]


async def test_dict_metrics_reach_the_model_events_and_best(tmp_path: Path) -> None:
    space = pair_space()
    async with Engine(InlinePool(1), journal=tmp_path / "run.nasrun") as engine:
        events = engine.subscribe()
        assert engine.set_objectives([ACC, SIZE]) == (ACC, SIZE)
        assert engine.objective == ACC
        assert engine.objectives == (ACC, SIZE)
        handles = [await engine.submit(space.freeze({"x": x})) for x in (1, 3, 2)]
        models = [await h for h in handles]
        best = engine.best()
    assert models[1].metrics.final == {"accuracy": 0.6, "size": 9.0}
    assert models[1].metrics.intermediates == [{"accuracy": 0.3, "size": 3.0},
                                               {"accuracy": 0.6, "size": 3.0}]
    assert best is models[1]  # ranked by the first objective
    seen = [e async for e in events]
    metrics = [e.value for e in seen if isinstance(e, MetricReported) and e.model_id == 2]
    assert metrics == models[1].metrics.intermediates
    finals = {e.model_id: e.final for e in seen if isinstance(e, ModelTrained)}
    assert finals[2] == {"accuracy": 0.6, "size": 9.0}


async def test_the_run_file_keeps_dicts_and_objectives_across_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    assert await _run_pairs(path, [1, 4]) == [ModelStatus.Trained] * 2
    with RunReader(path) as reader:
        meta = reader.meta()
        stored = reader.models()
    assert objectives_from_meta(meta) == (ACC, SIZE)
    assert json.loads(meta[META_KEY]) == {"name": "accuracy", "mode": "max"}
    assert stored[1].metrics.final == {"accuracy": 0.8, "size": 16.0}
    assert stored[1].metrics.intermediates[-1] == {"accuracy": 0.8, "size": 4.0}
    async with Engine(InlinePool(1), journal=path) as engine:
        assert engine.objectives == (ACC, SIZE)
        restored = {h.model_id: h.model for h in engine.handles()}
        assert restored[2].metrics.final == {"accuracy": 0.8, "size": 16.0}
        assert engine.best() is restored[2]
        with pytest.raises(ValueError, match=r"optimizes max accuracy, min size \(recorded in"):
            engine.set_objectives([SIZE, ACC])
        engine.set_objective("max")  # a single-objective strategy: agrees with the first
        with pytest.raises(ValueError, match="this run optimizes max accuracy"):
            engine.set_objective("min")


async def test_results_and_pandas_have_one_column_per_metric(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    path = tmp_path / "run.nasrun"
    await _run_pairs(path, [2, 5])
    with open_run(path) as run:
        assert run.objectives() == (ACC, SIZE)
        assert run.model(1).final == {"accuracy": 0.4, "size": 4.0}
        assert run.model(1).curve[0] == (1, {"accuracy": 0.2, "size": 2.0})
        assert [m.id for m in run.best()] == [2, 1]  # by accuracy, the first objective
        assert run.metrics()[0].value == {"accuracy": 0.2, "size": 2.0}
        models = run.to_pandas()
        points = run.to_pandas("metrics")
    assert isinstance(models, pandas.DataFrame)
    assert list(models["final.accuracy"]) == [0.4, 1.0]
    assert list(models["final.size"]) == [4.0, 25.0]
    assert list(models["final"]) == [0.4, 1.0]  # the first objective's value
    assert list(points["value.size"]) == [2.0, 2.0, 5.0, 5.0]


async def test_a_missing_objective_fails_the_model_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    statuses = await _run_pairs(path, [1], fn=reports_final, value={"accuracy": 0.5})
    assert statuses == [ModelStatus.Failed]
    statuses = await _run_pairs(tmp_path / "b.nasrun", [1], fn=reports_final, value=0.5)
    assert statuses == [ModelStatus.Failed]
    with RunReader(path) as reader:
        failure = reader.last_failure(1)
    assert failure is not None
    assert failure.error_type == "MissingObjective"
    assert "lack the objective 'size'" in failure.message
    with RunReader(tmp_path / "b.nasrun") as reader:
        failure = reader.last_failure(1)
    assert failure is not None
    assert "reported one number (0.5)" in failure.message


async def test_a_process_worker_sends_dicts(tmp_path: Path) -> None:
    space = pair_space()
    async with Engine(ProcessPool(1), journal=tmp_path / "run.nasrun") as engine:
        engine.set_objectives([ACC, SIZE])
        model = await (await engine.submit(space.freeze({"x": 5})))
    assert model.status is ModelStatus.Trained
    assert model.metrics.final == {"accuracy": 1.0, "size": 25.0}
    assert model.metrics.intermediates[0] == {"accuracy": 0.5, "size": 5.0}


async def test_one_objective_behaves_as_set_objective(tmp_path: Path) -> None:
    async with Engine(InlinePool(1), journal=tmp_path / "run.nasrun") as engine:
        single = engine.set_objectives([Objective(name="metric", mode="min")])
        assert single == (Objective(name="metric", mode="min"),)
        assert engine.set_objective("min") == single[0]  # the same declaration: no-op
    with RunReader(tmp_path / "run.nasrun") as reader:
        meta = reader.meta()
    assert OBJECTIVES_KEY not in meta  # exactly what set_objective writes
    assert json.loads(meta[META_KEY]) == {"name": "metric", "mode": "min"}


@pytest.mark.parametrize(
    ("objectives", "error", "match"),
    [
        ([], ValueError, "needs at least one Objective"),
        ([ACC, Objective(name="accuracy", mode="min")], ValueError,
         "'accuracy' is declared twice"),
        (["accuracy"], TypeError, "must be an Objective.*got str 'accuracy'"),
        (ACC, TypeError, "takes a list of Objective"),
        ([Objective(name="", mode="max")], ValueError, "non-empty str"),
    ],
)
async def test_bad_objectives_are_clear_errors(objectives: object, error: type[Exception],
                                               match: str) -> None:
    async with Engine(InlinePool(1)) as engine:
        with pytest.raises(error, match=match):
            engine.set_objectives(objectives)  # type: ignore[arg-type]
        assert engine.objectives == ()


def test_score_and_missing_objective() -> None:
    assert score({"a": 1.0, "b": 2.0}, Objective(name="b")) == 2.0
    assert score({"a": 1.0, "b": 2.0}, None) == 1.0  # no objective: the first metric
    assert score({"a": 1.0}, Objective(name="c")) is None
    assert score(3.0, Objective(name="c")) == 3.0
    assert missing_objective({"accuracy": 1.0, "size": 2.0}, (ACC, SIZE)) is None
    assert missing_objective(0.5, (ACC,)) is None
    assert objectives_from_meta(objectives_meta((ACC, SIZE))) == (ACC, SIZE)
    with pytest.raises(ValueError, match="'objectives' meta value"):
        objectives_from_meta({OBJECTIVES_KEY: "[1, 2]"})


async def test_cli_progress_and_dashboard_show_dicts(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.nasrun"
    await _run_pairs(path, [1, 3])
    assert main(["show", str(path), "--mode", "max"]) == 0  # one direction: by the first
    shown = capsys.readouterr().out
    assert "accuracy=0.6 size=9" in shown
    assert main(["show", str(path), "--model", "2"]) == 0
    assert "final   accuracy=0.6 size=9" in capsys.readouterr().out
    assert main(["export", "--format", "csv", str(path)]) == 0
    assert '"{""accuracy"":0.6,""size"":9.0}"' in capsys.readouterr().out
    progress = Progress()
    with open_run(path) as run:
        for event in run.events():
            progress.update(event)
    assert progress.best == (0.6, 2)  # the first metric of the dicts
    feed = Feed(path, "max")
    try:
        snapshot = json.loads(feed.snapshot(Cursor()))
    finally:
        feed.close()
    row = next(m for m in snapshot["models"] if m["id"] == 2)
    assert (row["final"], row["metrics"]) == (0.6, {"accuracy": 0.6, "size": 9.0})
    assert snapshot["curves"]["2"][-1] == [2, 0.6]


async def test_a_scheduler_hears_dict_intermediates_by_the_first_objective() -> None:
    from strategies import ASHA, RandomSearch, search

    async with Engine(InlinePool(1), max_trials=6) as engine:
        engine.set_objectives([ACC, SIZE])
        scheduler = ASHA(RandomSearch(0), min_resource=1, max_resource=3)
        await search(pair_space(steps=3), scheduler, engine)
        models = [h.model for h in engine.handles()]
    assert len(models) == 6
    heard = [m.metrics.intermediates[0]["accuracy"] for m in models]  # type: ignore[index]
    assert scheduler.recorded[1] == heard  # the first objective's value at rung 1
    stopped = [m for m in models if m.metrics.stopped_at is not None]
    assert stopped  # ASHA ranked them by accuracy at its rungs
    for model in stopped:  # stopped at a rung: the dict reported there is its final
        assert model.metrics.final == model.metrics.intermediates[-1]
