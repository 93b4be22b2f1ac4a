from __future__ import annotations

import csv
import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from engine import Engine, InlinePool
from engine._progress import Progress, show_progress
from engine.cli import main
from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    MetricReported,
    ModelFailed,
    ModelQueued,
    ModelTrained,
    TrainingStarted,
    decode_json,
)
from engine.store import RunStore
from tests._journal_fixtures import Counter, journal_space

ROOT = Path(__file__).resolve().parents[1]
FINALS = {1: 0.5, 2: 0.9, 3: 0.7, 4: 0.2, 5: 0.8}


def run_events() -> list[Event]:
    """Five trained models, a failed one, one still training; then the engine stops."""
    events: list[Any] = [(EngineStarted, {"pool": "inline", "capacity": 2})]
    for model_id, final in FINALS.items():
        events += [
            (ModelQueued, {"model_id": model_id,
                           "sample": {"width": 8 * model_id, "act": "relu", "ops": [1, 2]}}),
            (TrainingStarted, {"model_id": model_id, "worker": "w0", "attempt": 1}),
            (MetricReported, {"model_id": model_id, "value": final / 2, "step": 1}),
            (ModelTrained, {"model_id": model_id, "final": final, "duration": 1.5})]
    events += [
        (ModelQueued, {"model_id": 6, "sample": {"width": 1, "act": "tanh", "ops": []}}),
        (TrainingStarted, {"model_id": 6, "worker": "w1", "attempt": 1}),
        (ModelFailed, {"model_id": 6, "error_type": "ValueError", "message": "nope",
                       "traceback": "", "attempt": 1}),
        (ModelQueued, {"model_id": 7, "sample": {"width": 2, "act": "tanh", "ops": []}}),
        (TrainingStarted, {"model_id": 7, "worker": "w1", "attempt": 1}),
        (EngineStopped, {"reason": "finished"})]
    return [kind(seq=seq, time=100.0 + 10 * seq, **fields)
            for seq, (kind, fields) in enumerate(events, 1)]


async def write(path: Path, events: list[Event]) -> None:
    store = await RunStore.open(path)
    for event in events:
        store.append(event)
    await store.aclose()


@pytest.fixture
def run(tmp_path: Path) -> Path:
    path = tmp_path / "run.nasrun"
    anyio.run(write, path, run_events())
    return path


def test_show_lists_counts_and_best_models(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"run     {run} (created ")
    assert out[1] == "engine  stopped (finished) at event 27"
    assert out[2] == "models  7: failed 1, trained 5, training 1"
    assert out[4:7] == ["failed models, by reason:", "     1  ValueError: nope  (model 6)",
                        f"  (a model's error, traceback and output: nas-engine show {run} "
                        "--model ID)"]
    assert out[8] == "best 5 of 5 trained (max final metric, the run recorded no objective):"
    assert out[9].split() == ["rank", "id", "final", "attempts", "duration", "sample"]
    assert [line.split()[1] for line in out[10:]] == ["2", "5", "3", "1", "4"]
    assert out[10].split() == ["1", "2", "0.9", "1", "1.5s",
                              '{"width":16,"act":"relu","ops":[1,2]}']
    assert not run.with_name("run.nasrun.lock").exists()  # reading takes no lock


def picky(model: Counter) -> float:
    if model.x in (1, 2, 4):
        raise ValueError("too small")
    if model.x == 3:
        raise KeyError("missing")
    return float(model.x)


async def run_picky(path: Path) -> None:
    async with Engine(InlinePool(2), journal=path) as engine:
        for x in range(1, 7):
            await engine.submit(journal_space(picky).freeze({"x": x}))


def test_show_lists_failure_reasons_with_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "picky.nasrun"
    anyio.run(run_picky, path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "models  6: failed 4, trained 2"
    assert out[3:7] == ["", "failed models, by reason:",
                        "     3  ValueError: too small  (models 1, 2, 4)",
                        "     1  KeyError: 'missing'  (model 3)"]
    assert out[7].startswith(f"  (a model's error, traceback and output: nas-engine show {path}")
    assert [line.split()[1] for line in out[11:]] == ["6", "5"]


@pytest.mark.anyio
async def test_show_model_prints_its_error_traceback_and_kept_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``show --model ID``: the path from a failure reason to the full story."""
    from tests._results_fixtures import failed_loud_run

    path = await failed_loud_run(tmp_path / "loud.nasrun")
    assert main(["show", str(path), "--model", "1"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "model   1: failed, 1 attempt"
    assert lines[1] == 'sample  {"x":1}'
    assert lines[2] == "reason  RuntimeError: failed after 3 lines"
    traceback = text.split("traceback of attempt 1:\n", 1)[1].split("\nstdout of attempt 1:")[0]
    assert "in loud" in traceback
    assert traceback.rstrip().endswith("RuntimeError: failed after 3 lines")
    stdout = text.split("stdout of attempt 1:\n", 1)[1].split("\nstderr of attempt 1:")[0]
    assert stdout.count("line ") == 3
    assert text.split("stderr of attempt 1:\n", 1)[1] == "the end of stderr\n"
    assert main(["show", str(path), "--model", "9"]) == 2
    assert capsys.readouterr().err == f"nas-engine: error: the run {path} has no model 9\n"


def test_show_model_of_a_trained_and_an_outputless_failed_model(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(run), "--model", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "model   2: trained, 1 attempt", 'sample  {"width":16,"act":"relu","ops":[1,2]}',
        "final   0.9"]
    assert main(["show", str(run), "--model", "6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "reason  ValueError: nope"
    assert out[-1].startswith("no output kept: its failed attempts printed nothing")


def test_show_top_and_min_mode(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(run), "--top", "2", "--mode", "min"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[8] == "best 2 of 5 trained (min final metric, --mode):"
    assert [line.split()[1] for line in out[10:]] == ["4", "1"]


def test_export_csv_to_a_file(run: Path, tmp_path: Path) -> None:
    target = tmp_path / "models.csv"
    assert main(["export", str(run), "--format", "csv", "-o", str(target)]) == 0
    with target.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["id"] for row in rows] == ["1", "2", "3", "4", "5", "6", "7"]
    assert rows[1]["final"] == "0.9"
    assert rows[1]["status"] == "trained"
    assert rows[1]["intermediates"] == "[0.45]"
    assert (rows[1]["sample.width"], rows[1]["sample.act"], rows[1]["sample.ops"]) == (
        "16", "relu", "[1,2]")
    assert (rows[5]["status"], rows[5]["final"], rows[5]["reason"]) == (
        "failed", "", "ValueError: nope")


def test_export_jsonl_to_stdout(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run), "--format", "jsonl"]) == 0
    rows = [msgspec.json.decode(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert "blob" not in rows[0]
    assert rows[2]["metrics"] == {"intermediates": [0.35], "final": 0.7}
    assert rows[6]["status"] == "training"


def test_plot_writes_a_png(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "best.png"
    assert main(["plot", str(run), "-o", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out == f"{target}: best-so-far of 5 ranked models\n"


def test_plot_without_matplotlib_says_what_to_install(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main(["plot", str(run), "-o", str(tmp_path / "best.png")]) == 1
    assert capsys.readouterr().err == (
        "nas-engine: error: plotting needs matplotlib: pip install 'nas-engine[plot]' "
        "(or pip install matplotlib)\n")
    assert not (tmp_path / "best.png").exists()


def test_events_prints_json_lines(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", str(run)]) == 0
    events = [decode_json(line) for line in capsys.readouterr().out.splitlines()]
    assert events == run_events()


def test_follow_stops_when_no_process_writes_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "crashed.nasrun"
    anyio.run(write, path, run_events()[:5])  # no engine_stopped: its engine died
    assert main(["events", str(path), "--follow", "--interval", "0.01"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 5
    assert captured.err == (f"nas-engine: no process is writing {path}: stopped following\n")


# Writes two events, then waits for a line on stdin before writing engine_stopped.
WRITER = """
import sys, time, anyio
from engine.events import EngineStarted, EngineStopped, ModelQueued
from engine.store import RunStore
from tests._journal_fixtures import Counter, journal_space

async def main(path):
    store = await RunStore.open(path)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        store.append(EngineStarted(seq=1, time=time.time(), pool="inline", capacity=1))
        store.append(ModelQueued(seq=2, time=time.time(), model_id=1, sample={"a": 1}))
        await store.flushed(2)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        store.append(EngineStopped(seq=3, time=time.time(), reason="finished"))
        await store.flushed(3)
        tg.cancel_scope.cancel()

anyio.run(main, sys.argv[1])
"""


@pytest.mark.anyio
async def test_follow_prints_new_events_until_the_engine_stops(tmp_path: Path) -> None:
    path = tmp_path / "live.nasrun"
    command = [sys.executable, "-m", "engine.cli", "events", str(path), "--follow",
               "--interval", "0.02"]
    async with await anyio.open_process([sys.executable, "-c", WRITER, str(path)],
                                        cwd=ROOT) as writer:
        assert writer.stdout is not None
        assert writer.stdin is not None
        with anyio.fail_after(30):
            assert await BufferedByteReceiveStream(writer.stdout).receive_until(
                b"\n", 100) == b"ready"
        async with await anyio.open_process(command, cwd=ROOT) as follower:
            assert follower.stdout is not None
            lines = BufferedByteReceiveStream(follower.stdout)
            with anyio.fail_after(30):
                first = [decode_json(await lines.receive_until(b"\n", 10_000))
                         for _ in range(2)]
                assert follower.returncode is None  # still following
                await writer.stdin.send(b"go\n")
                last = decode_json(await lines.receive_until(b"\n", 10_000))
                assert await follower.wait() == 0
        assert await writer.wait() == 0
    assert [type(e) for e in [*first, last]] == [EngineStarted, ModelQueued, EngineStopped]


def test_a_bad_run_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a run\n")
    assert main(["show", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"nas-engine: error: {path} is not a nas-engine run file (not an SQLite database): "
        "pick another path\n")
    assert path.read_text() == "not a run\n"
    assert main(["events", str(tmp_path / "missing.nasrun")]) == 2
    assert capsys.readouterr().err == (
        f"nas-engine: error: no run file at {tmp_path / 'missing.nasrun'}: check the path\n")


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "engine.cli", "--version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"nas-engine {importlib.metadata.version('nas-engine')}\n"


# Runs the CLI's help, then says which heavy modules it imported.
HELP = """
import contextlib, sys
from engine.cli import main
with contextlib.suppress(SystemExit), contextlib.redirect_stdout(sys.stderr):
    main(sys.argv[1:])
print(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "ray", "matplotlib"}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["show", "--help"],
                                  ["export", "--help"], ["plot", "--help"],
                                  ["events", "--help"]])
def test_help_answers_without_importing_torch(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", HELP, *argv], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "usage: nas-engine" in result.stderr or "nas-engine 0" in result.stderr
    assert result.stdout == "[]\n"


def test_bad_arguments_exit_with_usage(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", str(run)])
    assert info.value.code == 2
    assert "the following arguments are required: --format" in capsys.readouterr().err


def test_the_console_script_module_runs(run: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "engine.cli", "show", str(run), "--top", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split()[:3] == ["1", "2", "0.9"]


def test_progress_counts_events() -> None:
    progress = Progress(total=10)
    for event in run_events():
        progress.update(event)
    assert progress.line().startswith(
        "trials 6/10 done (1 failed) | 1 running | 0 queued | best 0.9 (max, #2) | 0m")
    low = Progress(mode="min")
    for event in run_events()[:9]:
        low.update(event)
    assert low.line().startswith(
        "trials 2 done (0 failed) | 0 running | 0 queued | best 0.5 (min, #1)")


async def feed(events: list[Event], out: Any) -> Progress:
    send, receive = anyio.create_memory_object_stream[Event](len(events))
    with send:
        for event in events:
            send.send_nowait(event)
    with receive:
        return await show_progress(receive, stream=out, total=len(FINALS) + 2, interval=0)


@pytest.mark.anyio
async def test_progress_draws_on_a_terminal() -> None:
    leader, follower = os.openpty()
    with os.fdopen(leader, "rb", buffering=0) as screen, \
            os.fdopen(follower, "w", encoding="utf-8") as terminal:
        progress = await feed(run_events(), terminal)
        drawn = b""
        while not drawn.endswith(b"\n"):
            drawn += screen.read(65536)
    assert progress.done == 6
    text = drawn.decode()
    assert text.count("\r\x1b[2K") == len(run_events()) + 1  # each event, then the last line
    assert text.rsplit("\r\x1b[2K", 1)[1].startswith("trials 6/7 done (1 failed) | 1 running")


@pytest.mark.anyio
async def test_progress_draws_nothing_elsewhere() -> None:
    out = io.StringIO()
    progress = await feed(run_events(), out)
    assert out.getvalue() == ""
    assert progress.best == (0.9, 2)


def test_best_so_far_follows_the_order_trials_finished(run: Path) -> None:
    from engine.cli._plot import best_so_far
    from engine.store import RunReader

    with RunReader(run) as reader:
        models = reader.models()
    assert [(p[0], p[2], p[3]) for p in best_so_far(models, "max")] == [
        (1, 0.5, 0.5), (2, 0.9, 0.9), (3, 0.7, 0.9), (4, 0.2, 0.9), (5, 0.8, 0.9)]
    assert [p[3] for p in best_so_far(models, "min")] == [0.5, 0.5, 0.5, 0.2, 0.2]
    assert best_so_far(models, "max")[0][1] == 30.0  # model 1 ended 30 s after it was queued


def test_show_reads_a_run_in_a_read_only_directory(run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    shutil.copy(run, folder / "run.nasrun")  # closed cleanly: no -wal or -shm beside it
    folder.chmod(0o555)
    command = [sys.executable, "-m", "engine.cli", "show", str(folder / "run.nasrun")]
    if os.geteuid() == 0:  # root writes anywhere: drop its powers in a user namespace
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare(1)")
        command = ["unshare", "--user", *command]
    tmp_path.chmod(0o755)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2] == "models  7: failed 1, trained 5, training 1"
    assert sorted(p.name for p in folder.iterdir()) == ["run.nasrun"]
