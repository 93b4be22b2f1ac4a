"""How much of the workers' time trains on real work: the main example's search.

Run: python benchmarks/real_overhead.py [--seeds 3] [--trials 40] [--workers 2]

For each seed it runs the search of ``examples/digits_search.py`` (regularized
evolution over the digits CNNs, ``--trials`` models, ``--workers`` ProcessPool workers
that preload the example's module, a run file). It then builds and trains every
architecture the search trained again, in ``--workers`` fresh processes at once (as
busy as the search kept the machine), each timing its share after a warm-up trial (a
warm worker: torch imported, first-run costs paid): the sum is the work the search
really had to do. The figure is that sum over ``workers x wall time``, the mean over
seeds, where the wall time runs from the search's first model to its last one's end
(the workers started and warm)::

    {"figure": "useful_fraction", "value": 0.87, "unit": "fraction"}

``useful_fraction_with_startup`` counts the wall time from the Engine's creation to its
exit instead (worker start-up included). Per-seed lines (``search_wall``,
``engine_wall``, ``retimed_training``) come first. The machine is shared: run it when
it is quiet, and compare figures from the same run. ``--no-preload`` runs the pool as
an example that names no preload would.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from _digits import digits_space, ensure_split
from digits_search import make_strategy

import engine as e
from engine.events import ModelFailed
from strategies import search


def emit(figure: str, value: float, unit: str, **extra: Any) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 4), "unit": unit, **extra}),
          flush=True)


def make_pool(workers: int, preload: bool) -> e.ProcessPool:
    """The example's pool; with ``preload``, its workers import ``_digits`` at start-up
    (where ProcessPool has no ``preload``, an older engine, without)."""
    if preload and "preload" in inspect.signature(e.ProcessPool).parameters:
        return e.ProcessPool(workers, preload=["_digits"])
    return e.ProcessPool(workers)


async def one_search(data: Path, seed: int, args: argparse.Namespace,
                     folder: Path) -> tuple[float, float, list[dict[str, Any]]]:
    """The example's search for ``seed``: its wall time from the first model submitted
    to the last one's end, from the Engine's creation to its exit, and the samples it
    trained."""
    begin = time.monotonic()
    engine = e.Engine(make_pool(args.workers, args.preload), max_trials=args.trials,
                      journal=folder / f"seed{seed}.db")
    events = engine.subscribe()
    async with engine:
        searching = time.monotonic()
        await search(digits_space(data, args.epochs, seed),
                     make_strategy("evolution", seed, args.trials), engine)
        searched = time.monotonic()
    end = time.monotonic()
    handles = engine.handles()
    trained = [dict(h.model.sample or {}) for h in handles
               if h.status == e.ModelStatus.Trained]
    if not trained:
        statuses = sorted({h.status.value for h in handles})
        errors = [f"{x.error_type}: {x.message}" async for x in events
                  if isinstance(x, ModelFailed)]
        raise SystemExit(f"seed {seed}: no model trained ({len(handles)} models: "
                         f"{statuses}; first error {errors[:1]})")
    return searched - searching, end - begin, trained


def retime_here(samples: list[dict[str, Any]], data: str, epochs: int, seed: int) -> float:
    """Seconds to build and train every sample once more in this process, after a
    warm-up trial (first-run costs are not training); repeats are timed once."""
    space = digits_space(data, epochs, seed)
    space.freeze(samples[0]).execute()
    seconds: dict[str, float] = {}
    total = 0.0
    for sample in samples:
        key = json.dumps(sample, sort_keys=True)
        if key not in seconds:
            model = space.freeze(sample)
            begin = time.perf_counter()
            model.execute()
            seconds[key] = time.perf_counter() - begin
        total += seconds[key]
    return total


def retime(samples: list[dict[str, Any]], data: Path, args: argparse.Namespace,
           seed: int) -> float:
    """:func:`retime_here` in ``workers`` fresh processes at once (as busy as the search
    kept the machine), each taking every ``workers``-th sample; the sum of their times."""
    parts = [samples[i::args.workers] for i in range(args.workers)]
    processes = [subprocess.Popen(
        [sys.executable, __file__, "--retime", json.dumps(
            {"samples": part, "data": str(data), "epochs": args.epochs, "seed": seed})],
        stdout=subprocess.PIPE) for part in parts if part]
    totals = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"re-timing failed with code {process.returncode}")
        totals.append(float(out))
    return sum(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (3)")
    parser.add_argument("--trials", type=int, default=40, help="models per search (40)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per model (5)")
    parser.add_argument("--no-preload", dest="preload", action="store_false",
                        help="do not name _digits in ProcessPool(preload=...)")
    parser.add_argument("--retime", help=argparse.SUPPRESS)  # a re-timing process
    args = parser.parse_args()
    if args.retime is not None:
        job = json.loads(args.retime)
        print(retime_here(job["samples"], job["data"], job["epochs"], job["seed"]))
        return
    fractions, overall = [], []
    with tempfile.TemporaryDirectory(prefix="real-overhead-") as folder:
        data = ensure_split(Path(folder) / "digits.npz")
        for seed in range(args.seeds):
            wall, whole, samples = anyio.run(one_search, data, seed, args, Path(folder))
            useful = retime(samples, data, args, seed)
            emit("search_wall", wall, "s", seed=seed, trained=len(samples))
            emit("engine_wall", whole, "s", seed=seed)
            emit("retimed_training", useful, "s", seed=seed)
            fractions.append(useful / (args.workers * wall))
            overall.append(useful / (args.workers * whole))
    emit("useful_fraction_with_startup", sum(overall) / len(overall), "fraction",
         per_seed=[round(f, 4) for f in overall])
    emit("useful_fraction", sum(fractions) / len(fractions), "fraction",
         per_seed=[round(f, 4) for f in fractions])


if __name__ == "__main__":
    main()
