"""The strategy loop asks ``promote`` for a paused model to resume before it proposes."""

from __future__ import annotations

import anyio
import pytest

import engine as e
from engine import Engine, InlinePool, ModelHandle, ModelStatus
from engine.testing import MockPool
from strategies import RandomSearch
from strategies.base import EngineLike, Leaves, NotYet
from tests.test_promotion import cell as checkpointing_cell
from tests.test_schedulers import cell, curves

pytestmark = pytest.mark.anyio


class Recording(RandomSearch):
    """Random search that records the loop's calls; ``promote`` uses ``turns`` free
    workers (returns True) without starting anything."""

    def __init__(self, turns: int) -> None:
        super().__init__(0, max_trials=3)
        self.turns = turns
        self.calls: list[tuple[str, int]] = []

    async def promote(self, engine: EngineLike) -> bool:
        self.calls.append(("promote", self.model_count))
        if self.turns:
            self.turns -= 1
            return True
        return False

    def propose(self, leaves: Leaves) -> dict[str, object] | NotYet | None:
        self.calls.append(("propose", self.model_count))
        return super().propose(leaves)


async def test_promote_comes_before_propose_and_before_the_cap() -> None:
    strategy = Recording(turns=2)
    async with Engine(MockPool(curves)) as engine:
        await strategy.run(engine, cell())
    assert strategy.calls == [
        ("promote", 0), ("promote", 0), ("promote", 0), ("propose", 0),
        ("promote", 1), ("propose", 1), ("promote", 2), ("propose", 2),
        ("promote", 3),  # the cap is reached: only then does the loop stop
    ]
    assert len(engine.handles()) == 3


async def test_the_loop_does_not_wait_for_paused_models() -> None:
    """A model paused (here by a listener, as a strategy would) is neither in flight nor
    finished: the loop leaves it, unobserved, instead of awaiting it for ever."""
    observed: list[int] = []

    class Observing(RandomSearch):
        def observe(self, model: e.ExecutableModelSpace) -> None:
            observed.append(1)

    strategy = Observing(0, max_trials=4)
    async with Engine(InlinePool(2)) as engine:
        def pause_odd(handle: ModelHandle, step: int, _: float) -> None:
            if step == 2 and handle.model_id % 2:
                handle.pause()

        engine.listen(pause_odd)
        with anyio.fail_after(30):
            await strategy.run(engine, checkpointing_cell())
        statuses = sorted(h.status for h in engine.handles())
    assert statuses == [ModelStatus.Paused] * 2 + [ModelStatus.Trained] * 2
    assert strategy.in_flight == 0
    assert len(observed) == 2  # the trained ones
