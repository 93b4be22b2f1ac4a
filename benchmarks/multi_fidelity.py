"""Multi-fidelity search on real learning curves: early stopping against full training.

Every method searches the digits space (``examples/_digits.py``) on the table of
learning curves ``benchmarks/learning_curves.py`` made by real training (12 epochs,
2 seeds per architecture; the shipped table holds a random sample of the space's 620
architectures, see ``benchmarks/data/README.md``), with ``--workers`` asynchronous
workers on a simulated clock: each epoch of a trial takes the seconds it took when the
table was made, and reports the validation accuracy it reached then (one of the
architecture's recorded seeds, drawn at random per trial). Compute is counted in *full
trainings*: the mean time of a 12-epoch training in the table; a budget of ``B`` full
trainings is ``B * full_seconds / workers`` simulated seconds of the whole pool.

Methods (ours run through ``engine.Engine`` on ``_simulated.SimulatedPool`` under trio's
``MockClock``; Optuna's in a discrete-event loop on the same table and clock rules):

- ``random``, ``evolution``: RandomSearch / RegularizedEvolution, full trainings.
- ``asha-random``, ``asha-evolution``: ASHA (stopping) around either proposer.
- ``median-random``, ``median-evolution``: the median stopping rule around either.
- ``optuna-sha``, ``optuna-hyperband``: Optuna's TPESampler with its
  SuccessiveHalvingPruner / HyperbandPruner, through ask/tell with ``trial.report`` and
  ``trial.should_prune`` (a study's best is its best completed trial).

A method's pick at a budget is what it ranks best among the models finished by then
(``strategies.rank``: highest fidelity first, then the best metric); its *regret* is the
table's best mean full-fidelity accuracy minus the pick's. One JSON line per (method,
budget)::

    {"method": ..., "budget": 50, "regret_mean": ..., "regret_std": ..., "seeds": 20,
     "trials_mean": ..., "wall_s": ...}

then ``{"figure": "simulated_speedup", "value": ..., "unit": "x"}`` (simulated seconds
of the pool per real second, over our methods' runs). Seeds 0-19 are reported; the
settings were chosen on seeds 1000 and up (``--first-seed 1000``). Optuna is needed
for its methods (the ``bench`` extra); without it they are skipped with a note.

Run: ``python benchmarks/multi_fidelity.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _simulated import (
    DEFAULT_TABLE,
    MAX_DEPTH,
    OPS,
    WIDTHS,
    CurveTable,
    SimulatedPool,
    arch_key,
    digits_labels_space,
)

from engine import Engine, ModelStatus
from strategies import (
    ASHA,
    BaseStrategy,
    MedianStopping,
    RandomSearch,
    RegularizedEvolution,
    rank,
)

BUDGETS = (50, 100, 300)
POPULATION = 20  # regularized evolution's population (tuned on seeds >= 1000)
ETA = 3
# One pick: (simulated end time, sample, metric, fidelity).
Pick = tuple[float, dict[str, Any], float, float]


def ours(epochs: int, population: int = POPULATION,
         eta: float = ETA) -> dict[str, Callable[[int], BaseStrategy]]:
    def evolution(seed: int) -> RegularizedEvolution:
        return RegularizedEvolution(population, seed=seed)

    def asha(proposer: BaseStrategy) -> ASHA:
        return ASHA(proposer, min_resource=1, max_resource=epochs, reduction_factor=eta)

    def median(proposer: BaseStrategy) -> MedianStopping:
        return MedianStopping(proposer, grace_steps=2, min_samples=4)

    return {
        "random": lambda seed: RandomSearch(seed),
        "evolution": evolution,
        "asha-random": lambda seed: asha(RandomSearch(seed)),
        "asha-evolution": lambda seed: asha(evolution(seed)),
        "median-random": lambda seed: median(RandomSearch(seed)),
        "median-evolution": lambda seed: median(evolution(seed)),
    }


async def _search(strategy: BaseStrategy, pool: SimulatedPool, horizon: float) -> list[Pick]:
    async with Engine(pool, max_duration=horizon) as engine:
        await strategy.run(engine, digits_labels_space())
    picks = []
    for handle in engine.handles():
        model = handle.model
        if model.status is ModelStatus.Trained and model.metric is not None:
            stopped = model.metrics.stopped_at
            picks.append((pool.ends[handle.model_id], dict(model.sample or {}),
                          model.metric, math.inf if stopped is None else stopped))
    return picks


def run_ours(make: Callable[[int], BaseStrategy], table: CurveTable, seed: int,
             workers: int, horizon: float) -> tuple[list[Pick], int, float]:
    """The finished models of one search, its trial count, and the simulated seconds."""
    pool = SimulatedPool(table, workers, random.Random(f"noise-{seed}"))
    clock = trio.testing.MockClock(autojump_threshold=0)
    picks = anyio.run(_search, make(seed), pool, horizon, backend="trio",
                      backend_options={"clock": clock})
    return picks, len(pool.ends), min(horizon, max(pool.ends.values(), default=0.0))


def pick_at(picks: list[Pick], until: float) -> dict[str, Any] | None:
    """What ranks best among the models finished by ``until``: ``strategies.rank``'s
    rule (highest fidelity, then best metric; a sample's mean at its top fidelity)."""
    done = [p for p in picks if p[0] <= until]
    if not done:
        return None
    groups: dict[str, list[Pick]] = {}
    for pick in done:
        groups.setdefault(json.dumps(pick[1], sort_keys=True), []).append(pick)
    best: tuple[float, float, dict[str, Any]] | None = None
    for group in groups.values():
        top = max(p[3] for p in group)
        mean = statistics.fmean(p[2] for p in group if p[3] == top)
        if best is None or (top, mean) > best[:2]:
            best = (top, mean, group[0][1])
    return None if best is None else best[2]


def check_rank_agrees(picks: list[Pick]) -> None:
    """pick_at over everything == strategies.rank over the same models (a guard that
    the benchmark's ranking is the library's)."""
    space = digits_labels_space()
    models = []
    for _, sample, metric, fid in picks:
        model = space.freeze(sample)
        model.status = ModelStatus.Trained
        model.metrics.final = metric
        model.metrics.stopped_at = None if fid == math.inf else int(fid)
        models.append(model)
    ranked = rank(models)
    mine = pick_at(picks, math.inf)
    if ranked and arch_key(ranked[0].sample or {}) != arch_key(mine or {}):
        raise AssertionError("the benchmark's pick differs from strategies.rank")


# --- Optuna ------------------------------------------------------------------------------


def run_optuna(pruner_name: str, table: CurveTable, seed: int, workers: int,
               horizon: float) -> tuple[list[Pick], int, float]:
    """TPE with ``pruner_name``'s pruner, ``workers`` trials at a time on the simulated
    clock, until ``horizon``: the same picks as :func:`run_ours`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    epochs = table.epochs
    pruner: optuna.pruners.BasePruner
    if pruner_name == "sha":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA)
    else:
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                                reduction_factor=ETA)
    study = optuna.create_study(direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    noise = random.Random(f"noise-{seed}")
    heap: list[tuple[float, int, list[Any]]] = []
    picks: list[Pick] = []
    counter = [0, 0]  # heap order, trials

    def start(now: float) -> None:
        for _ in range(1000):  # architectures outside the table fail at once
            trial = study.ask()
            sample: dict[str, Any] = {
                "width": trial.suggest_categorical("width", list(WIDTHS)),
                "depth": trial.suggest_categorical("depth", list(range(1, MAX_DEPTH + 1)))}
            for i in range(1, MAX_DEPTH + 1):
                sample[f"op{i}"] = trial.suggest_categorical(f"op{i}", list(OPS))
            runs = table.curves.get(arch_key(sample))
            if runs is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            accuracies, seconds = runs[noise.randrange(len(runs))]
            counter[0] += 1
            counter[1] += 1
            heapq.heappush(heap, (now + seconds[0], counter[0],
                                  [trial, sample, accuracies, seconds, 0]))
            return

    for _ in range(workers):
        start(0.0)
    now = 0.0
    while heap and heap[0][0] <= horizon:
        now, _, state = heapq.heappop(heap)
        trial, sample, accuracies, seconds, epoch = state
        trial.report(accuracies[epoch], epoch + 1)
        if epoch + 1 == epochs:
            study.tell(trial, accuracies[epoch])
            picks.append((now, sample, accuracies[epoch], math.inf))
            start(now)
        elif trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            picks.append((now, sample, accuracies[epoch], epoch + 1))
            start(now)
        else:
            state[4] = epoch + 1
            counter[0] += 1
            heapq.heappush(heap, (now + seconds[epoch + 1], counter[0], state))
    return picks, counter[1], now


# --- the report --------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--methods", default="", help="comma-separated (default: all)")
    parser.add_argument("--optuna-seeds", type=int, default=None,
                        help="seeds for Optuna's methods (default: --seeds); its TPE "
                        "sampler takes time quadratic in the trials of a study")
    parser.add_argument("--population", type=int, default=POPULATION,
                        help="regularized evolution's population")
    parser.add_argument("--eta", type=float, default=ETA, help="ASHA's reduction factor")
    args = parser.parse_args(argv)
    table = CurveTable.load(args.table)
    horizon = max(BUDGETS) * table.full_seconds / args.workers
    runners: dict[str, Callable[[int], tuple[list[Pick], int, float]]] = {
        name: (lambda seed, make=make: run_ours(make, table, seed, args.workers, horizon))
        for name, make in ours(table.epochs, args.population, args.eta).items()}
    try:
        import optuna  # noqa: F401
    except ImportError:
        print("optuna is not installed: its methods are skipped", file=sys.stderr)
    else:
        for pruner in ("sha", "hyperband"):
            runners[f"optuna-{pruner}"] = (
                lambda seed, p=pruner: run_optuna(p, table, seed, args.workers, horizon))
    wanted = [m for m in args.methods.split(",") if m] or list(runners)
    simulated = real = 0.0
    print(json.dumps({"figure": "table", "architectures": len(table.curves),
                      "epochs": table.epochs, "full_seconds": round(table.full_seconds, 3),
                      "best_mean": table.best_mean}), flush=True)
    for name in wanted:
        regrets: dict[int, list[float]] = {b: [] for b in BUDGETS}
        trials = []
        started = time.perf_counter()
        count = args.seeds
        if name.startswith("optuna-") and args.optuna_seeds is not None:
            count = args.optuna_seeds
        for seed in range(args.first_seed, args.first_seed + count):
            picks, made, seconds = runners[name](seed)
            if not name.startswith("optuna-"):
                simulated += seconds
                check_rank_agrees(picks)
            trials.append(made)
            for budget in BUDGETS:
                until = budget * table.full_seconds / args.workers
                regrets[budget].append(table.regret(pick_at(picks, until)))
        wall = time.perf_counter() - started
        if not name.startswith("optuna-"):
            real += wall
        for budget in BUDGETS:
            values = regrets[budget]
            print(json.dumps({
                "method": name, "budget": budget,
                "regret_mean": round(statistics.fmean(values), 5),
                "regret_std": round(statistics.pstdev(values), 5), "seeds": count,
                "trials_mean": round(statistics.fmean(trials), 1),
                "wall_s": round(wall, 2)}), flush=True)
    if real:
        print(json.dumps({"figure": "simulated_speedup",
                          "value": round(simulated * args.workers / real, 1),
                          "unit": "simulated worker-seconds per real second"}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
