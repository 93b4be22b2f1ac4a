"""Run files with dict metrics and readers of other versions: a file written now is
refused by name (its schema version) by a nas-engine older than dict metrics, a file of
the older layout still opens here and is brought to the current version on resume, and
a value this version cannot decode is a RunFileError naming its event or model."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine, InlinePool, ModelStatus, Objective
from engine.results import open_run
from engine.store import RunFileError, RunReader
from engine.store._schema import SCHEMA_VERSION
from tests._objective_spaces import pair_space

ROOT = Path(__file__).resolve().parent.parent
# The commit before "Several metrics per model": its readers know no dict metric, and
# read run schema versions up to 2.
BEFORE_DICTS = "ed1514f1cf19eb35f79b65455fffb45decfd663f"
ACC, SIZE = Objective(name="accuracy", mode="max"), Objective(name="size", mode="min")
FINAL = {"accuracy": 0.6, "size": 9.0}  # pair_space's final for x = 3


async def dict_run(path: Path) -> None:
    """A run whose one model reports dicts (intermediates and final)."""
    async with Engine(InlinePool(1), journal=path) as engine:
        engine.set_objectives([ACC, SIZE])
        handle = await engine.submit(pair_space().freeze({"x": 3}))
        assert (await handle).status is ModelStatus.Trained


def as_schema_2(path: Path) -> None:
    """Give ``path`` the layout of a version-2 file (as the writers of version 2 with
    dict metrics left it): no ``checkpoint`` column, user_version 2."""
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE models DROP COLUMN checkpoint")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


def old_nas_engine(tmp_path: Path) -> Path:
    """The ``engine`` package of :data:`BEFORE_DICTS`, from this repository's history."""
    folder = tmp_path / "old"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_DICTS, "engine"],
                             capture_output=True, check=False) if shutil.which("git") else None
    if archive is None or archive.returncode != 0:
        pytest.skip(f"this checkout lacks the history of {BEFORE_DICTS[:7]} (a shallow "
                    "clone or an export)")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def show_with(old: Path, run: Path) -> subprocess.CompletedProcess[str]:
    """``nas-engine show run`` of the old version, in a process of its own."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from engine.cli import main; "
            "sys.exit(main(['show', sys.argv[2]]))")
    return subprocess.run([sys.executable, "-c", code, str(old), str(run)], cwd=old,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.anyio
async def test_a_nas_engine_older_than_dict_metrics_refuses_a_file_with_them_by_name(
        tmp_path: Path) -> None:
    old = old_nas_engine(tmp_path)
    run = tmp_path / "run.nasrun"
    await dict_run(run)
    with RunReader(run) as reader:
        assert reader.version == SCHEMA_VERSION == 3
    shown = show_with(old, run)
    assert shown.returncode != 0
    assert ("was written by a newer nas-engine (run schema version 3; this one reads up "
            "to 2): upgrade nas-engine to open it") in shown.stderr + shown.stdout
    assert "Traceback" not in shown.stderr
    # The same run in the layout of version 2, which did not announce its dicts: that
    # reader fails on the dict instead of refusing the file.
    as_schema_2(run)
    unannounced = show_with(old, run)
    assert "Traceback" in unannounced.stderr
    assert "ValidationError" in unannounced.stderr


@pytest.mark.anyio
async def test_a_version_2_file_with_dict_metrics_opens_and_resumes_as_version_3(
        tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    await dict_run(run)
    as_schema_2(run)
    with RunReader(run) as reader:
        assert reader.version == 2
        assert [m.metrics.final for m in reader.models()] == [FINAL]
    with open_run(run) as results:
        assert [m.final for m in results.best()] == [FINAL]
    async with Engine(InlinePool(1), journal=run) as engine:
        assert [h.model.metrics.final for h in engine.handles()] == [FINAL]
    with RunReader(run) as reader:
        assert reader.version == SCHEMA_VERSION
        assert [m.metrics.final for m in reader.models()] == [FINAL]


def tamper(run: Path, sql: str) -> None:
    conn = sqlite3.connect(run)
    conn.execute(sql)
    conn.commit()
    conn.close()


@pytest.mark.anyio
async def test_a_value_of_an_unknown_shape_is_a_run_file_error_naming_it(
        tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    await dict_run(run)
    # As a newer writer might store a final that is not a dict of numbers.
    tamper(run, "UPDATE events SET data = replace(data, '\"size\":9.0', '\"size\":[9.0]') "
                "WHERE kind = 'trained'")
    tamper(run, "UPDATE models SET final = '[0.6, 9.0]'")
    with RunReader(run) as reader:
        seq = next(s for s, kind, _ in reader.event_rows() if kind == "trained")
        with pytest.raises(RunFileError, match=rf"event {seq} \('trained'\) does not read as "
                           r"a 'trained' event of this nas-engine \(.*\$\.final.*upgrade"):
            list(reader.events())
        with pytest.raises(RunFileError, match=r"final of model 1 is '\[0\.6, 9\.0\]', "
                           r"neither a number nor a JSON object of named numbers"):
            reader.models()
    with pytest.raises(RunFileError, match=rf"event {seq} \('trained'\)"):
        open_run(run)
