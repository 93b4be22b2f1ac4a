"""A resumed run refuses models made with other settings, saying what differs, unless
the caller allows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import engine as e
from engine import Engine, ModelStatus
from engine.store import RunChanged, RunReader
from tests._journal_fixtures import Counter, Counter5, journal_score, journal_slow

pytestmark = pytest.mark.anyio


def space(model: e.BaseModelSpace | None = None, fn: Any = journal_slow,
          **kwargs: Any) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(model or Counter(), e.FunctionEvaluator(fn, **kwargs))


async def train(run: Path, made: e.SimplifiedModelSpace, xs: list[int], **options: Any) -> int:
    """Train one model per x; returns how many models the run holds after."""
    async with Engine(journal=run, **options) as engine:
        for x in xs:
            assert (await (await engine.submit(made.freeze({"x": x})))).status is (
                ModelStatus.Trained)
    return len(engine.handles())


@pytest.fixture
def gates(tmp_path: Path) -> tuple[str, str]:
    one, two = tmp_path / "gate-1", tmp_path / "gate-2"
    one.touch()
    two.touch()
    return str(one), str(two)


async def refused(run: Path, made: e.SimplifiedModelSpace) -> RunChanged:
    with RunReader(run) as reader:
        before = reader.models()
    async with Engine(journal=run) as engine:
        with pytest.raises(RunChanged) as info:
            await engine.submit(made.freeze({"x": 3}))
        assert len(engine.handles()) == len(before)  # nothing was queued
    with RunReader(run) as reader:
        assert reader.models() == before
    assert "allow_changed_space=True" in str(info.value)
    return info.value


async def test_the_same_settings_resume(tmp_path: Path, gates: tuple[str, str]) -> None:
    run = tmp_path / "run.nasrun"
    assert await train(run, space(gate=gates[0]), [1, 2]) == 2
    assert await train(run, space(gate=gates[0]), [3]) == 3
    with RunReader(run) as reader:
        assert "journal_slow" in reader.meta()["fingerprints"]


async def test_another_evaluator_argument_is_refused(tmp_path: Path,
                                                     gates: tuple[str, str]) -> None:
    run = tmp_path / "run.nasrun"
    await train(run, space(gate=gates[0]), [1, 2])
    error = await refused(run, space(gate=gates[1]))
    assert error.differences == [
        f"evaluator argument 'gate': {gates[0]!r} in the run, {gates[1]!r} now"]


async def test_another_evaluator_or_space_is_refused(tmp_path: Path,
                                                     gates: tuple[str, str]) -> None:
    run = tmp_path / "run.nasrun"
    await train(run, space(gate=gates[0]), [1, 2])
    error = await refused(run, space(fn=journal_score))
    assert error.differences == [
        "evaluator: tests._journal_fixtures:journal_slow in the run, "
        "tests._journal_fixtures:journal_score now",
        f"evaluator argument 'gate': {gates[0]!r} in the run, not now"]
    error = await refused(run, space(Counter5(), gate=gates[0]))
    assert error.differences == [
        "model: tests._journal_fixtures:Counter in the run, "
        "tests._journal_fixtures:Counter5 now",
        f"label 'x': Categorical({list(range(20))!r}, label='x') in the run, "
        f"Categorical({list(range(5))!r}, label='x') now"]


async def test_a_changed_run_resumes_when_allowed(tmp_path: Path,
                                                  gates: tuple[str, str]) -> None:
    run = tmp_path / "run.nasrun"
    await train(run, space(gate=gates[0]), [1, 2])
    assert await train(run, space(gate=gates[1]), [3], allow_changed_space=True) == 3


async def test_sampled_arguments_are_not_a_change(tmp_path: Path,
                                                  gates: tuple[str, str]) -> None:
    run = tmp_path / "run.nasrun"
    gate = e.Categorical(list(gates), label="gate")
    made = space(gate=gate)
    async with Engine(journal=run) as engine:
        for x, chosen in ((1, gates[0]), (2, gates[1])):
            await engine.submit(made.freeze({"x": x, "gate": chosen}))
    async with Engine(journal=run) as engine:
        handle = await engine.submit(space(gate=gate).freeze({"x": 3, "gate": gates[1]}))
        assert (await handle).status is ModelStatus.Trained


def test_a_script_and_its_module_name_the_same_symbols() -> None:
    from engine.store._fingerprint import differences

    run = {"model": "__main__:Grid", "evaluator": "__main__:train"}
    assert differences(run, {"model": "tests.search:Grid", "evaluator": "tests.search:train"}) \
        == []
    assert differences(run, {"model": "tests.search:Grid", "evaluator": "tests.search:fit"}) \
        == ["evaluator: __main__:train in the run, tests.search:fit now"]


async def test_a_run_of_two_spaces_resumes_with_both(tmp_path: Path,
                                                    gates: tuple[str, str]) -> None:
    run = tmp_path / "run.nasrun"
    first, second = space(gate=gates[0]), space(Counter5(), journal_score)
    async with Engine(journal=run) as engine:  # a new run may mix spaces
        await engine.submit(first.freeze({"x": 1}))
        await engine.submit(second.freeze({"x": 2}))
    async with Engine(journal=run) as engine:
        await engine.submit(second.freeze({"x": 3}))
        await engine.submit(first.freeze({"x": 4}))
        with pytest.raises(RunChanged):
            await engine.submit(space(gate=gates[1]).freeze({"x": 5}))
    assert [h.status for h in engine.handles()] == [ModelStatus.Trained] * 4


class Seeded:
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, model: Counter) -> float:
        return float(model.x + self.seed)


def test_a_callable_object_is_named_by_its_class() -> None:
    from engine.store._fingerprint import fingerprint

    one, two = (space(fn=Seeded(seed)).freeze({"x": 1}) for seed in (1, 2))
    assert fingerprint(one)["evaluator"] == f"{Seeded.__module__}:Seeded object"
    assert fingerprint(one) == fingerprint(two)
