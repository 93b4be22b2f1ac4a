"""engine.results: a run's models, metrics and events as records and DataFrames, folded
from the events of real run files (written by a RunStore or by a real engine)."""

from __future__ import annotations

import math
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

import engine as e
from engine.cli import main
from engine.results import MetricPoint, open_run
from engine.space import ModelStatus
from engine.store import RunFileError, RunStore
from tests._results_fixtures import (
    TRACEBACK,
    curve_or_fail,
    failed_loud_run,
    grid_space,
    run_events,
    write,
    write_run,
)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run.nasrun")


def test_models_are_folded_from_the_events(run: Path) -> None:
    with open_run(run) as results:
        models = results.models()
        assert [m.id for m in models] == [1, 2, 3, 4, 5, 6]
        first = models[0]
        assert (first.sample, first.status, first.final) == ({"x": 1, "act": "relu"},
                                                              ModelStatus.Trained, 0.5)
        assert first.curve == [(1, 0.5 / 3), (2, 0.5 * 2 / 3), (3, 0.5)]
        assert (first.steps, first.latest, first.duration, first.worker) == (3, 0.5, 1.5, "w0")
        assert results.counts() == {"trained": 4, "failed": 1, "training": 1}
        assert [m.id for m in results.best("max")] == [2, 3, 1, 4]
        assert [m.id for m in results.best("min")] == [4, 1, 3, 2]
        assert results.stopped is not None
        assert results.stopped.reason == "finished"
        assert results.started is not None
        assert results.started.capacity == 2
        assert not results.writing


def test_a_retried_model_keeps_its_latest_attempt(run: Path) -> None:
    with open_run(run) as results:
        retried = results.model(4)
        assert (retried.status, retried.attempts, retried.worker) == (ModelStatus.Trained, 2, "w0")
        assert retried.curve == [(1, 0.3)]  # the second attempt's curve only
        assert retried.reason is None
        assert retried.error_type == "OSError"  # the failure before the retry stays known


def test_a_failed_model_carries_its_error(run: Path) -> None:
    with open_run(run) as results:
        failed = results.model(5)
        assert failed.status is ModelStatus.Failed
        assert (failed.error_type, failed.message, failed.traceback) == ("ValueError", "nope",
                                                                          TRACEBACK)
        assert failed.reason == "ValueError: nope"
        with pytest.raises(KeyError, match="has no model 99"):
            results.model(99)


def test_metrics_and_events_cover_every_attempt(run: Path) -> None:
    with open_run(run) as results:
        points = [p for p in results.metrics() if p.model_id == 4]
        assert [(p.attempt, p.value) for p in points] == [(1, 0.1), (2, 0.3)]
        assert isinstance(points[0], MetricPoint)
        events = list(results.events())
        assert events == run_events()
        assert list(results.events(3, 4)) == run_events()[2:4]


@pytest.mark.anyio
async def test_refresh_folds_only_new_events(tmp_path: Path) -> None:
    path, events = tmp_path / "live.nasrun", run_events(stop=False)
    store = await RunStore.open(path)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        for event in events[:5]:
            store.append(event)
        await store.flushed(5)
        with open_run(path) as results:
            assert results.writing
            assert results.model(1).status is ModelStatus.Training
            assert results.refresh() == 0
            for event in events[5:]:
                store.append(event)
            await store.flushed(len(events))
            assert results.refresh() == len(events) - 5
            assert results.model(1).status is ModelStatus.Trained
            assert results.model(6).latest == 0.2
            assert results.seq == len(events)
        await store.aclose()


@pytest.mark.anyio
async def test_records_of_a_real_engine_run(tmp_path: Path) -> None:
    path, space = tmp_path / "engine.nasrun", grid_space(curve_or_fail, fail=2, steps=4)
    async with e.Engine(e.InlinePool(2), journal=path) as engine:
        handles = [await engine.submit(space.freeze({"x": x, "act": "relu"})) for x in range(4)]
        for handle in handles:
            await handle
    with open_run(path) as results:
        models = results.models()
        assert [m.status for m in models] == [ModelStatus.Trained] * 2 + [
            ModelStatus.Failed, ModelStatus.Trained]
        assert [m.final for m in models] == [0.0, 1.0, None, 3.0]
        assert [m.steps for m in models] == [4, 4, 4, 4]
        failed = models[2]
        assert failed.error_type == "ValueError"
        assert failed.message == "x=2 does not fit"
        assert failed.traceback is not None
        assert "curve_or_fail" in failed.traceback
        assert results.stopped is not None
        assert results.stopped.reason == "finished"


def test_bad_paths_get_the_same_error_as_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in (tmp_path / "missing.nasrun", tmp_path / "nodir" / "x.nasrun"):
        with pytest.raises(RunFileError) as caught:
            open_run(bad)
        assert main(["show", str(bad)]) == 2
        assert capsys.readouterr().err == f"nas-engine: error: {caught.value}\n"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(RunFileError, match="not a"):
        open_run(text)


def test_to_pandas_frames(run: Path) -> None:
    pytest.importorskip("pandas")
    with open_run(run) as results:
        models = results.to_pandas()
        assert list(models["id"]) == [1, 2, 3, 4, 5, 6]
        assert list(models["sample.x"]) == [1, 2, 3, 4, 5, 6]
        assert list(models["status"])[:2] == ["trained", "trained"]
        assert list(models["steps"]) == [3, 3, 3, 1, 0, 1]
        metrics = results.to_pandas("metrics")
        assert len(metrics) == 12
        assert list(metrics.columns) == [
            "model_id", "attempt", "step", "value", "time"]
        events = results.to_pandas("events")
        assert list(events["seq"]) == list(range(1, len(run_events()) + 1))
        assert events["kind"].iloc[0] == "engine_started"
        with pytest.raises(ValueError, match="unknown table 'trials'"):
            results.to_pandas("trials")  # type: ignore[arg-type]


def test_to_pandas_without_pandas_names_the_extra(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an absent package looks like
    with open_run(run) as results, pytest.raises(ImportError, match=r"nas-engine\[results\]"):
        results.to_pandas()


def test_export_parquet(run: Path, tmp_path: Path) -> None:
    parquet = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "models.parquet"
    assert main(["export", str(run), "--format", "parquet", "-o", str(out)]) == 0
    table = parquet.read_table(out).to_pylist()
    assert [row["id"] for row in table] == [1, 2, 3, 4, 5, 6]
    assert table[0]["sample"] == '{"x":1,"act":"relu"}'
    assert table[0]["curve_steps"] == [1, 2, 3]
    assert table[4]["error_type"] == "ValueError"
    assert table[4]["final"] is None


def test_export_parquet_needs_a_file_and_pyarrow(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["export", str(run), "--format", "parquet"]) == 2
    assert "give it with -o FILE" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    out = tmp_path / "models.parquet"
    assert main(["export", str(run), "--format", "parquet", "-o", str(out)]) == 1
    assert "nas-engine[results]" in capsys.readouterr().err
    assert not out.exists()




@pytest.mark.anyio
async def test_a_run_with_nan_metrics_reads_back_as_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A diverged trial's NaN (a pool's reporter passes it as it is) is journaled and read
    back as NaN by the reader, the results API and ``nas-engine``, not as null."""
    from engine.events import MetricReported, decode_json
    from engine.store import RunReader
    from engine.testing import MockPool

    path, space = tmp_path / "nan.nasrun", grid_space(curve_or_fail)
    async with e.Engine(MockPool(lambda model: math.nan), journal=path) as engine:
        await (await engine.submit(space.freeze({"x": 1, "act": "relu"})))
    events = [*run_events()[:5],
              MetricReported(seq=6, time=106.0, model_id=1, value=-math.inf, step=4)]
    await write(tmp_path / "metric.nasrun", events)
    with RunReader(path) as reader:
        assert math.isnan(reader.models()[0].metrics.final)  # type: ignore[arg-type]
        assert math.isnan(next(ev.final for ev in reader.events() if ev.kind == "trained"))
    with open_run(path) as results:
        assert math.isnan(results.model(1).final)  # type: ignore[arg-type]
        assert results.model(1).status is ModelStatus.Trained
    with open_run(tmp_path / "metric.nasrun") as results:
        assert results.model(1).curve[-1] == (4, -math.inf)
        assert results.metrics()[-1].value == -math.inf
    with RunReader(tmp_path / "metric.nasrun") as reader:
        assert reader.models()[0].metrics.intermediates[-1] == -math.inf
    assert main(["events", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert math.isnan(next(ev.final for ev in map(decode_json, lines) if ev.kind == "trained"))
    assert main(["show", str(path)]) == 0
    assert "nan" in capsys.readouterr().out


def test_a_null_metric_of_an_older_run_reads_as_nan(tmp_path: Path) -> None:
    """Runs written before the codec spelled NaN hold null in its place."""
    path = write_run(tmp_path / "old.nasrun")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET data = replace(data, '\"value\":0.5', '\"value\":null')"
                     " WHERE seq = 6")
        assert conn.execute("SELECT data FROM events WHERE seq = 6").fetchone()[0].count("null")
    conn.close()
    with open_run(path) as results:
        assert math.isnan(results.model(1).curve[-1][1])
        assert math.isnan(results.metrics()[2].value)


@pytest.mark.anyio
async def test_a_failed_model_carries_its_kept_output(tmp_path: Path) -> None:
    """The run file keeps a failed trial's full output; its record shows it."""
    path = await failed_loud_run(tmp_path / "loud.nasrun")
    with open_run(path) as results:
        model = results.model(1)
        assert model.status is ModelStatus.Failed
        assert model.message == "failed after 3 lines"
        assert set(model.output) == {"stdout", "stderr"}
        assert model.output["stdout"].splitlines()[-1].startswith("line 00000002 ")
        assert model.output["stdout"].count("line ") == 3
        assert model.output["stderr"].strip().endswith("the end of stderr")
    await write(tmp_path / "store.nasrun", run_events())
    with open_run(tmp_path / "store.nasrun") as results:
        assert results.model(5).output == {}  # failed, but the file kept no output


@pytest.mark.anyio
async def test_the_run_file_records_the_budget_for_the_dashboard(tmp_path: Path) -> None:
    """The dashboard's progress bar reads max_trials from the run's meta."""
    path, space = tmp_path / "budget.nasrun", grid_space(curve_or_fail, fail=9, steps=1)
    async with e.Engine(e.InlinePool(1), journal=path, max_trials=5) as engine:
        await (await engine.submit(space.freeze({"x": 1, "act": "relu"})))
    with open_run(path) as results:
        assert results.meta()["max_trials"] == "5"
