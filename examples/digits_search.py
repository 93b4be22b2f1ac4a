"""A real architecture search: small CNNs trained with PyTorch on handwritten digits.

The space, data and evaluator are in ``_digits.py`` beside this script: per-block
operation (LayerChoice), channel width (mutable layer arguments) and depth (Repeat),
trained on scikit-learn's bundled 8x8 digits. Models train in ``ProcessPool`` workers,
one torch thread each; each reports its validation accuracy after every epoch. With
``--strategy asha`` evolution proposes the architectures and ASHA (asynchronous
successive halving, stopping variant) stops a model at epoch 1, 3, 9... when its
validation accuracy there is not in the top third of those recorded at that epoch, so
the workers spend their time on the promising ones. The search ranks by validation
accuracy, full trainings first (a model stopped early ranks below them); the best and
the worst architectures are then trained again from the same seed here and scored on
the held-out test images.

Every event goes to a run file (SQLite): look into it with ``nas-engine show RUN``;
``--run RUN`` on an interrupted run resumes it.

Run: ``python examples/digits_search.py`` (``--help`` lists the flags and defaults:
``--strategy random|evolution|asha --trials N --seconds S --workers N --epochs N
--seed N --deterministic --run FILE``). To compare strategies at the same wall time,
give each the same ``--seconds`` and more ``--trials`` than it can train.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from _digits import DEFAULT_DATA, describe, describe_split, digits_space, ensure_split, held_out

import engine as e
from engine import show_progress
from strategies import (
    ASHA,
    RandomSearch,
    RegularizedEvolution,
    Strategy,
    fidelity,
    rank,
    ranked_samples,
    search,
)

STRATEGIES = ("random", "evolution", "asha")


def make_strategy(name: str, seed: int, trials: int, deterministic: bool = False,
                  epochs: int = 5, population: int | None = None) -> Strategy:
    """``random``, ``evolution`` (its population ``population``, by default a quarter of
    the trials, at least 4; its tournaments a third of the population, the strategy's
    default), or ``asha``:
    that evolution as ASHA's proposer, rungs at epochs 1, 3, 9... below ``epochs``,
    a third of the models going on at each."""
    if name == "random":
        return RandomSearch(seed, deterministic=deterministic)
    size = population if population is not None else max(4, trials // 4)
    evolution = RegularizedEvolution(size, seed=seed, deterministic=deterministic)
    if name == "evolution":
        return evolution
    if name == "asha":
        if deterministic:
            raise ValueError("--deterministic does not apply to --strategy asha: its "
                             "stopping decisions depend on the order models report in")
        return ASHA(evolution, min_resource=1, max_resource=epochs, reduction_factor=3)
    raise ValueError(f"unknown strategy {name!r}: pick one of {STRATEGIES}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Search small CNNs on scikit-learn's handwritten digits.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--strategy", choices=STRATEGIES, default="evolution",
                        help="how to propose architectures (asha: evolution's, stopping "
                        "the unpromising ones early)")
    parser.add_argument("--trials", type=int, default=40, help="models to train")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop the search after this many seconds of wall time "
                        "(the models still training then are interrupted)")
    parser.add_argument("--population", type=int, default=None,
                        help="evolution's population (asha's too); default: a quarter of "
                        "--trials, at least 4")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes, one torch thread each")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per model")
    parser.add_argument("--seed", type=int, default=0, help="strategy and training seed")
    parser.add_argument("--deterministic", action="store_true",
                        help="the same seed gives the same search whatever order models "
                        "finish in (workers may wait for a slow model)")
    parser.add_argument("--run", type=Path, metavar="FILE",
                        help="run file to write, or to resume; without it, a new file in ./runs")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="FILE",
                        help="the split digits data, made on first use")
    args = parser.parse_args(argv)
    for name in ("trials", "workers", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.population is not None and args.population < 1:
        parser.error(f"--population must be at least 1, got {args.population}")
    if args.seconds is not None and not args.seconds > 0:
        parser.error(f"--seconds must be more than 0, got {args.seconds}")
    if args.strategy == "asha" and args.deterministic:
        parser.error("--deterministic does not apply to --strategy asha")
    return args


async def run_search(args: argparse.Namespace, data: Path) -> e.Engine:
    """The search, with a live progress line on a terminal; returns the stopped engine."""
    # preload: each worker imports the digits module (and torch) before the first model
    engine = e.Engine(e.ProcessPool(args.workers, preload=["_digits"]), max_trials=args.trials,
                      max_duration=args.seconds,
                      journal=args.run if args.run is not None else True)
    events = engine.subscribe()  # before the start: sees every event of this run
    async with anyio.create_task_group() as tg:
        async with engine:
            print(f"run file: {engine.journal_path}", flush=True)
            # engine=: a resumed run's line counts what it finished before, of the budget
            tg.start_soon(functools.partial(show_progress, events, engine=engine))
            await search(digits_space(data, args.epochs, args.seed),
                         make_strategy(args.strategy, args.seed, args.trials,
                                       args.deterministic, args.epochs, args.population),
                         engine)
    return engine


def report(engine: e.Engine, args: argparse.Namespace, data: Path, seconds: float) -> None:
    """The ranking, the best and worst architectures with their test accuracy, and how
    to look into the run file."""
    handles = engine.handles()
    ids = {id(h.model): h.model_id for h in handles}
    ranked = rank(h.model for h in handles)
    counts = ", ".join(f"{n} {s}" for s, n in _status_counts(handles).items())
    stopped = sum(h.model.metrics.stopped_at is not None for h in handles)
    early = f" ({stopped} stopped early)" if stopped else ""
    print(f"{len(handles)} models in {seconds:.0f} s: {counts}{early}")
    if not ranked:
        print("no model trained: see `nas-engine show` for the errors")
        return
    print_ranking(ranked, ids)
    for name, model in (("best", ranked[0]), ("worst", ranked[-1])):
        val, test = held_out(model.sample or {}, data, args.epochs, args.seed)
        print(f"{name:<5} model #{ids[id(model)]}: {describe(model.sample or {})}")
        print(f"      validation {ranked_score(model)} in the search{_early(model)}; "
              f"trained again: validation {val:.3f}, test {test:.3f}")
    print(f"look into the run: nas-engine show {engine.journal_path}")


def print_ranking(ranked: list[e.ExecutableModelSpace], ids: dict[int, int],
                  top: int = 5) -> None:
    """The ``top`` distinct architectures of ``ranked`` (``rank()``'s order), each with
    the validation accuracy it ranks by and, when it did not train to its end, the step
    it reached (``ids``: model id by ``id(model)``)."""
    print("rank  val acc  architecture (the models that trained it)")
    for place, (architecture, models) in enumerate(_distinct(ranked)[:top], start=1):
        trained_by = " ".join(f"#{ids[id(m)]}" for m in models)
        print(f"{place:>4}  {ranked_score(models[0])}    {architecture}  ({trained_by})"
              f"{_early(models[0])}")


def ranked_score(model: e.ExecutableModelSpace) -> str:
    """What ``model`` ranks by, and at which fidelity: ``0.953`` for a model trained to
    its end, ``0.953 at step 3`` for one stopped or paused at step 3 (a paused model has
    no ``metric``: it ranks by its last intermediate). The value is the one
    ``ranked_samples`` ranks it by (alone: not averaged with its sample's repeats)."""
    (entry,) = ranked_samples([model])
    reached = fidelity(model)
    at = "" if reached == math.inf else f" at step {reached:.0f}"
    return f"{entry.mean:.3f}{at}"


def _early(model: e.ExecutableModelSpace) -> str:
    """`` (stopped early)`` or `` (paused)`` for a model that did not train to its end."""
    if model.metrics.stopped_at is not None:
        return " (stopped early)"
    return " (paused)" if model.status is e.ModelStatus.Paused else ""


def _distinct(ranked: list[e.ExecutableModelSpace]) -> list[tuple[str, list[Any]]]:
    """Ranked models grouped by architecture: samples that differ only in the operation
    of an unused block (deeper than ``depth``) build the same network."""
    groups: dict[str, list[Any]] = {}
    for model in ranked:
        groups.setdefault(describe(model.sample or {}), []).append(model)
    return list(groups.items())


def _status_counts(handles: list[e.ModelHandle]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for handle in handles:
        counts[handle.status.value] = counts.get(handle.status.value, 0) + 1
    return counts


async def main(argv: list[str]) -> None:
    args = parse_args(argv)
    data = ensure_split(args.data)
    print(describe_split(data))
    limit = f", at most {args.seconds:g} s" if args.seconds is not None else ""
    print(f"search: {args.strategy}, {args.trials} trials{limit}, {args.workers} workers, "
          f"{args.epochs} epochs each, seed {args.seed}", flush=True)
    started = time.monotonic()
    engine = await run_search(args, data)
    seconds = time.monotonic() - started
    await anyio.to_thread.run_sync(report, engine, args, data, seconds)


def run(argv: list[str]) -> Any:
    try:
        return anyio.run(main, argv)
    except KeyboardInterrupt:
        print("interrupted: run again with --run FILE (the run file above) to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
