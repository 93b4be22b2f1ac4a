"""Replay a table of learning curves on a virtual clock: the simulated-time pool.

:class:`CurveTable` reads the table ``benchmarks/learning_curves.py`` makes (one JSON
line per architecture and training seed: validation accuracy and seconds of each
epoch). :class:`SimulatedPool` is a worker pool for :class:`engine.Engine` whose trials
train nothing: a trial of an architecture picks one of its recorded seeds (from the
pool's ``rng``: the noise a real run has) and, epoch by epoch, sleeps the recorded
seconds and reports the recorded accuracy. Run under trio with
``trio.testing.MockClock(autojump_threshold=0)``, those sleeps take no real time: the
clock jumps to the next wake-up whenever every task waits, so a search with several
asynchronous workers runs as it would have on the real hardware, in simulated seconds
(``anyio.current_time()``), at the speed of the engine's own bookkeeping.

A sample whose architecture is not in the table is ``invalid`` at once, using no
simulated time. A table that holds only part of the space can be cut to the depths it
covers completely (:meth:`CurveTable.restricted`, :attr:`CurveTable.complete_depth`),
and the labels space to the same depths (``digits_labels_space(max_depth)``), so a
search never meets an architecture the table lacks.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import random
import statistics
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

import engine as e
from engine.errors import TrialFailed
from engine.workers._base import TrialOutput

OPS = ("conv3x3", "conv5x5", "sepconv3x3", "maxpool3x3", "skip")
WIDTHS = (4, 8, 16, 32)
MAX_DEPTH = 3
DEFAULT_TABLE = Path(__file__).resolve().parent / "data" / "digits_curves_10-40-50.jsonl.gz"


def arch_key(sample: Mapping[str, Any]) -> str:
    """The architecture a digits sample builds (blocks past ``depth`` are unused)."""
    depth = int(sample["depth"])
    ops = ",".join(str(sample[f"op{i}"]) for i in range(1, depth + 1))
    return f"w{sample['width']}-d{depth}-{ops}"


def architectures(max_depth: int = MAX_DEPTH) -> list[dict[str, Any]]:
    """Every distinct architecture of depth at most ``max_depth``, as a sample (the
    blocks past its depth take the first operation)."""
    found = []
    for width, depth in itertools.product(WIDTHS, range(1, max_depth + 1)):
        for ops in itertools.product(OPS, repeat=depth):
            padded = list(ops) + [OPS[0]] * (max_depth - depth)
            sample: dict[str, Any] = {"width": width, "depth": depth}
            sample.update({f"op{i + 1}": op for i, op in enumerate(padded)})
            found.append(sample)
    return found


class DigitsLabels(e.BaseModelSpace):
    """The labels of the digits space of ``examples/_digits.py`` (width, depth, one
    operation per block), without torch: what the strategies search in a simulation.
    ``max_depth`` below 3 is that space cut to its shallower networks."""

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        if not 1 <= max_depth <= MAX_DEPTH:
            raise ValueError(f"max_depth must be 1 to {MAX_DEPTH}, got {max_depth}")
        self.width = e.ensure_frozen(e.Categorical(list(WIDTHS), label="width"))
        self.depth = e.ensure_frozen(e.Categorical(list(range(1, max_depth + 1)),
                                                   label="depth"))
        self.ops = e.ensure_frozen(e.MutableList(
            e.Categorical(list(OPS), label=f"op{i}") for i in range(1, max_depth + 1)))


def _unused(model: Any) -> float:
    raise RuntimeError("a simulated space's models run on SimulatedPool only")


def digits_labels_space(max_depth: int = MAX_DEPTH) -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(DigitsLabels(max_depth),
                                            e.FunctionEvaluator(_unused))


class CurveTable:
    """Curves by architecture: ``curves[key]`` is a list (one per seed) of
    ``(accuracies, seconds)`` per epoch. ``max_depth`` is the depth of the space the
    table is searched in (see :meth:`restricted`)."""

    def __init__(self, curves: dict[str, list[tuple[list[float], list[float]]]],
                 max_depth: int = MAX_DEPTH) -> None:
        if not curves:
            raise ValueError("the curve table is empty")
        self.curves, self.max_depth = curves, max_depth
        self.epochs = min(len(acc) for runs in curves.values() for acc, _ in runs)
        self.full_mean = {key: statistics.fmean(acc[self.epochs - 1] for acc, _ in runs)
                          for key, runs in curves.items()}
        self.best_mean = max(self.full_mean.values())
        self.full_seconds = statistics.fmean(
            sum(secs[:self.epochs]) for runs in curves.values() for _, secs in runs)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_TABLE) -> CurveTable:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        curves: dict[str, list[tuple[list[float], list[float]]]] = {}
        with opener(path, "rt") as file:
            try:
                for line in file:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # a line cut when the maker was stopped
                        continue
                    curves.setdefault(row["arch"], []).append(
                        (row["val_acc"], row["epoch_seconds"]))
            except (EOFError, gzip.BadGzipFile):  # the last member cut by a kill
                pass
        return cls(curves)

    @property
    def complete_depth(self) -> int:
        """The largest depth ``d`` such that every architecture of depth at most ``d``
        is in the table (0 when not even every depth-1 one is)."""
        for depth in range(1, MAX_DEPTH + 1):
            if any(arch_key(sample) not in self.curves for sample in architectures(depth)):
                return depth - 1
        return MAX_DEPTH

    def restricted(self, max_depth: int) -> CurveTable:
        """The table of the architectures of depth at most ``max_depth`` (the best mean
        and the mean training time are then theirs)."""
        keys = {arch_key(sample) for sample in architectures(max_depth)}
        return CurveTable({k: v for k, v in self.curves.items() if k in keys}, max_depth)

    def regret(self, sample: Mapping[str, Any] | None) -> float:
        """Best full-fidelity mean accuracy minus ``sample``'s (the worst one's when
        nothing was found)."""
        if sample is None:
            return self.best_mean - min(self.full_mean.values())
        return self.best_mean - self.full_mean[arch_key(sample)]


class VirtualClockPool:
    """What the simulated pools share: ``capacity`` named workers that train nothing
    (a subclass's ``run`` sleeps recorded seconds on the virtual clock and reports
    recorded values), the simulated time each trial ended (``ends[model_id]``) and the
    worker-seconds used so far (``busy``). ``rng`` draws which recorded seed a trial
    replays: the noise a real run has."""

    name = "simulated"
    prefetch = 0
    #: A trial continues from any step (``trial.resume_step``): a paused model resumes
    #: where it paused, replaying the same recorded seed.
    resumes_from_step = True

    def __init__(self, capacity: int, rng: random.Random) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity, self.rng = capacity, rng
        self._free = [f"sim-{i}" for i in reversed(range(capacity))]
        self.ends: dict[int, float] = {}
        self._runs: dict[int, int] = {}  # model id -> the recorded seed its trials replay
        self.busy = 0.0

    @property
    def capacity(self) -> int:
        return self._capacity

    def check(self, model: e.ExecutableModelSpace) -> None:
        """Any model will do: a subclass's ``run`` rejects what its table lacks."""

    async def serve(self, monitor: Any, *,
                    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        for name in reversed(self._free):
            monitor.worker_started(name, None, ())
        task_status.started()
        await anyio.sleep_forever()

    @contextlib.contextmanager
    def occupied(self, trial: Any) -> Iterator[None]:
        """Hold a free worker for ``trial`` (started on it) while the block runs; then
        record the simulated time it ended and the worker-seconds it used."""
        worker = self._free.pop()
        started = anyio.current_time()
        try:
            trial.started(worker)
            yield
        finally:
            now = anyio.current_time()
            self.ends[trial.model_id] = now
            self.busy += now - started
            self._free.append(worker)


class SimulatedPool(VirtualClockPool):
    """A pool of ``capacity`` simulated workers replaying the learning curves of
    ``table`` (see the module docstring)."""

    def __init__(self, table: CurveTable, capacity: int, rng: random.Random) -> None:
        super().__init__(capacity, rng)
        self.table = table

    async def run(self, model: e.ExecutableModelSpace, trial: Any) -> TrialOutput:
        runs = self.table.curves.get(arch_key(model.sample or {}))
        if runs is None:
            await anyio.lowlevel.checkpoint()
            raise TrialFailed("NotInTable", "this architecture was not trained for the "
                              "table", invalid=True)
        if trial.model_id not in self._runs:
            self._runs[trial.model_id] = self.rng.randrange(len(runs))
        accuracies, seconds = runs[self._runs[trial.model_id]]
        with self.occupied(trial):
            for epoch in range(trial.resume_step, self.table.epochs):
                await anyio.sleep(seconds[epoch])
                trial.intermediate(accuracies[epoch])
            trial.final(accuracies[self.table.epochs - 1])
        return TrialOutput()
