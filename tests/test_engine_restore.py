"""After a resume, finished models of a simplified space work as before; raw-format ones
say why they cannot be built."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from tests._journal_fixtures import Counter, journal_score, journal_space

pytestmark = pytest.mark.anyio


def fails_on_odd(model: Counter) -> float:
    if model.x % 2:
        raise ArithmeticError(f"odd {model.x}")
    return float(model.x)


async def test_restored_models_of_a_simplified_space_are_rebuilt(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    async with Engine(InlinePool(2), journal=run) as engine:
        for x in (2, 3, 4):
            await engine.submit(journal_space(fails_on_odd).freeze({"x": x}))
    async with Engine(journal=run) as engine:
        restored = {h.model_id: h.model for h in engine.handles()}
    assert [type(m) for m in restored.values()] == [e.SimplifiedModelSpace] * 3
    assert [m.status for m in restored.values()] == [
        ModelStatus.Trained, ModelStatus.Failed, ModelStatus.Trained]
    assert [m.metric for m in restored.values()] == [2.0, None, 4.0]
    built = restored[3].executable_model()
    assert isinstance(built, Counter)
    assert built.x == 4
    error = restored[2].error
    assert error is not None
    assert (error.type, error.message) == ("ArithmeticError", "odd 3")


async def test_restored_raw_format_models_say_why_they_cannot_be_built(
        tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    raw = e.RawFormatModelSpace(*journal_space(journal_score).model_and_evaluator())
    async with Engine(journal=run) as engine:
        await (await engine.submit(raw.freeze({"x": 5})))
    async with Engine(journal=run) as engine:
        (handle,) = engine.handles()
    model = handle.model
    assert isinstance(model, e.RestoredModel)
    assert (model.status, model.metric, model.sample) == (ModelStatus.Trained, 5.0, {"x": 5})
    with pytest.raises(e.NotRebuildable, match=r"model 1 .* raw-format .*space\.freeze"):
        model.executable_model()
