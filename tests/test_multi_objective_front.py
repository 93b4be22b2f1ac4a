"""The Pareto front of a multi-objective run: what search() returns, RunResults.front,
``nas-engine show`` and ``nas-engine plot``."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import Engine, InlinePool, Objective
from engine.cli import main
from engine.cli._plot import front_points
from engine.results import open_run
from engine.store import RunReader
from strategies import MultiObjectiveRandomSearch, RandomSearch, pareto_front, search
from tests._objective_spaces import bowl, pair_space

pytestmark = pytest.mark.anyio

ACC, SIZE = Objective(name="accuracy", mode="max"), Objective(name="size", mode="min")
COST = Objective(name="cost", mode="min")


async def _search(path: Path, *, third: bool = False) -> list[dict[str, object]]:
    objectives = [ACC, SIZE, COST] if third else [ACC, SIZE]
    async with Engine(InlinePool(1), max_trials=6, journal=path) as engine:
        found = await search(pair_space(bowl, third=third),
                             MultiObjectiveRandomSearch(objectives, seed=0), engine)
        assert engine.objectives == tuple(objectives)
    return [dict(m.sample or {}) for m in found]


async def test_search_returns_the_front_best_first_by_the_first_objective(
        tmp_path: Path) -> None:
    assert await _search(tmp_path / "run.nasrun") == [{"x": 5}, {"x": 4}, {"x": 3}, {"x": 2}]
    assert await _search(tmp_path / "three.nasrun", third=True) == [
        {"x": x} for x in (5, 4, 3, 2, 1, 0)]


async def test_a_single_objective_strategy_on_a_multi_objective_run_gets_the_front() -> None:
    async with Engine(InlinePool(1), max_trials=6) as engine:
        engine.set_objectives([ACC, SIZE])
        found = await search(pair_space(bowl), RandomSearch(0), engine)
        assert found == pareto_front((h.model for h in engine.handles()), [ACC, SIZE])
    assert sorted(m.sample["x"] for m in found) == [2, 3, 4, 5]  # type: ignore[index]


async def test_results_show_and_plot_give_the_front(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.nasrun"
    await _search(path)
    with open_run(path) as run:
        members = run.front()
        assert members[0].final == {"accuracy": 1.0, "size": 9.0}
        assert sorted(m.sample["x"] for m in members) == [2, 3, 4, 5]
        assert len(run.front([ACC])) == 1  # the best accuracy alone
    assert main(["show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "pareto front: 4 of 6 trained (max accuracy, min size; best accuracy first):" in shown
    assert "accuracy          size  sample" in shown
    assert shown.rstrip().endswith('0.4             0  {"x":2}')
    assert main(["show", str(path), "--top", "2"]) == 0
    assert "the first 2 of best accuracy first" in capsys.readouterr().out
    with RunReader(path) as reader:
        everyone, front = front_points(reader.models(), (ACC, SIZE))
    assert len(everyone) == 6
    assert front == [(1.0, 9.0), (0.8, 4.0), (0.6, 1.0), (0.4, 0.0)]
    pytest.importorskip("matplotlib")
    target = tmp_path / "front.png"
    assert main(["plot", str(path), "-o", str(target)]) == 0
    assert capsys.readouterr().out == f"{target}: Pareto front of 6 trained models\n"
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_plot_draws_every_pair_of_three_objectives(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    path, target = tmp_path / "run.nasrun", tmp_path / "front.png"
    await _search(path, third=True)
    assert main(["plot", str(path), "-o", str(target)]) == 0
    assert capsys.readouterr().out == f"{target}: Pareto front of 6 trained models\n"
    from PIL import Image

    with Image.open(target) as image:
        width, height = image.size
    assert width > 2.5 * height  # three scatters side by side


async def test_the_front_hypervolume_from_the_run_and_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.nasrun"
    await _search(path)
    # front (accuracy, size): (1, 9), (0.8, 4), (0.6, 1), (0.4, 0); reference (0, 10):
    # slabs of accuracy 1-0.8, 0.8-0.6, 0.6-0.4, 0.4-0 times 10 minus their size
    expected = 0.2 * 1 + 0.2 * 6 + 0.2 * 9 + 0.4 * 10
    with open_run(path) as run:
        assert run.hypervolume([0.0, 10.0]) == pytest.approx(expected)
        assert run.hypervolume([0.0], [ACC]) == pytest.approx(1.0)  # the best accuracy, 1
        with pytest.raises(ValueError, match=r"one value per objective \(2\)"):
            run.hypervolume([0.0])
    assert main(["show", str(path), "--reference", "0,10"]) == 0
    assert capsys.readouterr().out.endswith(f"hypervolume {expected:.6g} (reference 0, 10)\n")
    assert main(["show", str(path), "--reference", "0"]) == 2
    assert "--reference needs one value per objective (2: accuracy, size)" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["show", str(path), "--reference", "zero,ten"])
    assert "a reference point is numbers separated by commas" in capsys.readouterr().err
