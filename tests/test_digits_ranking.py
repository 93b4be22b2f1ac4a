"""examples/digits_search.py's ranking lines: each model shows the value it ranks by and,
when it did not train to its end, the step it reached. A paused model (no ``metric``:
it ranks by its last intermediate at its step) among the top ones once crashed the
report (``None:.3f``)."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import pytest

from engine import Metrics, ModelStatus, SimplifiedModelSpace
from strategies import rank
from tests.test_examples import EXAMPLES

pytest.importorskip("sklearn")


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location("digits_search", EXAMPLES / "digits_search.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_model(script: ModuleType, width: int, status: ModelStatus,
                 metrics: Metrics) -> SimplifiedModelSpace:
    """A digits architecture that trained (or not) as ``status`` and ``metrics`` say."""
    sample: dict[str, Any] = {"width": width, "depth": 1, "op1": "conv3x3"}
    model = script.digits_space("unused.npz").freeze(sample)
    assert isinstance(model, SimplifiedModelSpace)
    model.status, model.metrics = status, metrics
    return model


def test_a_paused_model_in_the_top_shows_its_value_at_its_step(
        script: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    trained = digits_model(script, 4, ModelStatus.Trained,
                           Metrics(intermediates=[0.5, 0.71], final=0.71))
    paused = digits_model(script, 8, ModelStatus.Paused, Metrics(intermediates=[0.6, 0.953]))
    stopped = digits_model(script, 16, ModelStatus.Trained,
                           Metrics(intermediates=[0.9], final=0.9, stopped_at=1))
    assert paused.metric is None
    ranked = rank([stopped, paused, trained])
    assert ranked == [trained, paused, stopped]  # full training first, then by fidelity
    ids = {id(trained): 1, id(paused): 2, id(stopped): 3}
    script.print_ranking(ranked, ids)
    assert capsys.readouterr().out.splitlines() == [
        "rank  val acc  architecture (the models that trained it)",
        "   1  0.710    width=4 depth=1 ops=conv3x3  (#1)",
        "   2  0.953 at step 2    width=8 depth=1 ops=conv3x3  (#2) (paused)",
        "   3  0.900 at step 1    width=16 depth=1 ops=conv3x3  (#3) (stopped early)",
    ]
    assert [script.ranked_score(m) for m in ranked] == [
        "0.710", "0.953 at step 2", "0.900 at step 1"]
