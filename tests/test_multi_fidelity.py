"""benchmarks/multi_fidelity.py: its registry of methods and its report, on a small
table of curves (every depth-1 architecture of the digits space, one seed)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from test_schedulers_simulated import write_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import multi_fidelity as mf
from _simulated import arch_key

from strategies import RandomSearch

ISSUE_METHODS = ("random", "evolution", "asha-random", "asha-evolution", "median-random",
                 "median-evolution", "optuna-sha", "optuna-hyperband")


def test_the_registry_holds_the_issue_methods_and_one_line_adds_one(tmp_path: Path) -> None:
    assert set(ISSUE_METHODS) <= set(mf.METHODS)
    table = write_table(tmp_path / "t.jsonl.gz")
    setup = mf.Setup(table, 2, 3 * table.full_seconds)
    added = mf.engine_method(lambda setup, seed: RandomSearch(seed + 1))
    picks, trials, simulated = added.run(setup, 0)
    assert added.engine
    assert picks
    assert trials >= len(picks)
    assert simulated <= setup.horizon


SURROGATE_METHODS = ("asha-bayes-opt", "asha-model-based", "asha-promotion-model-based")
HYPERBAND_METHODS = ("hyperband", "hyperband-promotion", "hyperband-bayes-opt",
                     "hyperband-model-based", "hyperband-promotion-model-based")


@pytest.mark.parametrize("name", ISSUE_METHODS + SURROGATE_METHODS + HYPERBAND_METHODS)
def test_each_method_searches_within_the_horizon(tmp_path: Path, name: str) -> None:
    if name.startswith("optuna-"):
        pytest.importorskip("optuna")
    # cut to the depth it covers, as main() does: Optuna's TPE under HyperbandPruner's
    # default "auto" brackets can keep proposing architectures a partial table lacks
    table = write_table(tmp_path / "t.jsonl.gz").restricted(1)
    setup = mf.Setup(table, 4, 3 * table.full_seconds)
    picks, trials, simulated = mf.METHODS[name].run(setup, 0)
    assert picks
    assert len(picks) <= trials
    assert all(end <= setup.horizon for end, *_ in picks)
    assert 0 < simulated <= setup.horizon
    for _, sample, metric, fidelity in picks:
        (accuracies, _), = table.curves[arch_key(sample)]
        steps = table.epochs if fidelity == math.inf else int(fidelity)
        assert metric == accuracies[steps - 1]  # what the table says at that epoch
    if name in ("random", "evolution"):
        assert all(p[3] == math.inf for p in picks)  # full trainings only
    if (name.startswith(("asha-", "hyperband")) and "promotion" not in name) \
            or name.startswith("optuna-"):
        assert any(p[3] != math.inf for p in picks)  # some stopped early


def test_the_report_has_a_line_per_method_and_budget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table_path = tmp_path / "t.jsonl.gz"
    write_table(table_path)
    mf.main(["--table", str(table_path), "--seeds", "2", "--methods", "random,asha-random"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["figure"] == "table"
    assert "seeds 0-19 are reported" in lines[0]["tuning"]
    assert lines[0]["settings"]["eta"] == mf.ETA
    rows = [(line["method"], line["budget"]) for line in lines if "method" in line]
    assert rows == [(m, b) for m in ("random", "asha-random") for b in mf.BUDGETS]
    for line in lines[1:-1]:
        assert line["seeds"] == 2
        assert line["regret_mean"] >= 0
        assert line["regret_std"] >= 0
    assert lines[-1]["figure"] == "simulated_speedup"
    assert lines[-1]["value"] > 0


def test_unknown_methods_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        mf.main(["--methods", "random,asha-nope"])
    assert "asha-nope" in capsys.readouterr().err


def test_a_partial_table_is_searched_in_the_depths_it_covers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = write_table(tmp_path / "t.jsonl.gz")  # every depth-1 architecture, no deeper
    assert table.complete_depth == 1
    cut = table.restricted(1)
    assert (len(cut.curves), cut.max_depth, cut.best_mean) == (20, 1, table.best_mean)
    space = mf.digits_labels_space(1)
    assert sorted(space.simplify()) == ["depth", "op1", "width"]
    # every sample of that space is in the table: no invalid model, no wasted proposal
    picks, trials, _ = mf.run_ours(lambda seed: RandomSearch(seed), cut, 0, 2, 1e9)
    assert trials == len(picks) == 20
    del table.curves[next(iter(table.curves))]
    assert table.complete_depth == 0

    mf.main(["--table", str(tmp_path / "t.jsonl.gz"), "--seeds", "1", "--methods", "random"])
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (first["max_depth"], first["samples"], first["architectures"]) == (1, 20, 20)
