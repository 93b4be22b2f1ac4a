"""ASHA and Hyperband, promotion variant: models pause at rungs, and the best paused
ones are resumed to the next rung.

A new model trains to the first rung of its bracket and pauses there
(``handle.pause()``: its worker is freed, it keeps its intermediates and its
checkpoint). Each time a worker is free, before a new sample is proposed
(:meth:`~strategies.base.BaseStrategy.promote`), the best paused model of the top
``1 / eta`` of a rung not yet promoted from it, the highest rung first
(:class:`~strategies.schedulers._ladder.Ladder`), is resumed (``await
handle.resume()``) and trains on to the next rung, or to its end from the last one.
Only when none qualifies is a new sample proposed. Asynchronous: no worker waits for a
rung to fill; a rung of ``n`` models lets ``floor(n / eta)`` of them on.

Unlike the stopping variant, a model is never judged against models that arrived
later only by luck of timing: one passed over now can still be promoted once more
models reach its rung and it stays in their top ``1 / eta``. It needs an engine whose
models can pause and resume (training code that saves checkpoints; the simulated pool
of ``benchmarks/`` continues from any step).

The proposer observes each model once, when it first leaves its worker: at the first
rung of its bracket, as a model trained to that step (so a proposer that learns, like
evolution, compares new models at equal fidelity), or when it ends, if it ends before
pausing (failed, invalid, interrupted, or trained to its end in the bracket without
rungs).

With ``max_trials`` (or once the proposer has nothing new), no new model starts but
the schedule is completed: the models in flight pause or end, and those that qualify
are promoted, until none does (:meth:`PromotionHyperband.run`). Models still paused
when the run ends stay paused: a later run of the same run file resumes the schedule
with them (``resume`` rebuilds every rung from the journal's intermediates).
"""

from __future__ import annotations

from typing import Protocol

from engine.errors import BudgetExhausted
from engine.space import ExecutableModelSpace, Metrics, ModelStatus
from strategies.base import BaseStrategy, EngineLike, HandleLike
from strategies.schedulers._base import BracketScheduler
from strategies.schedulers._ladder import Ladder

__all__ = ("PausableHandle", "PromotionASHA", "PromotionHyperband")


class PausableHandle(HandleLike, Protocol):
    """A handle whose model can pause and resume (``engine.ModelHandle``)."""

    def pause(self) -> None: ...

    async def resume(self) -> None: ...


def trained_to(model: ExecutableModelSpace, step: int) -> ExecutableModelSpace:
    """A copy of ``model`` as if it had been stopped at ``step``: what the proposer
    observes of a model that paused there."""
    seen = object.__new__(type(model))  # copy.copy would pickle: a live model refuses
    vars(seen).update(vars(model))
    curve = list(model.metrics.intermediates[:step])
    seen.metrics = Metrics(intermediates=curve, final=curve[-1], stopped_at=step)
    seen.status = ModelStatus.Trained
    return seen


class PromotionHyperband(BracketScheduler):
    """Asynchronous Hyperband, promotion variant (see the module docstring).

    The arguments are :class:`~strategies.schedulers.Hyperband`'s: ``min_resource``
    the first rung of the most aggressive bracket (in steps), ``max_resource`` the steps
    of a full training, ``reduction_factor`` (eta), ``brackets`` how many brackets
    (default: all), each new model drawn into one from ``seed`` and its model id.
    Promotions happen within a bracket; the brackets are offered in order, the most
    aggressive first. ``proposer`` defaults to ``RandomSearch(seed)``.
    """

    def __init__(self, proposer: BaseStrategy | None = None, *, min_resource: int = 1,
                 max_resource: int, reduction_factor: float = 3,
                 brackets: int | None = None, max_trials: int | None = None,
                 seed: int | None = None) -> None:
        super().__init__(proposer, min_resource=min_resource, max_resource=max_resource,
                         reduction_factor=reduction_factor, brackets=brackets,
                         max_trials=max_trials, seed=seed)
        self.ladders = tuple(Ladder(rungs, reduction_factor, self.mode)
                             for rungs in self.brackets.rungs)
        self._level: dict[int, int] = {}  # model id -> the rung (index) it trains to
        self._paused: dict[int, PausableHandle] = {}  # paused (or pausing) at a rung
        self._told: set[int] = set()  # model ids the proposer observed
        self.promotions = 0  # models resumed so far

    def on_intermediate(self, handle: HandleLike, step: int, value: float) -> None:
        """Called as each intermediate arrives: at the rung the model trains to, record
        ``value`` there and pause the model."""
        bracket = self.brackets.of(handle.model_id)
        rungs = self.brackets.rungs[bracket]
        level = self._level.setdefault(handle.model_id, 0)
        if level < len(rungs) and step == rungs[level]:
            self.ladders[bracket].record(level, handle.model_id, value)
            pausable = _pausable(handle)
            pausable.pause()
            self._leave(pausable, step)

    def _leave(self, handle: PausableHandle, step: int) -> None:
        """``handle`` pauses: out of the proposer's models in flight (the loop's drops
        it once its pause took effect), and the proposer observes it at ``step`` unless
        it did before."""
        if handle in self.proposer._pending:
            self.proposer._pending.remove(handle)
        self._paused[handle.model_id] = handle
        self._inform(handle.model_id, trained_to(handle.model, step))

    def _inform(self, model_id: int, model: ExecutableModelSpace) -> None:
        if model_id not in self._told:
            self._told.add(model_id)
            self.proposer.observe(model)

    def _finish(self, handle: HandleLike) -> None:
        self._pending.remove(handle)
        if handle in self.proposer._pending:
            self.proposer._pending.remove(handle)
        self._inform(handle.model_id, handle.model)

    async def run(self, engine: EngineLike, space: ExecutableModelSpace) -> None:
        """:meth:`~strategies.base.BaseStrategy.run`; then, while a paused model
        qualifies for promotion (models in flight when the last new one was proposed
        paused at a rung), the loop runs again, resuming models only, until a pass
        promotes none (nothing qualifies, or the engine refuses: wall-time budget)."""
        await super().run(engine, space)
        while self._qualified():
            before = self.promotions
            await super().run(engine, space)
            if self.promotions == before:
                return

    def _qualified(self) -> bool:
        """Whether a paused model may be promoted now."""
        for ladder in self.ladders:
            for _, model_id in ladder.candidates():
                handle = self._paused.get(model_id)
                if handle is not None and handle.model.status is ModelStatus.Paused:
                    return True
        return False

    async def promote(self, engine: EngineLike) -> bool:
        """Called when a worker is free, before a new sample is proposed: resume the
        first model :class:`Ladder` offers that is paused (one that ended meanwhile is
        never offered again). Either it is resumed and True returned, or nothing changes
        (False: a wall-time budget refused it, or no model qualifies). Cancelled while
        it waits for the queue: nothing changes."""
        del engine
        for bracket, ladder in enumerate(self.ladders):
            for level, model_id in list(ladder.candidates()):
                handle = self._paused.get(model_id)
                if handle is None or handle.model.status is not ModelStatus.Paused:
                    if handle is not None and handle.model.status.completed():
                        del self._paused[model_id]  # stopped or cancelled while paused
                        ladder.promote(level, model_id)
                    continue  # not paused, or its pause has not taken effect yet
                return await self._resume(handle, bracket, level)
        return False

    async def _resume(self, handle: PausableHandle, bracket: int, level: int) -> bool:
        model_id, ladder = handle.model_id, self.ladders[bracket]
        # Marked before the await: the model may report its next rung before it returns.
        del self._paused[model_id]
        ladder.promote(level, model_id)
        self._level[model_id] = level + 1
        try:
            await handle.resume()
        except BaseException as exc:
            self._paused[model_id] = handle
            ladder.unpromote(level, model_id)
            self._level[model_id] = level
            if isinstance(exc, BudgetExhausted):
                return False
            raise
        self.promotions += 1
        if handle not in self._pending:
            self._pending.append(handle)
        return True

    def resume(self, engine: EngineLike) -> None:
        """Called once at the start of :meth:`run`: the journal's models rebuild every
        rung (what each model reported at the rungs of its bracket; a model that went
        past a rung was promoted from it), the paused ones wait for promotion, the
        unfinished ones are awaited; the proposer observes each model once."""
        for handle in engine.handles():
            if handle.model_id in self._ids:
                continue
            BaseStrategy._remember(self, handle)
            self.proposer._remember(handle)
            self.replay(handle)
            status = handle.model.status
            if status is ModelStatus.Paused:
                self._paused[handle.model_id] = _pausable(handle)
                steps = len(handle.model.metrics.intermediates)
                self._inform(handle.model_id, trained_to(handle.model, steps))
            elif handle.done:
                self._inform(handle.model_id, handle.model)
            else:
                self._pending.append(handle)
                self.proposer._pending.append(handle)

    def replay(self, handle: HandleLike) -> None:
        """Record a journal model at the rungs of its bracket it reached; it was promoted
        from those it went past, and trains (when resumed) to the next."""
        bracket = self.brackets.of(handle.model_id)
        curve = self.curve(handle)
        level = 0
        for index, rung in enumerate(self.brackets.rungs[bracket]):
            if len(curve) < rung:
                break
            self.ladders[bracket].record(index, handle.model_id, curve[rung - 1])
            if len(curve) > rung or handle.model.status is not ModelStatus.Paused:
                self.ladders[bracket].promote(index, handle.model_id)
                level = index + 1
            else:
                level = index
        self._level[handle.model_id] = level


class PromotionASHA(PromotionHyperband):
    """Asynchronous successive halving, promotion variant: :class:`PromotionHyperband`
    with one bracket, rungs at ``min_resource * eta**k`` below ``max_resource`` (see
    the module docstring). ``proposer`` defaults to ``RandomSearch(seed)``."""

    one_bracket = True

    def __init__(self, proposer: BaseStrategy | None = None, *, min_resource: int = 1,
                 max_resource: int, reduction_factor: float = 3,
                 max_trials: int | None = None, seed: int | None = None) -> None:
        super().__init__(proposer, min_resource=min_resource, max_resource=max_resource,
                         reduction_factor=reduction_factor, brackets=1,
                         max_trials=max_trials, seed=seed)

    @property
    def rungs(self) -> tuple[int, ...]:
        """The steps where models pause."""
        return self.brackets.rungs[0]

    @property
    def ladder(self) -> Ladder:
        """The rungs' records."""
        return self.ladders[0]



def _pausable(handle: HandleLike) -> PausableHandle:
    if not callable(getattr(handle, "pause", None)) \
            or not callable(getattr(handle, "resume", None)):
        raise TypeError(f"promotion ASHA pauses and resumes models, and this engine's "
                        f"handles cannot ({type(handle).__name__} has no pause/resume): "
                        f"use ASHA (the stopping variant)")
    return handle  # type: ignore[return-value]
