"""Promotion ASHA and Hyperband on the simulated-time pool: a resumed trial replays its
recorded curve from the step it paused at (``trial.resume_step``), so no epoch is
trained twice."""

from __future__ import annotations

import math
import random
from pathlib import Path

import anyio
import pytest
import trio.testing

import engine as e
from engine import Engine, ModelStatus
from strategies import PromotionASHA, PromotionHyperband, RandomSearch
from strategies.schedulers import Scheduler
from tests.test_schedulers_simulated import EPOCHS, arch_key, mf, seconds_of, write_table

from _simulated import CurveTable, SimulatedPool, digits_labels_space  # isort: skip


def run(strategy: Scheduler, table: CurveTable) -> tuple[SimulatedPool, list[e.ModelHandle]]:
    pool = SimulatedPool(table, 1, random.Random("noise-0"))

    async def search() -> list[e.ModelHandle]:
        async with Engine(pool) as engine:
            await strategy.run(engine, digits_labels_space())
        return engine.handles()

    clock = trio.testing.MockClock(autojump_threshold=0)
    return pool, anyio.run(search, backend="trio", backend_options={"clock": clock})


@pytest.mark.parametrize("kind", ["asha", "hyperband"])
def test_promotion_runs_on_the_simulated_pool(tmp_path: Path, kind: str) -> None:
    table = write_table(tmp_path / "t.jsonl.gz")
    strategy = (PromotionASHA(RandomSearch(0), max_resource=EPOCHS, reduction_factor=2)
                if kind == "asha" else
                PromotionHyperband(RandomSearch(0), max_resource=EPOCHS, reduction_factor=2,
                                   seed=1))
    pool, handles = run(strategy, table)
    valid = [h for h in handles if h.status is not ModelStatus.Invalid]
    assert len(valid) == 20 * 25  # every sample of the depth-1 architectures
    rungs = {rung for ladder in strategy.ladders for rung in ladder.rungs}
    clock = 0.0
    for handle in valid:
        sample, curve = dict(handle.model.sample or {}), handle.model.metrics.intermediates
        (accuracies, _), = table.curves[arch_key(sample)]
        assert curve == accuracies[:len(curve)]  # resumed where it paused, not afresh
        assert len(curve) in rungs | {EPOCHS}
        status = ModelStatus.Trained if len(curve) == EPOCHS else ModelStatus.Paused
        assert handle.status is status
        clock += seconds_of(table, sample, len(curve))
    assert max(pool.ends.values()) == pytest.approx(clock)  # one worker, back to back
    assert strategy.promotions > 0
    assert clock < (0.5 if kind == "asha" else 0.75) * len(valid) * table.full_seconds
    picks = [(pool.ends[h.model_id], dict(h.model.sample or {}), h.model.metrics.final,
              math.inf) for h in valid if h.status is ModelStatus.Trained]
    best = max(table.full_mean.values())
    assert max(table.full_mean[arch_key(p[1])] for p in picks) == best
    mf.check_rank_agrees(picks)  # type: ignore[arg-type]
