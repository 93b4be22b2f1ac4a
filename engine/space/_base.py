"""The spaces every other one builds on: :class:`BaseModelSpace` (mutables organised as a
model, rebuilt from its recorded init call) and :class:`ExecutableModelSpace` (what an
engine runs), with ``_Plan``, what checking and freezing a sample needs of a space."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from engine._context import model_context
from engine._objective import MetricValue
from engine._recipe import Call
from engine.errors import TrialError
from engine.evaluator import Evaluator, FunctionEvaluator
from engine.mutable import (
    LabeledMutable,
    Mutable,
    Sample,
    SampleValidationError,
    Uses,
    check_sample_type,
    check_used,
    freeze_value,
    leaves_of,
)
from engine.space._status import Metrics, ModelStatus


def _discover(obj: Any) -> Iterable[LabeledMutable]:
    return leaves_of(v for k, v in vars(obj).items() if not k.startswith("_"))


class BaseModelSpace(Mutable):
    """A collection of mutables organised as a model.

    A plain subclass keeps mutables in attributes (found by :meth:`leaf_mutables`) and
    reads them through :func:`ensure_frozen`, so that, built under
    :func:`model_context`, it holds the chosen values. Each subclass records its init
    arguments (the recipe :class:`SimplifiedModelSpace` rebuilds it from).
    """


    #: Whether instances record their init call (an ExecutableModelSpace, which is
    #: never rebuilt from one, does not: it would cost every frozen model a Call).
    _records_init: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__ and cls._records_init:
            cls.__init__ = _recording(cls.__init__)  # type: ignore[method-assign]

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        return _discover(self)

    def init_call(self) -> Call:
        """How to build this space again: its class and init arguments."""
        call = self.__dict__.get("_nas_init_call")
        return call if isinstance(call, Call) else Call(type(self))

    def freeze(self, sample: Mapping[str, Any]) -> Any:
        """A new instance built under ``model_context(sample)`` from the init call."""
        self.validate(sample)
        with model_context(sample):
            return frozen_call(self.init_call(), sample).build()


def frozen_call(call: Call, sample: Mapping[str, Any]) -> Call:
    """``call`` with every mutable argument replaced by the value ``sample`` picks."""
    return Call(
        call.factory,
        tuple(freeze_value(a, sample) for a in call.args),
        {k: freeze_value(v, sample) for k, v in call.kwargs.items()},
    )


def _recording(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if "_nas_init_call" not in self.__dict__:  # the outermost __init__ records the call
            self.__dict__["_nas_init_call"] = Call(type(self), args, kwargs)
        init(self, *args, **kwargs)

    return __init__


class ExecutableModelSpace(BaseModelSpace):
    """A model space, or one model frozen from it, that an engine can execute."""

    evaluator: Evaluator | None
    sample: Sample | None
    error: TrialError | None = None  # set by the engine when the model failed
    _records_init = False

    def __init__(self, status: ModelStatus = ModelStatus.Initialized) -> None:
        self.status = status
        self.metrics = Metrics()
        self.sample = None

    @property
    def metric(self) -> MetricValue | None:
        """The final metric (a dict when it reported several), or ``None`` before it is
        trained (or when it failed)."""
        return self.metrics.final

    def execute(self) -> Any:
        """Build the model and run the evaluator on it. Returns the final metric, or an
        awaitable of it when the evaluator is async."""
        if self.evaluator is None:
            raise ValueError("this model has no evaluator: pass one to from_model()")
        return self.evaluator._execute(self)

    @classmethod
    def from_model(
        cls, model_space: BaseModelSpace, evaluator: Evaluator | None = None, **configs: Any
    ) -> ExecutableModelSpace:
        raise NotImplementedError(f"{cls.__name__}.from_model")

    def executable_model(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.executable_model")

    def check_contains(self, sample: Mapping[str, Any]) -> SampleValidationError | None:
        """Why ``sample`` does not fit: paths are ``["model", label]`` or
        ``["evaluator", label]``, or ``[label]`` for a label the space does not have."""
        check_sample_type(sample)
        plan = self._plan()  # DuplicateLabelError when model and evaluator clash
        error = check_used(plan.model_uses, plan.model_leaves, sample)
        if error is not None:
            return error.prefixed("model")
        if self.evaluator is not None:
            error = plan.check_evaluator(self.evaluator, sample)
            if error is not None:
                return error.prefixed("evaluator")
        known = plan.known
        for label in sample:
            if label not in known:
                return SampleValidationError(
                    f"unknown label {label!r}: the space's labels are {sorted(known)}", [label])
        return None

    def simplify(self) -> dict[str, LabeledMutable]:
        """The leaves of the model and the evaluator, keyed by label (see
        :meth:`engine.mutable.Mutable.simplify`), as read at the space's first use."""
        return dict(self._plan().known)

    def _plan(self) -> _Plan:
        """What checking and freezing samples needs of this space whatever the sample,
        taken once: a space's mutables are read at its first use (``from_model`` uses
        it), so a space changed after that is not seen; make a new one instead."""
        plan = self.__dict__.get("_nas_plan")
        if plan is None or plan.evaluator is not self.evaluator:  # (a copy's, changed)
            plan = self.__dict__["_nas_plan"] = _Plan(self)
        return plan

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        yield from self._model_mutables().leaf_mutables()
        if self.evaluator is not None:
            yield from self.evaluator.leaf_mutables()

    def _model_mutables(self) -> Mutable:
        raise NotImplementedError

    def _model_uses(self) -> Uses:
        return self._model_mutables().uses()

    def uses(self) -> Uses:
        """What the model uses (see :meth:`engine.mutable.Mutable.uses`) and every label of
        the evaluator."""
        parts = [self._model_uses()]
        if self.evaluator is not None:
            parts.append(self.evaluator.uses())
        return Uses((), parts)

    @property
    def build_sample(self) -> Sample | None:
        """The sample a frozen model is built with: :attr:`sample` (the canonical one, see
        :meth:`~engine.mutable.Mutable.canonical`) with the labels it does not use at their
        defaults, for constructors that build unused parts too."""
        built = self.__dict__.get("_build_sample")
        return built if built is not None else self.sample

    def _frozen_from(self, model: ExecutableModelSpace, sample: Mapping[str, Any]
                     ) -> None:
        """Mark ``model`` frozen from ``sample``: its :attr:`sample` is the canonical form,
        so two samples that build the same network give equal ``model.sample`` (unlike the
        reference, which keeps the sample as given; it allows a subclass to differ).
        Called after the sample was validated."""
        plan = self._plan()
        used = plan.used(sample)
        model.sample = {label: value for label, value in sample.items() if label in used}
        if len(used) != len(plan.known):
            model.__dict__["_build_sample"] = plan.completed(sample, used)
        model.status = ModelStatus.Frozen

    def _frozen_evaluator(self, sample: Mapping[str, Any]) -> Evaluator | None:
        """The evaluator of the model frozen from ``sample`` (validated): a plain
        FunctionEvaluator without mutables is copied as it is, without checking the
        sample again."""
        evaluator = self.evaluator
        if evaluator is None:
            return None
        if type(evaluator) is FunctionEvaluator and not self._plan().evaluator_leaves:
            return FunctionEvaluator(evaluator.function, **evaluator.kwargs)
        return evaluator.freeze(sample)

    def _check_initialized(self) -> None:
        if self.status is not ModelStatus.Initialized:
            raise RuntimeError(
                f"cannot freeze a model whose status is {self.status.value}: freeze the "
                "initialized space it came from"
            )

    def __str__(self) -> str:
        if self.sample is None:
            return repr(self)
        metrics = f", {self.metrics!r}" if self.metrics else ""
        return f"{type(self).__name__}({self.sample}{metrics}, {self.status.value!r})"


class _Plan:
    """What an :class:`ExecutableModelSpace` needs to check and freeze any sample, read
    from its mutables once (see ``ExecutableModelSpace._plan``): its leaves by label
    (``known``, model and evaluator), the model's leaves and what a sample uses of them,
    the evaluator's, and what a sample uses of the whole space. Recomputing these took
    most of a freeze (``simplify()`` about six times, each a walk of the mutables)."""

    __slots__ = ("evaluator", "evaluator_leaves", "evaluator_uses", "known",
                 "model_leaves", "model_uses", "uses")

    def __init__(self, space: ExecutableModelSpace) -> None:
        self.known = Mutable.simplify(space)  # DuplicateLabelError on a clash
        self.model_uses = space._model_uses()
        self.model_leaves = space._model_mutables().simplify()
        self.uses = space.uses()
        self.evaluator = evaluator = space.evaluator
        self.evaluator_leaves = evaluator.simplify() if evaluator is not None else {}
        # The evaluator's own check, when it keeps Mutable's: walked from here.
        self.evaluator_uses = (
            evaluator.uses() if evaluator is not None
            and type(evaluator).check_contains is Mutable.check_contains else None)

    def check_evaluator(self, evaluator: Evaluator, sample: Mapping[str, Any]
                        ) -> SampleValidationError | None:
        if self.evaluator_uses is None:
            return evaluator.check_contains(sample)
        return check_used(self.evaluator_uses, self.evaluator_leaves, sample)

    def used(self, sample: Mapping[str, Any]) -> dict[str, LabeledMutable]:
        """The leaves ``sample`` uses (see ``Mutable.used_labels``)."""
        found: dict[str, LabeledMutable] = {}
        error = self.uses.walk(sample, found)
        if error is not None:
            raise error
        known = self.known
        return {label: leaf for label, leaf in found.items() if label in known}

    def completed(self, sample: Mapping[str, Any], used: Mapping[str, Any]) -> Sample:
        """``Mutable.completed``: unused labels at their leaf's default."""
        full = {label: leaf.default_value() for label, leaf in self.known.items()
                if label not in used}
        full.update((label, value) for label, value in sample.items() if label in used)
        return full


def _check_parts(model_space: Any, evaluator: Any) -> None:
    if not isinstance(model_space, BaseModelSpace):
        raise TypeError(f"from_model needs a BaseModelSpace (for example an "
                        f"engine.nn.ModelSpace), got {type(model_space).__name__}")
    if evaluator is not None and not isinstance(evaluator, Evaluator):
        raise TypeError(f"evaluator must be an Evaluator, got {type(evaluator).__name__}")
