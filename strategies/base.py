"""The strategy protocol, the loop strategies share, and :func:`search`.

A strategy *decides*; the engine does the I/O. :meth:`BaseStrategy.run` is the one
loop every built-in strategy uses::

    resume      read engine.handles(): every model already known is observed once
    loop:
      wait      await engine.wait_capacity()   (a worker is free)
      collect   finished models, in completion order -> observe(model)
                (with ``deterministic``: in submission order, waiting for the oldest)
      promote   await promote(engine): True when it resumed a paused model instead
      propose   propose(leaves) -> a sample, or None when nothing is left to try
      submit    engine.submit(space.freeze(sample))
    drain       await what is still in flight -> observe(model)

The loop stops at the first of: the engine's budget (``engine.exhausted`` or
:class:`~engine.errors.BudgetExhausted` from ``submit``), the strategy's own
``max_trials``, or ``propose`` returning ``None``. :attr:`BaseStrategy.stop_reason`
says which.

Samples are de-duplicated by :func:`sample_key`: :meth:`BaseStrategy.is_new` says whether
a sample was ever submitted (or found in the journal at resume), whatever became of it.
Strategies propose only new samples, except where one evaluates a sample again on
purpose (:class:`~strategies.evolution.RegularizedEvolution` with ``reevaluate``).

:func:`rank` and :func:`search` score a sample by the mean metric of its trained models,
so a sample evaluated several times (noisy training) is ranked once, on all its evidence.
"""

from __future__ import annotations

import abc
import collections
import enum
import math
import random
import statistics
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeAlias

import anyio.lowlevel
import msgspec

from engine._front import front
from engine._objective import (
    MetricValue,
    Mode,
    Objective,
    at_top_fidelity,
    best_first,
    check_mode,
    is_score,
    ranked_value,
    score,
)
from engine._objective import fidelity as fidelity
from engine._objective import sample_key as sample_key
from engine.errors import BudgetExhausted, SearchFailed, TrialError
from engine.mutable import LabeledMutable, Sample, SampleValidationError
from engine.space import ExecutableModelSpace, ModelStatus

__all__ = (
    "BaseStrategy",
    "EngineLike",
    "HandleLike",
    "Mode",
    "NOT_YET",
    "NotYet",
    "RankedSample",
    "StopReason",
    "Strategy",
    "check_mode",
    "fidelity",
    "pool_window",
    "rank",
    "ranked_samples",
    "sample_key",
    "search",
)

Leaves: TypeAlias = Mapping[str, LabeledMutable]


class HandleLike(Protocol):
    """What a strategy reads of an engine's model handle."""

    @property
    def model_id(self) -> int: ...

    @property
    def model(self) -> ExecutableModelSpace: ...

    @property
    def done(self) -> bool: ...

    def __await__(self) -> Generator[Any, None, ExecutableModelSpace]: ...

    def stop(self) -> None: ...


class EngineLike(Protocol):
    """The part of :class:`engine.Engine` that strategies use."""

    @property
    def exhausted(self) -> bool: ...

    def submit(self, model: ExecutableModelSpace) -> Awaitable[HandleLike]: ...

    def wait_capacity(self) -> Awaitable[None]: ...

    def next_finished(self) -> Awaitable[HandleLike | None]: ...

    def handles(self) -> Sequence[HandleLike]: ...

    def set_objective(self, mode: str = "max", *, name: str | None = None) -> object: ...


class Strategy(Protocol):
    """Anything with ``run``: proposes samples, freezes ``space``, submits them to
    ``engine`` and awaits results. It never touches workers or the store."""

    async def run(self, engine: EngineLike, space: ExecutableModelSpace) -> None: ...


class StopReason(enum.StrEnum):
    """Why :meth:`BaseStrategy.run` stopped proposing."""

    budget = "budget"  # the engine's budget is used up
    max_trials = "max_trials"  # the strategy's own max_trials
    space_exhausted = "space_exhausted"  # propose() found nothing new to try


class NotYet(enum.Enum):
    """The type of :data:`NOT_YET`."""

    token = "not_yet"


#: What :meth:`BaseStrategy.propose` returns when it looked at as many candidates as one
#: call may without finding a new one: the loop lets other tasks run, then asks again.
NOT_YET: Final = NotYet.token


def _scored(model: ExecutableModelSpace) -> bool:
    """A trained model with a final score, or a paused one with an intermediate score
    (it ranks at the step it reached: ``engine._objective.ranked_value``)."""
    return is_score(ranked_value(model))


class RankedSample(msgspec.Struct, frozen=True, kw_only=True):
    """One sample as :func:`ranked_samples` scores it: ``mean`` of the ``metrics`` of its
    ranked models at the highest ``fidelity`` it reached (in the order given), and
    ``model``, the first of them. ``fidelity`` is ``math.inf`` for models trained to
    their end, else the step they were stopped or paused at (see :func:`fidelity`)."""

    model: ExecutableModelSpace
    mean: float
    metrics: tuple[float, ...]
    fidelity: float = math.inf

    @property
    def count(self) -> int:
        """How many trained models the mean is over."""
        return len(self.metrics)


def ranked_samples(models: Iterable[ExecutableModelSpace],
                   mode: Mode = "max") -> list[RankedSample]:
    """Each sample with a ranked model, highest fidelity first, then best mean metric
    first (ties keep the order of the samples' first ranked models): a sample trained
    to the end ranks above every sample only stopped early or paused, whatever their
    metrics. A paused model ranks by its last intermediate at the step it reached, as
    if stopped there. A sample's mean is over its models at the highest fidelity it
    reached. Models that did not train (and are not paused after a report), or whose
    metric is missing or NaN, are left out of the means; a sample with no ranked model
    is dropped."""
    checked = check_mode(mode)
    groups: dict[bytes, list[ExecutableModelSpace]] = {}
    for model in models:
        if _scored(model):
            groups.setdefault(sample_key(model.sample or {}), []).append(model)
    entries = [_entry(group) for group in groups.values()]
    ranked = best_first(entries, lambda entry: entry.mean, checked)
    return sorted(ranked, key=lambda entry: -entry.fidelity)  # stable: best first within


def _entry(group: list[ExecutableModelSpace]) -> RankedSample:
    top = at_top_fidelity(group)
    metrics = tuple(float(ranked_value(m)) for m in top)  # type: ignore[arg-type]
    return RankedSample(model=top[0], mean=statistics.fmean(metrics), metrics=metrics,
                        fidelity=fidelity(top[0]))


def rank(models: Iterable[ExecutableModelSpace], mode: Mode = "max") -> list[ExecutableModelSpace]:
    """One model per sample, best first: a sample evaluated several times is scored by the
    mean metric of its trained models and stands for itself once, by its first trained
    model (whose own ``metric`` is that one evaluation's; :func:`ranked_samples` has the
    means). A paused model ranks at the step it reached (:func:`ranked_samples`); its
    ``metric`` is None (its value: ``metrics.intermediates[-1]``). Models that did not
    train or have no metric are dropped."""
    return [entry.model for entry in ranked_samples(models, mode)]


class BaseStrategy(abc.ABC):
    """The shared loop (see the module docstring). Subclasses implement :meth:`propose`
    and, when they learn from results, :meth:`observe`.

    ``seed`` seeds :attr:`rng`, the only source of randomness a strategy may use.
    ``max_trials`` caps the models this strategy knows of, the resumed ones included, so
    a resumed run continues to the same total. ``mode`` says whether a bigger metric is
    better.

    Reproducibility: proposals are asynchronous, made from the results that have
    arrived when a worker frees, so with several workers a strategy that learns from
    results (evolution) can propose other samples when models finish in another order:
    its seed alone reproduces a run only with one worker. (Random and grid search never
    look at results: the seed alone fixes their samples.) With ``deterministic``
    each proposal sees exactly the results of the models submitted before it except
    the latest ``W - 1``, observed in submission order, where ``W`` is the number of
    models the engine's pool takes at once (workers plus prefetch): the loop waits for
    the oldest model in flight rather than the first to finish, so a slow model can
    leave workers idle. The same seed, space, pool size and results then give the same
    samples whatever order models finish in.
    """

    def __init__(
        self, *, seed: int | None = None, max_trials: int | None = None, mode: str = "max",
        deterministic: bool = False,
    ) -> None:
        if max_trials is not None and (isinstance(max_trials, bool)
                                       or not isinstance(max_trials, int) or max_trials < 0):
            raise ValueError(f"max_trials must be a non-negative int or None, got {max_trials!r}")
        if not isinstance(deterministic, bool):
            raise TypeError(f"deterministic must be True or False, got {deterministic!r}")
        self.deterministic = deterministic
        self.seed = seed
        self.max_trials = max_trials
        self.mode: Mode = check_mode(mode)
        self.rng = random.Random(seed)
        self.stop_reason: StopReason | None = None
        self._seen: set[bytes] = set()
        self._pending: list[HandleLike] = []
        self._ids: set[int] = set()
        self._canonical: Callable[[Mapping[str, Any]], Sample] | None = None  # see run()
        self._submitting: ExecutableModelSpace | None = None  # the model being submitted
        self._early: list[tuple[HandleLike, int, MetricValue]] = []  # heard submitting
        self._hook_error: BaseException | None = None

    # --- hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def propose(self, leaves: Leaves) -> Sample | NotYet | None:
        """Called whenever a worker is free and budget is left: the next sample to try,
        or ``None`` when there is nothing new left (the run then stops). ``leaves`` maps
        each label of the space to its mutable. Use :meth:`is_new` to skip seen samples.

        It runs on the event loop, so it must return within a few milliseconds: a
        search that needs longer returns :data:`NOT_YET` and continues at the next call
        (the loop passes a checkpoint in between)."""

    def observe(self, model: ExecutableModelSpace) -> None:
        """Called once for each finished model, in completion order: for the journal's
        models at resume and for this run's as they finish (trained, failed, invalid or
        interrupted). The default ignores it."""
        del model  # nothing to learn for a strategy that does not look at results

    def on_intermediate(self, handle: HandleLike, step: int, value: float) -> None:
        """Called on the event loop as each intermediate result of one of this run's
        models arrives (``step`` counts from 1), in step order per model, while
        :meth:`run` runs: synchronously, right after the engine recorded it, so a
        scheduler can call ``handle.stop()`` before the model reports again. It must
        return quickly; an exception stops :meth:`run` with that error (the models in
        flight stay with the engine). The default ignores it."""
        del handle, step, value

    def declare_objectives(self, engine: EngineLike) -> None:
        """Called at the start of :meth:`run`: tell ``engine`` what this strategy
        optimizes, so the run file, ``best()`` and the CLI rank the same way. The default
        declares the one metric under :attr:`mode`; multi-objective strategies declare
        their objectives."""
        engine.set_objective(self.mode)

    async def promote(self, engine: EngineLike) -> bool:
        """Called when a worker is free, before the budget checks and :meth:`propose`:
        resume a paused model of this run (``await handle.resume()``) rather than start
        a new one, and return True; the loop then comes round again. A resumed model is
        no new trial, so neither budget stops it (a wall-time budget does: ``resume``
        raises BudgetExhausted). The default resumes nothing (promotion ASHA does)."""
        del engine
        return False

    # --- state -------------------------------------------------------------------------

    def canonical(self, sample: Mapping[str, Any]) -> Sample:
        """``sample`` without the labels it leaves unused in the space being searched
        (see :meth:`engine.mutable.Mutable.canonical`): the form models are frozen with,
        so samples that build the same network count as one. ``sample`` itself before
        :meth:`run` or when the space cannot tell (a gating label is invalid)."""
        if self._canonical is None:
            return dict(sample)
        try:
            return self._canonical(sample)
        except SampleValidationError:
            return dict(sample)

    def key_of(self, sample: Mapping[str, Any]) -> bytes:
        """:func:`sample_key` of :meth:`canonical`."""
        return sample_key(self.canonical(sample))

    def is_new(self, sample: Mapping[str, Any]) -> bool:
        """Whether no sample that builds the same network as ``sample`` (the same
        :meth:`canonical` form) was submitted or found at resume."""
        return self.key_of(sample) not in self._seen

    @property
    def seen_count(self) -> int:
        """How many distinct samples were submitted or found at resume."""
        return len(self._seen)

    @property
    def model_count(self) -> int:
        """How many models were submitted or found at resume, repeated samples included."""
        return len(self._ids)

    @property
    def in_flight(self) -> int:
        """How many of this run's models are submitted and not yet observed."""
        return len(self._pending)

    def in_flight_counts(self) -> collections.Counter[bytes]:
        """How many of this run's models in flight each sample (by :func:`sample_key`) has."""
        return collections.Counter(sample_key(h.model.sample or {}) for h in self._pending)

    def better(self, a: float, b: float) -> bool:
        """Whether metric ``a`` is strictly better than ``b`` under :attr:`mode`."""
        return a > b if self.mode == "max" else a < b

    def resume(self, engine: EngineLike) -> None:
        """Called once at the start of :meth:`run`: rebuild the state from every model the
        engine already knows (after a resume, the journal's). Finished models are
        observed; unfinished ones are awaited with this run's own. Paused ones (status
        ``paused``) are remembered, not awaited: they stay paused until a strategy that
        pauses models resumes them (``handle.resume()``) from its own ``resume``."""
        for handle in engine.handles():
            if handle.model_id in self._ids:
                continue
            self._remember(handle)
            if handle.done:
                self.observe(handle.model)
            elif handle.model.status != "paused":  # a paused one would never end here
                self._pending.append(handle)

    def _remember(self, handle: HandleLike) -> None:
        self._ids.add(handle.model_id)
        self._seen.add(self.key_of(handle.model.sample or {}))

    # --- the loop ------------------------------------------------------------------------

    async def run(self, engine: EngineLike, space: ExecutableModelSpace) -> None:
        """Search ``space`` on ``engine`` until a budget is used up or nothing new is
        left; return once every model it submitted has finished and been observed.
        It consumes ``engine.next_finished()``: do not read that elsewhere meanwhile.
        When cancelled, the models in flight stay with the engine."""
        if space.status is not ModelStatus.Initialized:
            raise ValueError(f"a strategy searches an initialized space, got one whose "
                             f"status is {space.status.value}: pass the space, not a model")
        self.declare_objectives(engine)
        # Hooks hear one number: a dict of metrics by the run's first objective.
        self._first_objective: Objective | None = getattr(engine, "objective", None)
        self.stop_reason = None
        self._canonical = space.canonicalizer()
        self._hook_error = None
        listen = getattr(engine, "listen", None)  # an engine without it: no intermediates
        remove = listen(self._heard) if callable(listen) else None
        try:
            await self._loop(engine, space)
        finally:
            if callable(remove):
                remove()
        self._raise_hook_error()

    async def _loop(self, engine: EngineLike, space: ExecutableModelSpace) -> None:
        self.resume(engine)
        leaves = space.simplify()
        window = pool_window(engine)
        while True:
            while self.stop_reason is None:
                await engine.wait_capacity()
                if self.deterministic:
                    await self._collect_in_order(engine, keep=window - 1)
                else:
                    await self._collect(engine, block=False)
                self._raise_hook_error()
                await self._step(engine, space, leaves)
            if self.deterministic:
                await self._collect_in_order(engine, keep=0)
            await self._collect(engine, block=True)
            # Models that broke a profile constraint give their budget back when they
            # end: search on with it.
            if self.stop_reason is not StopReason.budget or engine.exhausted:
                return
            self.stop_reason = None

    def _heard(self, handle: HandleLike, step: int, value: MetricValue) -> None:
        """The engine's listener: this run's models go to :meth:`on_intermediate`; one
        reported while its submit has not returned yet waits for it (order kept)."""
        if handle.model_id not in self._ids:
            if handle.model is self._submitting:
                self._early.append((handle, step, value))
            return
        self._tell(handle, step, value)

    def _tell(self, handle: HandleLike, step: int, value: MetricValue) -> None:
        if self._hook_error is not None:
            return
        if isinstance(value, dict):
            number = score(value, getattr(self, "_first_objective", None))
            value = math.nan if number is None else number
        try:
            self.on_intermediate(handle, step, value)
        except Exception as exc:
            self._hook_error = exc

    def _raise_hook_error(self) -> None:
        error, self._hook_error = self._hook_error, None
        if error is not None:
            raise error

    async def _step(self, engine: EngineLike, space: ExecutableModelSpace,
                    leaves: Leaves) -> None:
        """Resume a paused model, or propose and submit one sample, or set
        :attr:`stop_reason`."""
        if await self.promote(engine):
            return
        if engine.exhausted:
            self.stop_reason = StopReason.budget
            return
        if self.max_trials is not None and len(self._ids) >= self.max_trials:
            self.stop_reason = StopReason.max_trials
            return
        sample = self.propose(leaves)
        if isinstance(sample, NotYet):
            await anyio.lowlevel.checkpoint()  # let other tasks run; propose goes on later
            return
        if sample is None:
            self.stop_reason = StopReason.space_exhausted
            return
        model = space.freeze(sample)
        self._submitting = model
        try:
            handle = await engine.submit(model)
        except BudgetExhausted:
            self.stop_reason = StopReason.budget
            return
        finally:
            self._submitting = None
        self._remember(handle)
        self._pending.append(handle)
        early, self._early = self._early, []
        for heard in early:
            self._tell(*heard)

    async def _collect(self, engine: EngineLike, *, block: bool) -> None:
        """Observe finished models of this run in completion order; with ``block``, wait
        until none is in flight (paused ones are not: see :meth:`_drop_paused`)."""
        self._drop_paused()
        while self._pending and (block or any(h.done for h in self._pending)):
            handle = await engine.next_finished()
            if handle is None:  # someone else consumed them: take the finished directly
                for done in [h for h in self._pending if h.done]:
                    self._finish(done)
                self._drop_paused()  # nothing in flight: the others paused
                if block and self._pending:
                    await self._pending[0]
                continue
            if handle in self._pending:
                self._finish(handle)

    async def _collect_in_order(self, engine: EngineLike, *, keep: int) -> None:
        """Observe this run's models in submission order, waiting for each, until no more
        than ``keep`` are in flight (``deterministic``: a model that finished before an
        older one waits for it). ``next_finished`` only wakes the wait up."""
        while len(self._pending) > keep:
            self._drop_paused()
            if len(self._pending) <= keep:
                break
            oldest = self._pending[0]
            if oldest.done:
                self._finish(oldest)
            elif await engine.next_finished() is None:  # consumed elsewhere: wait directly
                await oldest

    def _finish(self, handle: HandleLike) -> None:
        self._pending.remove(handle)
        self.observe(handle.model)

    def _drop_paused(self) -> None:
        """A paused model (``handle.pause()``) is neither in flight nor finished: it
        leaves the models the loop awaits, unobserved (its strategy may resume it, see
        :meth:`promote`). A loop would otherwise wait for it for ever."""
        self._pending[:] = [h for h in self._pending
                            if h.model.status is not ModelStatus.Paused]


def pool_window(engine: EngineLike) -> int:
    """How many models ``engine``'s pool takes at once (workers plus prefetch); 1 for an
    engine that does not say."""
    pool = getattr(engine, "pool", None)
    capacity = getattr(pool, "capacity", 1)
    prefetch = getattr(pool, "prefetch", 0)
    return max(1, capacity + prefetch) if isinstance(capacity, int) and isinstance(
        prefetch, int) else 1


async def search(
    space: ExecutableModelSpace, strategy: Strategy, engine: EngineLike, *, mode: str | None = None
) -> list[ExecutableModelSpace]:
    """Run ``strategy`` over ``space`` on ``engine`` (an entered ``Engine``) and return
    :func:`rank` of the models the engine holds: one per ranked sample (trained, or left
    paused at the step it reached), highest fidelity first, best mean metric first at
    each. With several objectives (a multi-objective strategy, or
    ``engine.set_objectives``), the Pareto front instead (:func:`pareto_front`).
    ``mode`` defaults to the strategy's own (``"max"`` when it has none); it is
    the engine's objective (``engine.set_objective``), so ``engine.best()``, the run file
    and the CLI rank the same way. ValueError, before anything runs, when it contradicts
    the objective the engine (or its run file) already has.

    Raises :class:`~engine.errors.SearchFailed`, quoting the first failures, when the
    search ended with failed models and not one trained (a bug in the training code
    should not look like an empty result)."""
    chosen = check_mode(mode if mode is not None else getattr(strategy, "mode", "max"))
    several = getattr(strategy, "objectives", None)
    if several and hasattr(engine, "set_objectives"):  # a multi-objective strategy
        engine.set_objectives(list(several))
    else:
        engine.set_objective(chosen)
    await strategy.run(engine, space)
    handles = engine.handles()
    failed = [h for h in handles if h.model.status is ModelStatus.Failed]
    if failed and not any(_scored(h.model) or h.model.status is ModelStatus.Trained
                          for h in handles):
        unknown = TrialError(type="Failed", message="no error was recorded")
        errors = [(h.model_id, h.model.error or unknown) for h in failed]
        raise SearchFailed(sorted(errors, key=lambda pair: pair[0]))
    objectives = tuple(getattr(engine, "objectives", ()))
    if len(objectives) > 1:  # several objectives: the Pareto front, one model per sample
        return pareto_front((h.model for h in handles), objectives)
    return rank((h.model for h in handles), chosen)


def pareto_front(models: Iterable[ExecutableModelSpace],
                 objectives: Sequence[Objective]) -> list[ExecutableModelSpace]:
    """The trained ``models`` on the Pareto front of ``objectives`` (the first trained
    model of each sample), best first by the first objective."""
    first: dict[bytes, ExecutableModelSpace] = {}
    for model in models:
        if model.status is ModelStatus.Trained:
            first.setdefault(sample_key(model.sample or {}), model)
    return front(first.values(), lambda m: m.metrics.final, objectives)
