"""examples/digits_search.py --strategy asha, run as a real subprocess at a small size:
ASHA around evolution stops models at epoch 1 (the one rung below 3 epochs), the run
file keeps what each reported, and a wall-time budget (--seconds) ends the search."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests._example_support import split_file
from tests.test_examples import EXAMPLES, Script, _accuracies, _exported

pytest.importorskip("sklearn")


def test_asha_stops_models_at_its_rung_and_ranks_full_trainings_first(
        tmp_path: Path) -> None:
    data = split_file(tmp_path)
    script = Script("digits_search", ["--strategy", "asha", "--trials", "10", "--epochs", "3",
                                      "--workers", "2", "--seed", "1", "--data", str(data)],
                    tmp_path)
    out, _ = script.finish()
    lines = out.splitlines()
    assert lines[1] == "search: asha, 10 trials, 2 workers, 3 epochs each, seed 1"
    summary = re.fullmatch(r"10 models in \d+ s: 10 trained \((\d+) stopped early\)", lines[3])
    assert summary is not None, lines[3]
    stopped = int(summary.group(1))
    assert 1 <= stopped < 10

    models = _exported(Path(lines[2].removeprefix("run file: ")))
    reports = sorted(len(m["metrics"]["intermediates"]) for m in models)
    assert reports == [1] * stopped + [3] * (10 - stopped)  # stopped at the rung, or trained on
    for m in models:
        assert m["metrics"]["final"] == pytest.approx(m["metrics"]["intermediates"][-1])
        assert (m["metrics"].get("stopped_at") == 1) == (len(m["metrics"]["intermediates"]) == 1)

    best = next(line for line in lines if line.startswith("best  model #"))
    searched, again, test = _accuracies(lines[lines.index(best) + 1])
    full = [m["metrics"]["final"] for m in models if m["metrics"].get("stopped_at") is None]
    assert searched == pytest.approx(max(full), abs=5e-4)  # a full training ranks first
    assert searched == again
    assert test > 0.5
    # The worst ranks last for its fidelity: a model stopped at the rung, and it says so
    # (the top five may all be full trainings, so they need not show one).
    worst = next(line for line in lines if line.startswith("worst model #"))
    assert " at step 1 in the search (stopped early);" in lines[lines.index(worst) + 1]


def test_a_wall_time_budget_ends_the_search(tmp_path: Path) -> None:
    data = split_file(tmp_path)
    script = Script("digits_search", ["--strategy", "asha", "--trials", "1000", "--seconds",
                                      "12", "--epochs", "2", "--workers", "1", "--seed", "2",
                                      "--data", str(data)], tmp_path)
    out, _ = script.finish()
    lines = out.splitlines()
    assert lines[1] == ("search: asha, 1000 trials, at most 12 s, 1 workers, 2 epochs each, "
                        "seed 2")
    count = int(lines[3].split()[0])
    assert 1 <= count < 1000
    assert "trained" in lines[3]


def test_asha_rejects_deterministic(capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location("digits_search", EXAMPLES / "digits_search.py")
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit):
        script.parse_args(["--strategy", "asha", "--deterministic"])
    assert "--deterministic does not apply to --strategy asha" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.parse_args(["--seconds", "0"])
    assert "--seconds must be more than 0, got 0.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.parse_args(["--population", "0"])
    assert "--population must be at least 1, got 0" in capsys.readouterr().err
    asha = script.make_strategy("asha", 0, 1000, epochs=9, population=10)
    assert (asha.proposer.population_size, asha.rungs) == (10, (1, 3))
    assert script.make_strategy("evolution", 0, 1000).population_size == 250
