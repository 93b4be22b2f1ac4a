"""A multi-objective architecture search: accuracy against parameter count on digits.

The space, data and evaluator are the ones of ``digits_search.py`` (``_digits.py``):
small CNNs trained with PyTorch on scikit-learn's 8x8 digits, each reporting its
validation accuracy. The run has two objectives, ``accuracy`` (max) and ``params``
(min). The training code is unchanged: the engine's profiler counts each model's
parameters in its worker before training and merges the count into the model's metrics
(``{"accuracy": 0.95, "params": 1234.0}``); ``--max-params N`` adds the constraint
``params <= N``, so a model above it ends ``invalid`` untrained and off the budget.

The search is NSGA-II-style regularized evolution (``MultiObjectiveEvolution``);
``search()`` returns the Pareto front, which is printed, best accuracy first, with each
member trained again from the same seed here and scored on the held-out test images.
``nas-engine show RUN`` prints the front too; ``nas-engine plot RUN -o front.png``
draws it.

Run: ``python examples/digits_multi_objective.py`` (``--help`` lists the flags:
``--trials N --workers N --epochs N --seed N --max-params N --run FILE``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from _digits import DEFAULT_DATA, describe, describe_split, digits_space, ensure_split, held_out

import engine as e
from strategies import MultiObjectiveEvolution, search

OBJECTIVES = (e.Objective(name="accuracy", mode="max"), e.Objective(name="params", mode="min"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Search small CNNs on digits for accuracy against parameter count.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--trials", type=int, default=40, help="models to train")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes, one torch thread each")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per model")
    parser.add_argument("--seed", type=int, default=0, help="strategy and training seed")
    parser.add_argument("--max-params", type=int, default=None, metavar="N",
                        help="constraint: models above N parameters are invalid, untrained")
    parser.add_argument("--top", type=int, default=10,
                        help="front members to train again and score on the test images")
    parser.add_argument("--run", type=Path, metavar="FILE",
                        help="run file to write, or to resume; without it, a new file in ./runs")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="FILE",
                        help="the split digits data, made on first use")
    args = parser.parse_args(argv)
    for name in ("trials", "workers", "epochs", "top"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


async def run_search(args: argparse.Namespace, data: Path) -> tuple[e.Engine, list[Any]]:
    """The search; returns the stopped engine and the Pareto front search() found."""
    engine = e.Engine(e.ProcessPool(args.workers, preload=["_digits"]), max_trials=args.trials,
                      journal=args.run if args.run is not None else True)
    constraints = [] if args.max_params is None else [f"params <= {args.max_params}"]
    async with engine:
        print(f"run file: {engine.journal_path}", flush=True)
        engine.set_objectives(OBJECTIVES)
        engine.set_profiler(e.Profiler(constraints=constraints))  # params, in the worker
        strategy = MultiObjectiveEvolution(OBJECTIVES, population_size=max(4, args.trials // 4),
                                           seed=args.seed)
        front = await search(digits_space(data, args.epochs, args.seed), strategy, engine)
    return engine, front


def report(engine: e.Engine, front: list[Any], args: argparse.Namespace, data: Path,
           seconds: float) -> None:
    """The front, best accuracy first, each member with its test accuracy."""
    handles = engine.handles()
    ids = {id(h.model): h.model_id for h in handles}
    trained = sum(h.status is e.ModelStatus.Trained for h in handles)
    print(f"{len(handles)} models in {seconds:.0f} s: {trained} trained, "
          f"{engine.constraint_violations} over the parameter limit")
    if not front:
        print("no model trained: see `nas-engine show` for the errors")
        return
    print(f"pareto front: {len(front)} architectures (max accuracy, min params)")
    print("    id  val acc    params  test acc  architecture")
    for model in front[:args.top]:
        metrics = model.metrics.final
        _, test = held_out(model.sample or {}, data, args.epochs, args.seed)
        print(f"{ids[id(model)]:>6}  {metrics['accuracy']:7.3f}  {metrics['params']:8.0f}  "
              f"{test:8.3f}  {describe(model.sample or {})}")
    print(f"look into the run: nas-engine show {engine.journal_path}")


async def main(argv: list[str]) -> None:
    args = parse_args(argv)
    data = ensure_split(args.data)
    print(describe_split(data))
    print(f"search: multi-objective evolution, {args.trials} trials, {args.workers} workers, "
          f"{args.epochs} epochs each, seed {args.seed}", flush=True)
    started = time.monotonic()
    engine, front = await run_search(args, data)
    seconds = time.monotonic() - started
    await anyio.to_thread.run_sync(report, engine, front, args, data, seconds)


def run(argv: list[str]) -> Any:
    try:
        return anyio.run(main, argv)
    except KeyboardInterrupt:
        print("interrupted: run again with --run FILE (the run file above) to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
