"""ModelBased: valid proposals on any space, distinct in flight, reproducible, resumable,
and better than random search on a small synthetic table (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import engine as e
from engine import Engine, InlinePool
from strategies import ModelBased, sample_key
from strategies._surrogate import MISSING, Encoder, Surrogate, quantile, value_at
from strategies.evolution import Reevaluation
from tests._surrogate_fixtures import (
    LABELS,
    TARGET,
    Cell,
    Mixed,
    mixed_score,
    run,
    samples,
)

pytestmark = pytest.mark.anyio

async def test_proposals_are_valid_samples_of_a_mixed_space() -> None:
    space = e.RawFormatModelSpace.from_model(Mixed(), e.FunctionEvaluator(mixed_score))
    leaves = space.simplify()
    handles = await run(ModelBased(n_initial=4, seed=1), space, 40)
    assert len(handles) == 40
    for sample in samples(handles):
        assert set(sample) == set(leaves)
        for label, leaf in leaves.items():
            assert leaf.check_value(sample[label]) is None, (label, sample[label])
    dropouts = {s["dropout"] for s in samples(handles)}
    assert all(abs(d * 10 - round(d * 10)) < 1e-9 for d in dropouts)
    assert len({sample_key(s) for s in samples(handles)}) == 40


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_initial": 0}, "n_initial must be an int >= 1, got 0"),
    ({"parents": 1.5}, "parents must be an int >= 1, got 1.5"),
    ({"random_candidates": -1}, "random_candidates must be an int >= 0, got -1"),
    ({"beta": float("nan")}, "beta must be a finite number >= 0, got nan"),
    ({"bins": True}, "bins must be an int >= 1, got True"),
    ({"restart_pool": 0}, "restart_pool must be an int >= 1, got 0"),
    ({"tabu": -1}, "tabu must be an int >= 0, got -1"),
])
def test_bad_arguments_say_what_to_pass(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelBased(**kwargs)


def test_restart_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="restart must be True or False, got 1"):
        ModelBased(restart=1)  # type: ignore[arg-type]


def test_the_surrogate_encodes_absent_labels_and_log_bins() -> None:
    leaves = e.RawFormatModelSpace.from_model(
        Mixed(), e.FunctionEvaluator(mixed_score)).simplify()
    encoder = Encoder(leaves, bins=5)
    assert encoder.tokens({}) == (MISSING, MISSING, MISSING)  # a conditional sample
    tokens = dict(zip(encoder.labels, encoder.tokens(
        {"kind": "c", "lr": 1e-3, "dropout": 0.5}), strict=True))
    assert tokens == {"kind": 2, "lr": 2, "dropout": 4}  # 1e-3: the middle of 1e-5..1
    lr = leaves["lr"]
    assert isinstance(lr, e.Numerical)
    assert value_at(lr, quantile(lr, 1e-3)) == pytest.approx(1e-3)
    surrogate = Surrogate(3)
    for sample, y in (({"kind": "a"}, 0.0), ({"kind": "b"}, 1.0), ({"kind": "b"}, 1.0)):
        surrogate.add(encoder.tokens(sample), y)
    assert surrogate.predict(encoder.tokens({"kind": "b"}))[0] > surrogate.predict(
        encoder.tokens({"kind": "a"}))[0]
    assert surrogate.predict(encoder.tokens({"kind": "c"}))[1] > surrogate.predict(
        encoder.tokens({"kind": "b"}))[1]  # never seen: more novel


def hits(sample: dict[str, Any]) -> float:
    """Labels equal to TARGET's: one optimum, TARGET, that every neighbour falls short of."""
    return float(sum(sample[label] == TARGET[label] for label in LABELS))


def distance(sample: dict[str, Any], other: dict[str, Any]) -> int:
    return sum(sample[label] != other[label] for label in LABELS)


async def test_a_local_optimum_is_left_for_good() -> None:
    """TARGET, the only local optimum, is found; once its neighbourhood is searched out
    the search restarts and stays more than ``tabu`` labels away from it (without the
    restart, the surrogate would keep trying TARGET's two-label mutations)."""
    async def score(model: Cell) -> float:
        return hits(dict(zip(LABELS, model.ops, strict=True)))

    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(score))
    strategy = ModelBased(seed=1, restart=True, tabu=2)  # wider than the default 1
    found = samples(await run(strategy, space, 120))
    assert TARGET in found
    assert strategy.optima[0] == TARGET
    assert all(distance(sample, TARGET) > 2 for sample in found[-20:])


async def test_a_resumed_search_rebuilds_its_restarts(tmp_path: Path) -> None:
    journal = tmp_path / "run.nasrun"

    async def score(model: Cell) -> float:
        return hits(dict(zip(LABELS, model.ops, strict=True)))

    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(score))
    first = ModelBased(seed=1, restart=True)
    async with Engine(InlinePool(1), max_trials=120, journal=journal) as engine:
        await first.run(engine, space)
    assert first.optima
    async with Engine(InlinePool(1), max_trials=121, journal=journal) as engine:
        resumed = ModelBased(seed=1, restart=True)
        await resumed.run(engine, space)
    assert resumed.optima[:len(first.optima)] == first.optima


async def test_re_evaluating_a_left_optimum_does_not_restart_again() -> None:
    """TARGET stays the best sample, so it is trained again after the search left it; that
    result must not make it the centre again (which would end each new local search at
    once and remember TARGET as an optimum once per re-evaluation)."""
    async def score(model: Cell) -> float:
        return hits(dict(zip(LABELS, model.ops, strict=True)))

    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(score))
    strategy = ModelBased(seed=1, reevaluate=Reevaluation(share=0.05), restart=True)
    found = samples(await run(strategy, space, 150))
    assert found.count(TARGET) >= 3  # re-evaluated after the restart
    assert strategy.optima[0] == TARGET
    assert TARGET not in strategy.optima[1:]


SEARCH_IN_A_PROCESS = """
import anyio, json, sys
sys.path.insert(0, "tests")
from test_strategies_model_based import Cell, LABELS, ModelBased, e, hits, run, samples

async def score(model):
    return float(hits(dict(zip(LABELS, model.ops, strict=True))) // 2)  # many ties

async def main():
    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(score))
    print(json.dumps(samples(await run(ModelBased(seed=3), space, 90))))

anyio.run(main)
"""


def test_the_same_seed_gives_the_same_samples_whatever_the_hash_seed() -> None:
    """Ties of means are broken by training order, never by a set's (hash) order."""
    found = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", SEARCH_IN_A_PROCESS], env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        found.append(done.stdout)
    assert found[0] == found[1]
