"""The simulated-time pool of benchmarks/ (``_simulated.SimulatedPool``): a table of
learning curves replayed on trio's MockClock, so ASHA's savings show in simulated
seconds. (The virtual clock is trio's; these tests run it through ``anyio.run``.)"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import multi_fidelity as mf
from _simulated import OPS, WIDTHS, CurveTable, arch_key

from strategies import ASHA, RandomSearch

EPOCHS = 6


def write_table(path: Path) -> CurveTable:
    """Every depth-1 architecture (20), one seed: accuracy grows with a quality that
    depends on the width and the operation; epoch ``k`` of architecture ``i`` takes
    ``1 + i / 10 + k / 100`` seconds."""
    with gzip.open(path, "wt") as file:
        for i, (width, op) in enumerate(itertools.product(WIDTHS, OPS)):
            sample = {"width": width, "depth": 1, "op1": op, "op2": OPS[0], "op3": OPS[0]}
            quality = (WIDTHS.index(width) * 5 + OPS.index(op)) / 20
            row = {"arch": arch_key(sample), "sample": sample, "seed": 0,
                   "val_acc": [quality * (k + 1) / EPOCHS for k in range(EPOCHS)],
                   "epoch_seconds": [1 + i / 10 + k / 100 for k in range(EPOCHS)]}
            file.write(json.dumps(row) + "\n")
    return CurveTable.load(path)


def seconds_of(table: CurveTable, sample: dict[str, object], steps: int) -> float:
    (_, seconds), = table.curves[arch_key(sample)]
    return sum(seconds[:steps])


def test_the_table_loads_and_scores(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.jsonl.gz")
    assert len(table.curves) == 20
    assert table.epochs == EPOCHS
    assert table.best_mean == pytest.approx(19 / 20)
    assert table.regret({"width": 32, "depth": 1, "op1": "skip"}) == 0
    assert table.regret(None) == pytest.approx(19 / 20)


def test_one_worker_runs_trials_back_to_back_on_the_virtual_clock(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.jsonl.gz")
    strategy = ASHA(RandomSearch(0), max_resource=EPOCHS, reduction_factor=2)
    picks, trials, simulated = mf.run_ours(lambda seed: strategy, table, 0, 1, 1e9)
    assert trials == 20 * 25  # the depth-1 samples (unused op2, op3); the rest invalid
    ends = sorted(picks, key=lambda p: p[0])
    clock = 0.0
    for end, sample, metric, fidelity in ends:
        steps = EPOCHS if fidelity == math.inf else int(fidelity)
        clock += seconds_of(table, sample, steps)
        assert end == pytest.approx(clock)
        (accuracies, _), = table.curves[arch_key(sample)]
        assert metric == accuracies[steps - 1]
    assert simulated == pytest.approx(clock)
    stopped = [p for p in picks if p[3] != math.inf]
    assert stopped  # ASHA saved simulated time
    assert clock < 0.6 * trials * table.full_seconds
    mf.check_rank_agrees(picks)


def test_workers_run_in_parallel_and_the_horizon_cuts(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.jsonl.gz")
    horizon = 2.5 * table.full_seconds
    picks, _trials, simulated = mf.run_ours(lambda seed: RandomSearch(seed), table, 3, 4,
                                           horizon)
    assert all(p[3] == math.inf and p[0] <= horizon for p in picks)
    assert 8 <= len(picks) <= 12  # about 4 workers x 2.5 trainings each
    first = sorted(picks, key=lambda p: p[0])[:4]  # the first four started together at time 0
    for end, sample, _, _ in first:
        assert end == pytest.approx(seconds_of(table, sample, EPOCHS))
    assert simulated == pytest.approx(horizon)
    pick = mf.pick_at(picks, horizon)
    assert pick is not None
    assert table.full_mean[arch_key(pick)] == max(p[2] for p in picks)
    assert mf.pick_at(picks, 0.0) is None
