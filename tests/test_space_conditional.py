"""Conditional samples: a space knows which labels a sample uses (the chosen candidate of a
LayerChoice, the first ``depth`` blocks of a Repeat), validates only those, and freezes
models with the canonical sample (unused labels dropped), so that strategies and the
engine's de-duplication count two samples that build the same network as one."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import torch
from torch import nn

import engine as e
from engine import Engine, InlinePool, ModelStatus, SampleMissingError, SampleValidationError
from engine.nn import LayerChoice, ModelSpace, Repeat
from strategies import GridSearch, RandomSearch, RegularizedEvolution, sample_key
from strategies.base import StopReason
from strategies.evolution import mutate


def _block(i: int) -> nn.Module:
    return LayerChoice([nn.Identity(), nn.Tanh()], label=f"b{i}")


class Cond(ModelSpace):
    """``op`` picks a plain layer or one holding the LayerChoice ``inner``; ``depth``
    stacks 1 to 3 blocks, each a LayerChoice ``b{i}``. Flat: 96 samples; networks: 42."""

    def __init__(self) -> None:
        super().__init__()
        inner = LayerChoice([nn.Identity(), nn.ReLU()], label="inner")
        self.op = LayerChoice({"plain": nn.Linear(4, 4),
                               "nested": nn.Sequential(inner, nn.Linear(4, 4))}, label="op")
        self.stack = Repeat(_block, (1, 3), label="depth")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack(self.op(x))


def arch(model: nn.Module) -> str:
    """What a frozen model is, as text (its module tree without weights)."""
    return repr(model)


def evaluate(model: nn.Module) -> float:
    return float(len(arch(model)))


def raw() -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(Cond(), e.FunctionEvaluator(evaluate))


def simplified() -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Cond(), e.FunctionEvaluator(evaluate))


SPACES = [raw, simplified]
FULL = {"op": "plain", "inner": 1, "depth": 1, "b0": 1, "b1": 0, "b2": 1}


def every_flat_sample(space: e.ExecutableModelSpace) -> list[dict[str, Any]]:
    leaves = space.simplify()
    return [dict(zip(leaves, combo, strict=True))
            for combo in itertools.product(*(leaf.grid_values() for leaf in leaves.values()))]


@pytest.mark.parametrize("make", SPACES)
def test_used_labels_follow_the_choices(make: Any) -> None:
    space = make()
    assert space.used_labels(FULL) == ["op", "depth", "b0"]
    assert space.used_labels({**FULL, "op": "nested", "depth": 3}) == [
        "op", "inner", "depth", "b0", "b1", "b2"]
    assert space.canonical(FULL) == {"op": "plain", "depth": 1, "b0": 1}


@pytest.mark.parametrize("make", SPACES)
def test_unused_labels_may_be_missing_and_used_ones_may_not(make: Any) -> None:
    space = make()
    space.validate({"op": "plain", "depth": 1, "b0": 0})
    with pytest.raises(SampleMissingError) as missing:
        space.validate({"op": "nested", "depth": 1, "b0": 0})
    assert missing.value.paths == ["model", "inner"]
    with pytest.raises(SampleMissingError) as deep:
        space.validate({"op": "plain", "depth": 2, "b0": 0})
    assert deep.value.paths == ["model", "b1"]
    # An unused label still may not hold a label the space does not have.
    with pytest.raises(SampleValidationError, match="unknown label 'nope'"):
        space.validate({"op": "plain", "depth": 1, "b0": 0, "nope": 1})
    # A gate that does not fit says so (which labels are used is then unknown).
    with pytest.raises(SampleValidationError, match="'other' is not one of"):
        space.used_labels({**FULL, "op": "other"})


@pytest.mark.parametrize("make", SPACES)
def test_samples_that_build_the_same_network_freeze_to_the_same_sample(make: Any) -> None:
    space = make()
    canonical = space.canonicalizer()  # what strategies use: the same, cheaper
    networks: dict[bytes, str] = {}
    for sample in every_flat_sample(space):
        model = space.freeze(sample)
        assert model.sample == space.canonical(sample) == canonical(sample)
        built = arch(model.executable_model())
        # The canonical key decides the network, and the network decides the key.
        assert networks.setdefault(sample_key(model.sample or {}), built) == built
    assert len(networks) == 42
    assert len(set(networks.values())) == 42


def test_a_dumped_model_builds_its_unused_parts_from_defaults() -> None:
    """A simplified model is rebuilt from its constructor, which builds the unchosen
    candidate too (and reads its choice): the message carries the defaults for it."""
    model = simplified().freeze({"op": "plain", "depth": 1, "b0": 1})
    loaded = e.SimplifiedModelSpace.load(model.dump())
    assert loaded.sample == {"op": "plain", "depth": 1, "b0": 1}
    assert loaded.build_sample == {"op": "plain", "inner": 0, "depth": 1, "b0": 1,
                                   "b1": 0, "b2": 0}
    assert arch(loaded.executable_model()) == arch(model.executable_model())
    frozen = loaded.executable_model()
    assert not any(isinstance(m, e.Mutable) for m in list(frozen.modules())[1:])
    assert frozen(torch.zeros(2, 4)).shape == (2, 4)


@pytest.mark.anyio
async def test_engine_deduplicates_by_network() -> None:
    space = raw()
    async with Engine(InlinePool(1), deduplicate=True) as engine:
        first = await engine.submit(space.freeze(FULL))
        again = await engine.submit(space.freeze({**FULL, "inner": 0, "b2": 0}))
        assert (await again).status is ModelStatus.Invalid
        assert (await first).status is ModelStatus.Trained


@pytest.mark.parametrize(
    "make", [lambda: RandomSearch(3), lambda: GridSearch(shuffle=True, seed=3),
             lambda: GridSearch(), lambda: RegularizedEvolution(6, 3, seed=3)],
    ids=["random", "grid-shuffled", "grid", "evolution"])
@pytest.mark.parametrize("space", SPACES)
@pytest.mark.anyio
async def test_strategies_never_train_a_network_twice(make: Any, space: Any) -> None:
    strategy = make()
    async with Engine(InlinePool(2), max_trials=60) as engine:
        await strategy.run(engine, space())
    handles = engine.handles()
    networks = [arch(h.model.executable_model()) for h in handles]
    assert len(set(networks)) == len(networks) == 42
    assert strategy.stop_reason is StopReason.space_exhausted


def test_mutation_changes_the_network() -> None:
    space = raw()
    leaves = space.simplify()
    rng = random.Random(0)
    changed_depth = 0
    for sample in every_flat_sample(space):
        parent = space.canonical(sample)
        for prob in (None, 0.3):
            child = mutate(parent, leaves, rng, prob)
            space.validate(child)
            assert space.canonical(child) != parent
            changed_depth += child["depth"] > parent["depth"]
    assert changed_depth > 0  # the blocks a deeper child uses got values
