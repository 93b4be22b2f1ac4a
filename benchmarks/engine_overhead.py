"""Engine overhead figures, one JSON object per line: {"figure", "value", "unit"}.

Run: python benchmarks/engine_overhead.py [--quick] [--only NAME,NAME...]

Ratios are measured against a baseline in the same run (the machines are shared and
noisy); absolute rates are printed for context. ``parent_cpu_us_per_trial`` counts CPU
time, not wall time, so it holds on a loaded machine too.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the _*_figures helpers

import engine as e
from engine import Engine, InlinePool


class NoOpSpace(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Numerical(0.0, 1.0, label="x"))


def noop(model: NoOpSpace) -> float:
    return 0.0


async def chatty(model: NoOpSpace, reports: int) -> float:
    for i in range(reports):
        e.report_intermediate(i)
        if i % 256 == 0:
            await anyio.lowlevel.checkpoint()
    return 0.0


def emit(figure: str, value: float, unit: str, **extra: Any) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 4), "unit": unit, **extra}),
          flush=True)


async def drain(subscription: e.Subscription, counter: list[int]) -> None:
    async for _ in subscription:
        counter[0] += 1


async def inline_trials_per_s(trials: int, journal: Path | None = None) -> float:
    space = e.SimplifiedModelSpace.from_model(NoOpSpace(), e.FunctionEvaluator(noop))
    models = [space.freeze({"x": i / trials}) for i in range(trials)]
    seen = [0]
    async with anyio.create_task_group() as tg:
        engine = Engine(InlinePool(4), queue_size=64, journal=journal)
        tg.start_soon(drain, engine.subscribe(), seen)
        start = time.perf_counter()
        async with engine:
            for model in models:
                await engine.submit(model)
        elapsed = time.perf_counter() - start
    return trials / elapsed


async def events_per_s(reports: int) -> float:
    space = e.SimplifiedModelSpace.from_model(
        NoOpSpace(), e.FunctionEvaluator(chatty, reports=reports))
    counters = [[0], [0], [0]]
    async with anyio.create_task_group() as tg:
        engine = Engine(InlinePool(1), event_buffer=reports + 64)
        for counter in counters:
            tg.start_soon(drain, engine.subscribe(), counter)
        start = time.perf_counter()
        async with engine:
            await (await engine.submit(space.freeze({"x": 0.5})))
    elapsed = time.perf_counter() - start  # every subscriber has received every event
    total = counters[0][0]
    if any(c[0] != total for c in counters) or total < reports:
        raise RuntimeError(f"subscribers disagree: {[c[0] for c in counters]}")
    return total / elapsed


async def journal_ratio(trials: int) -> float:
    """No-op trials per second with the SQLite journal on, divided by with it off
    (interleaved, best of three each, to damp the noise of a shared machine)."""
    on, off = [], []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(3):
            off.append(await inline_trials_per_s(trials))
            on.append(await inline_trials_per_s(trials, Path(folder) / f"run{i}.nasrun"))
    return max(on) / max(off)


async def timed_chatty(model: NoOpSpace, reports: int, clock: list[float]) -> float:
    await chatty(model, reports)
    clock.append(time.perf_counter())  # just after the last report
    return 0.0


async def journal_100k_reports_s(reports: int = 100_000) -> float:
    """Seconds from a trial's last of 100,000 reports to its handle resolving, with the
    journal on (the handle resolves once the trial's final event is committed)."""
    clock: list[float] = []
    space = e.SimplifiedModelSpace.from_model(
        NoOpSpace(), e.FunctionEvaluator(timed_chatty, reports=reports, clock=clock))
    with tempfile.TemporaryDirectory() as folder:
        async with Engine(InlinePool(1), journal=Path(folder) / "run.nasrun") as engine:
            handle = await engine.submit(space.freeze({"x": 0.5}))
            model = await handle
            resolved = time.perf_counter()
    if len(model.metrics.intermediates) != reports:
        raise RuntimeError(f"the trial kept {len(model.metrics.intermediates)} reports")
    return resolved - clock[0]


class _Sink(io.TextIOBase):
    """Where the trials' prints go (InlinePool does not capture them)."""

    def write(self, text: str) -> int:
        return len(text)


def chatty_noop(model: NoOpSpace) -> float:
    print("x" * 10_239)  # 10 KB with its newline
    return 0.0


def rss_mb() -> float:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def rss_growth_mb_per_10k_trials(trials: int = 50_000) -> float:
    """RSS growth (MiB) per 10,000 no-op trials that each print 10 KB, through
    InlinePool(4) with one subscriber and the journal on; measured from the first fifth
    of the trials (warm) to the end, with every model still held by its engine."""
    space = e.SimplifiedModelSpace.from_model(NoOpSpace(), e.FunctionEvaluator(chatty_noop))
    warm, seen = trials // 5, [0]
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(_Sink()):
        async with anyio.create_task_group() as tg:
            engine = Engine(InlinePool(4), queue_size=64, journal=Path(folder) / "run.nasrun")
            tg.start_soon(drain, engine.subscribe(), seen)
            async with engine:
                for i in range(trials):
                    if i == warm:
                        start = rss_mb()
                    await engine.submit(space.freeze({"x": i / trials}))
        end = rss_mb()  # the engine (and its handles) is still alive
    if len(engine.handles()) != trials:
        raise RuntimeError(f"ran {len(engine.handles())} trials")
    return (end - start) / (trials - warm) * 10_000


async def _bare_thread_calls_per_s(calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await anyio.to_thread.run_sync(noop_call)
    return calls / (time.perf_counter() - start)


def noop_call() -> None:
    return None


async def _engine_trials_per_s(pool: e.WorkerPool, trials: int) -> float:
    """No-op trials per second through ``Engine(pool)`` (one subscriber, no journal),
    from the first submit, once the pool is up, to the last handle resolving."""
    space = e.SimplifiedModelSpace.from_model(NoOpSpace(), e.FunctionEvaluator(noop))
    models = [space.freeze({"x": i / trials}) for i in range(trials)]
    seen = [0]
    async with anyio.create_task_group() as tg:
        engine = Engine(pool, queue_size=64)
        tg.start_soon(drain, engine.subscribe(), seen)
        async with engine:
            start = time.perf_counter()
            handles = [await engine.submit(model) for model in models]
            for handle in handles:
                await handle
            elapsed = time.perf_counter() - start
    return trials / elapsed


async def inline_ratio(trials: int) -> float:
    """No-op trials per second through ``Engine(InlinePool(1))`` (one subscriber, no
    journal) over bare ``anyio.to_thread.run_sync`` no-op calls per second, one at a time:
    what the engine adds to the thread round trip it cannot avoid. Interleaved, best of
    three each."""
    engine, bare = [], []
    for _ in range(3):
        bare.append(await _bare_thread_calls_per_s(trials))
        engine.append(await _engine_trials_per_s(InlinePool(1), trials))
    return max(engine) / max(bare)


async def resume_100k_events_s() -> float:
    """Seconds for an Engine to reopen and resume a run of 100,000 events (best of 3)."""
    import _store_figures as store

    times = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.nasrun"
        await store.write_run(path, store.synthetic_events(100_000))
        for _ in range(3):
            engine = Engine(journal=path)
            start = time.perf_counter()
            async with engine:
                times.append(time.perf_counter() - start)
                if len(engine.handles()) < 9_000:
                    raise RuntimeError(f"resumed only {len(engine.handles())} models")
    return min(times)


def _figures(quick: bool) -> list[tuple[str, str, Callable[[], Awaitable[float]]]]:
    return [
        ("inline_trials_per_s", "trials/s", lambda: inline_trials_per_s(500 if quick else 3000)),
        ("events_per_s", "events/s", lambda: events_per_s(50_000 if quick else 300_000)),
        ("journal_ratio", "ratio", lambda: journal_ratio(300 if quick else 2000)),
        ("inline_ratio", "ratio", lambda: inline_ratio(300 if quick else 2000)),
        ("resume_100k_events_s", "s", resume_100k_events_s),
        ("journal_100k_reports_s", "s",
         lambda: journal_100k_reports_s(20_000 if quick else 100_000)),
        ("rss_growth_mb_per_10k_trials", "MiB",
         lambda: rss_growth_mb_per_10k_trials(5_000 if quick else 50_000)),
        *_optional_figures(quick),
    ]


async def main(quick: bool, only: list[str] | None) -> None:
    figures = _figures(quick)
    known = [name for name, _, _ in figures]
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise SystemExit(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for name, unit, measure in figures:
        if only is None or name in only:
            emit(name, await measure(), unit)


def _optional_figures(quick: bool) -> list[tuple[str, str, Callable[[], Awaitable[float]]]]:
    """Figures of the process pool and the store, where those parts exist."""
    found: list[tuple[str, str, Callable[[], Awaitable[float]]]] = []
    try:
        import _process_figures as proc
    except ImportError:
        proc = None
    if proc is not None:
        found += [("overhead_ratio", "ratio", proc.overhead_ratio),
                  ("parent_cpu_us_per_trial", "us",
                   lambda: proc.parent_cpu_us_per_trial(300 if quick else 1000)),
                  ("utilization", "fraction", proc.utilization)]
    try:
        import _ray_figures
        import ray  # noqa: F401  (the optional 'ray' extra)
    except ImportError:
        return found
    found.append(("ray_vs_process_ratio", "ratio", _ray_figures.ray_vs_process_ratio))
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (for CI smoke)")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--only", metavar="NAMES", default=None,
                        help="comma-separated figure names to run (default: all)")
    args = parser.parse_args()
    only = None if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    anyio.run(main, args.quick, only, backend=args.backend)
