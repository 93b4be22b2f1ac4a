"""Profiles before training: parameters, FLOPs and latency of real torch models,
constraints that make a model invalid untrained (counted apart from the budget), and
profile values as objectives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine import (
    Constraint,
    ConstraintViolated,
    Engine,
    InlinePool,
    ModelStatus,
    Objective,
    ProcessPool,
    Profile,
    Profiler,
)
from engine.events import ModelInvalid
from engine.profile import merged_name
from tests._profile_spaces import Mlp, mlp_space

SMALL, LARGE = {"width": 4}, {"width": 64}
ACC, PARAMS = Objective(name="accuracy", mode="max"), Objective(name="params", mode="min")


def _built(sample: dict[str, int]) -> torch.nn.Module:
    module = mlp_space().freeze(sample).executable_model()
    assert isinstance(module, Mlp)
    return module


def test_a_profile_counts_params_and_flops_and_times_the_forward_pass() -> None:
    module = _built(SMALL).train()
    before = [p.detach().clone() for p in module.parameters()]
    profile = Profiler((1, 8), warmup=1, runs=3, device="cpu").measure(module)
    assert profile.params == 8 * 4 + 4 + 4 * 2 + 2
    assert profile.flops == 2 * (8 * 4 + 4 * 2)  # two matrix products, one input row
    assert profile.latency_ms is not None
    assert profile.latency_ms > 0
    assert profile.device == "cpu"
    assert module.training  # measured on a copy: the model to train is untouched
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
    assert Profiler().measure(module) == Profile(params=46)  # no input shape: params only
    assert Profiler((2, 8), latency=False).measure(module).values() == {
        "params": 46.0, "flops": 160.0}


def test_constraints_parse_and_bad_ones_say_what_is_wrong() -> None:
    assert Constraint.parse("params <= 1e6") == Constraint(metric="params", op="<=", limit=1e6)
    assert str(Constraint.parse(" latency_ms>5 ")) == "latency_ms > 5"
    profile = Profile(params=706, flops=1.0)
    assert profile.violation([Constraint.parse("params < 100")]) == Constraint.parse(
        "params < 100")
    assert profile.violation([Constraint.parse("params >= 100")]) is None
    with pytest.raises(ValueError, match="must be one of params, flops, latency_ms"):
        Constraint.parse("size <= 3")
    with pytest.raises(ValueError, match="write it as 'NAME OP LIMIT'"):
        Constraint.parse("params == 3")
    with pytest.raises(ValueError, match=r"bad constraint .params <= lots.: could not convert"):
        Constraint.parse("params <= lots")
    with pytest.raises(ValueError, match="'flops' needs an input shape"):
        Profiler(constraints=["flops <= 10"])
    with pytest.raises(ValueError, match="not measured with latency=False"):
        Profiler((1, 8), latency=False, constraints=["latency_ms <= 1"])
    with pytest.raises(ValueError, match="runs must be an int >= 1"):
        Profiler((1, 8), runs=0)
    with pytest.raises(TypeError, match=r"needs a torch\.nn\.Module"):
        Profiler().measure(object())
    with pytest.raises(ValueError, match="'latency_ms' needs an input shape"):
        merged_name((Objective(name="latency_ms", mode="min"),), Profiler())


@pytest.mark.anyio
async def test_a_strategy_can_profile_a_model_before_submitting_it() -> None:
    async with Engine(InlinePool(1)) as engine:
        engine.set_profiler(Profiler((1, 8), runs=2, constraints=["params <= 100"]))
        model = mlp_space().freeze(LARGE)
        profile = await engine.profile(model)
        assert profile.params == 706
        assert profile.flops == 2 * (8 * 64 + 64 * 2)
        assert engine.profiler is not None
        assert profile.violation(engine.profiler.constraints) == Constraint.parse(
            "params <= 100")
        assert model.status is ModelStatus.Frozen  # measured, not submitted
        assert engine.handles() == []
        with pytest.raises(ValueError, match="needs a frozen model"):
            await engine.profile(mlp_space())


@pytest.mark.anyio
async def test_a_model_breaking_a_constraint_is_invalid_untrained_and_off_budget(
        tmp_path: Path) -> None:
    trained, path = tmp_path / "trained.txt", tmp_path / "run.nasrun"
    space = mlp_space(trained=str(trained))
    async with Engine(InlinePool(1), max_trials=1, journal=path) as engine:
        events = engine.subscribe()
        engine.set_profiler(Profiler(constraints=[Constraint.of("params", "<=", 100)]))
        large = await (await engine.submit(space.freeze(LARGE)))
        assert engine.budget_left == 1  # the invalid model is counted apart
        small = await (await engine.submit(space.freeze(SMALL)))
        assert engine.constraint_violations == 1
    assert (large.status, small.status) == (ModelStatus.Invalid, ModelStatus.Trained)
    assert trained.read_text() == "4\n"  # only the small one trained
    invalid = [e async for e in events if isinstance(e, ModelInvalid)]
    assert len(invalid) == 1
    assert "params = 706" in invalid[0].message
    assert "breaks params <= 100 (the limit is 100)" in invalid[0].message
    assert invalid[0].paths == ("profile", "params")
    async with Engine(InlinePool(1), max_trials=1, journal=path) as engine:
        assert engine.constraint_violations == 1  # a resumed run counts it apart too
        assert engine.budget_left == 0


@pytest.mark.anyio
async def test_profile_values_join_the_metrics_when_they_are_objectives() -> None:
    async with Engine(InlinePool(1)) as engine:
        engine.set_objectives([ACC, PARAMS])
        engine.set_profiler(Profiler())
        number = await (await engine.submit(mlp_space().freeze(SMALL)))
        reported = await (await engine.submit(
            mlp_space(value={"accuracy": 0.7, "params": 1.0}).freeze(SMALL)))
    assert number.metrics.final == {"accuracy": 0.5, "params": 46.0}
    assert reported.metrics.final == {"accuracy": 0.7, "params": 1.0}  # reported wins


@pytest.mark.anyio
async def test_a_process_worker_checks_constraints_on_its_own_device() -> None:
    async with Engine(ProcessPool(1, preload=["tests._profile_spaces"])) as engine:
        engine.set_objectives([ACC, Objective(name="latency_ms", mode="min")])
        engine.set_profiler(Profiler((1, 8), runs=3, constraints=["params <= 100"]))
        large = await (await engine.submit(mlp_space().freeze(LARGE)))
        small = await (await engine.submit(mlp_space().freeze(SMALL)))
    assert large.status is ModelStatus.Invalid
    assert small.status is ModelStatus.Trained
    assert isinstance(small.metrics.final, dict)
    assert small.metrics.final["accuracy"] == 0.5
    assert small.metrics.final["latency_ms"] > 0
    assert small.metrics.final["params"] == 46.0
    assert small.metrics.final["flops"] == 80.0


def test_constraint_violated_is_a_sample_validation_error() -> None:
    error = ConstraintViolated(Constraint.parse("flops < 10"), 80.0, "cpu")
    assert isinstance(error, ValueError)
    assert error.paths == ["profile", "flops"]
    assert "flops = 80 (measured on cpu) breaks flops < 10" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
async def test_a_strategy_searches_on_with_the_budget_an_invalid_model_gave_back(
        seed: int) -> None:
    from strategies import RandomSearch, search

    # Two workers: the strategy sees the budget used up while the model still runs.
    async with Engine(InlinePool(2), max_trials=1) as engine:
        engine.set_profiler(Profiler(constraints=["params <= 100"]))
        found = await search(mlp_space(), RandomSearch(seed), engine)
        statuses = [h.status for h in engine.handles()]
    assert [m.sample for m in found] == [SMALL]  # trained, whichever came first
    assert statuses.count(ModelStatus.Trained) == 1
    assert statuses.count(ModelStatus.Invalid) == engine.constraint_violations
