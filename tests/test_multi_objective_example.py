"""examples/digits_multi_objective.py, run as a real subprocess at a small size: the
front it prints (accuracy against parameter count, with test accuracies), the parameter
limit, and the run file it leaves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from engine import Objective
from engine.results import open_run
from tests._example_support import EXAMPLES, MARKER, ROOT, marked, split_file

pytest.importorskip("sklearn")

TIMEOUT = 150  # seconds on a loaded 2-core machine (torch imports in two processes)
MAX_PARAMS = 2000


def test_the_example_prints_the_front_with_test_accuracies(tmp_path: Path) -> None:
    data, marker = split_file(tmp_path), uuid.uuid4().hex
    args = ["--trials", "6", "--workers", "1", "--epochs", "1", "--seed", "1",
            "--max-params", str(MAX_PARAMS), "--data", str(data)]
    try:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "digits_multi_objective.py"), *args], cwd=tmp_path,
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
            env={**os.environ, MARKER: marker})
    finally:
        left = marked(marker)
        for process in left:
            process.kill()
    assert done.returncode == 0, done.stdout + done.stderr
    assert left == []
    lines = done.stdout.splitlines()
    counted = re.fullmatch(r"(\d+) models in \d+ s: (\d+) trained, (\d+) over the parameter "
                           r"limit", lines[3])
    assert counted is not None, lines[3]
    total, trained, over = (int(n) for n in counted.groups())
    assert trained == 6  # the models over the limit are off the budget
    assert total == trained + over
    head = lines.index("pareto front: " + lines[4].removeprefix("pareto front: "))
    rows = [line.split() for line in lines[head + 2:-1]]
    assert rows, done.stdout
    accuracies = [float(row[1]) for row in rows]
    params = [float(row[2]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)  # best accuracy first
    assert params == sorted(params, reverse=True)  # on a front: more accurate, bigger
    assert all(p <= MAX_PARAMS for p in params)
    assert all(0.0 <= float(row[3]) <= 1.0 for row in rows)  # the test accuracy

    run = Path(lines[2].removeprefix("run file: "))
    with open_run(run) as results:
        assert results.objectives() == (Objective(name="accuracy", mode="max"),
                                        Objective(name="params", mode="min"))
        front = results.front()
        assert [m.id for m in front] == [int(row[0]) for row in rows]
        assert results.counts().get("invalid", 0) == over
    shown = subprocess.run([sys.executable, "-m", "engine.cli", "show", str(run)],
                           capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert shown.returncode == 0, shown.stderr
    assert f"pareto front: {len(rows)} of 6 trained (max accuracy, min params;" in shown.stdout


def test_the_readme_snippet_prints_the_front_it_shows(tmp_path: Path) -> None:
    from tests.test_readme import README, run, snippets

    (tmp_path / "multi_objective.py").write_text(snippets()["multi_objective.py"])
    printed = run("multi_objective.py", tmp_path)
    section = README.read_text().split("It prints the front", 1)[1]
    shown = section.split("```\n", 2)[1]  # the output block right after the snippet
    assert printed == shown
    with open_run(tmp_path / "front.nasrun") as results:
        assert [m.sample for m in results.front()] == [{"width": 64}, {"width": 16},
                                                       {"width": 4}]
