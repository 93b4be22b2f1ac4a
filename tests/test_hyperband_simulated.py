"""Hyperband on the simulated-time pool of benchmarks/ (see test_schedulers_simulated)."""

from __future__ import annotations

import collections
import math
from pathlib import Path

import pytest

from strategies import Hyperband, RandomSearch
from tests.test_schedulers_simulated import EPOCHS, mf, seconds_of, write_table


def test_hyperband_runs_on_the_simulated_pool(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.jsonl.gz")
    strategy = Hyperband(RandomSearch(0), max_resource=EPOCHS, reduction_factor=2, seed=1)
    assert strategy.brackets.rungs == ((1, 2, 4), (2, 4), (4,), ())
    picks, trials, simulated = mf.run_ours(lambda seed: strategy, table, 0, 1, 1e9)
    assert trials == 20 * 25  # every sample of the space (the unused labels vary too)
    clock = 0.0
    for end, sample, _, fidelity in sorted(picks, key=lambda p: p[0]):
        steps = EPOCHS if fidelity == math.inf else int(fidelity)
        clock += seconds_of(table, sample, steps)  # one worker: back to back
        assert end == pytest.approx(clock)
    assert simulated == pytest.approx(clock)
    stopped_at = collections.Counter(p[3] for p in picks)
    assert set(stopped_at) <= {1, 2, 4, math.inf}
    assert all(stopped_at[rung] for rung in (1, 2, 4))  # each bracket's rungs cut
    assert clock < 0.75 * trials * table.full_seconds
    best = max(p[2] for p in picks if p[3] == math.inf)
    assert best == max(table.full_mean.values())  # the best architecture trained fully
    mf.check_rank_agrees(picks)
