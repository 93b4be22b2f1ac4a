"""Model spaces that an engine can execute.

Every model space is a :class:`BaseModelSpace`. The engine runs
:class:`ExecutableModelSpace` objects, which come in two formats:

- :class:`RawFormatModelSpace` keeps the live model space (and its weights): a frozen
  torch model is a copy of it with the sample applied. It never leaves this process.
- :class:`SimplifiedModelSpace` keeps a recipe (importable symbol + init arguments) and
  the simplified mutables. A frozen one is a small msgspec message; a worker rebuilds the
  model from the recipe under :func:`model_context`.

A space starts ``initialized``; :meth:`ExecutableModelSpace.freeze` gives a new
``frozen`` model, the only kind the engine accepts.
"""

from __future__ import annotations

import enum
import functools
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import msgspec

from engine._context import current_model, ensure_frozen, model_context
from engine._objective import MetricValue
from engine._recipe import Call, Recipe, RecipeError, check_plain_data
from engine.errors import TrialError
from engine.evaluator import Evaluator, EvaluatorSpec, FunctionEvaluator
from engine.mutable import (
    LabeledMutable,
    Mutable,
    MutableDict,
    Sample,
    SampleValidationError,
    Uses,
    check_sample_type,
    check_used,
    freeze_value,
    leaves_of,
)

__all__ = (
    "BaseModelSpace",
    "ExecutableModelSpace",
    "Metrics",
    "ModelStatus",
    "RawFormatModelSpace",
    "SimplifiedModelSpace",
    "current_model",
    "dump_model",
    "ensure_frozen",
    "load_model",
    "model_context",
    "ModelMessage",
    "RecipeError",
)


class ModelStatus(enum.StrEnum):
    """Where a model is in its life. Only ``frozen`` models go to an engine."""

    Initialized = "initialized"
    Mutating = "mutating"
    Frozen = "frozen"
    Training = "training"
    Trained = "trained"
    Failed = "failed"
    Interrupted = "interrupted"
    Invalid = "invalid"
    Retrying = "retrying"
    #: Its strategy paused it (``handle.pause()``): its worker is free, it keeps its
    #: intermediates and checkpoint, and ``handle.resume()`` queues it again.
    Paused = "paused"

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def frozen(self) -> bool:
        """A frozen model cannot be mutated any more."""
        return self not in (ModelStatus.Initialized, ModelStatus.Mutating)

    def completed(self) -> bool:
        """A completed status does not change any more."""
        return self in _COMPLETED


_COMPLETED = frozenset(
    {ModelStatus.Trained, ModelStatus.Failed, ModelStatus.Interrupted, ModelStatus.Invalid}
)


class Metrics(msgspec.Struct, kw_only=True):
    """A model's reported metrics: intermediates in order, and one final value."""

    intermediates: list[MetricValue] = msgspec.field(default_factory=list)
    #: A number, or a dict of named numbers when the model reported several metrics.
    final: MetricValue | None = None
    #: The step its strategy stopped it at (``final`` is then that step's intermediate);
    #: None when it trained to its end. See ``strategies.base.fidelity``.
    stopped_at: int | None = None

    def __bool__(self) -> bool:
        return bool(self.intermediates) or self.final is not None


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


RAW_FORMAT_STAYS = (
    "a RawFormatModelSpace holds a live model and cannot leave this process: run it with "
    "InlinePool, or convert the space with SimplifiedModelSpace.from_model"
)


class RawFormatModelSpace(ExecutableModelSpace):
    """Keeps the live model space; only runs in this process (an ``InlinePool``).

    Its executable model is the space's own ``freeze(sample)``. For a torch
    :class:`~engine.nn.ModelSpace` that is a deep copy of the live model with the sample
    applied, so weights and in-place edits made to the space are kept (see
    :meth:`engine.nn.ModelSpace.freeze` for the one case that is built again); a plain
    :class:`BaseModelSpace` is built again from its init call.
    """

    def __init__(self, model_space: BaseModelSpace, evaluator: Evaluator | None) -> None:
        super().__init__()
        self.model_space = model_space
        self.evaluator = evaluator
        # A frozen model can be large: keep it only while someone else does.
        self._frozen_model: weakref.ReferenceType[Any] | None = None

    @classmethod
    def from_model(
        cls, model_space: BaseModelSpace, evaluator: Evaluator | None = None, **configs: Any
    ) -> RawFormatModelSpace:
        _check_parts(model_space, evaluator)
        space = cls(model_space, evaluator)
        space.simplify()  # DuplicateLabelError now rather than at the first freeze
        return space

    def _model_mutables(self) -> Mutable:
        return self.model_space

    def freeze(self, sample: Mapping[str, Any]) -> RawFormatModelSpace:
        self._check_initialized()
        self.validate(sample)
        model = type(self)(self.model_space, self._frozen_evaluator(sample))
        self._frozen_from(model, sample)
        return model

    def executable_model(self) -> Any:
        """The frozen model (cached while it is alive elsewhere)."""
        if not self.status.frozen() or self.sample is None:
            raise RuntimeError("this model space is not frozen yet: call freeze(sample) first")
        cached = self._frozen_model() if self._frozen_model is not None else None
        if cached is None:
            cached = self.model_space.freeze(self.build_sample or {})
            try:
                self._frozen_model = weakref.ref(cached)
            except TypeError:  # not weakly referenceable (a dict, say): build it each time
                self._frozen_model = None
        return cached

    def __getstate__(self) -> Any:
        raise TypeError(RAW_FORMAT_STAYS)

    def __repr__(self) -> str:
        space = repr(self.model_space)
        space = space if len(space) <= 100 else space[:100] + "..."
        return (f"RawFormatModelSpace(model_space={space}, evaluator={self.evaluator!r}, "
                f"sample={self.sample!r}, status={self.status!r})")


class ModelMessage(msgspec.Struct, frozen=True, kw_only=True, tag="simplified",
                   omit_defaults=True):
    """A frozen :class:`SimplifiedModelSpace` as data."""

    model: Recipe
    evaluator: EvaluatorSpec | None
    sample: dict[str, Any]
    status: ModelStatus
    metrics: Metrics
    build_sample: dict[str, Any] | None = None  # see ExecutableModelSpace.build_sample


class SimplifiedModelSpace(ExecutableModelSpace):
    """A recipe plus its simplified mutables; rebuilt from scratch to execute."""

    _encoder: ClassVar[msgspec.msgpack.Encoder] = msgspec.msgpack.Encoder()
    _decoder: ClassVar[msgspec.msgpack.Decoder[ModelMessage]] = msgspec.msgpack.Decoder(
        ModelMessage)

    def __init__(
        self, model: Call, mutables: Mapping[str, Any] | MutableDict,
        evaluator: Evaluator | None, *, uses: Uses | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.mutables = mutables if isinstance(mutables, MutableDict) else MutableDict(mutables)
        self.evaluator = evaluator
        self._uses = uses  # which labels a sample uses (from the live space); None: all

    def _model_uses(self) -> Uses:
        return self._uses if self._uses is not None else self.mutables.uses()

    @classmethod
    def from_model(
        cls, model_space: BaseModelSpace, evaluator: Evaluator | None = None, **configs: Any
    ) -> SimplifiedModelSpace:
        _check_parts(model_space, evaluator)
        space = cls(model_space.init_call(), model_space.simplify(), evaluator,
                    uses=model_space.uses())
        space.simplify()  # DuplicateLabelError now rather than at the first freeze
        return space

    def _model_mutables(self) -> Mutable:
        return self.mutables

    def freeze(self, sample: Mapping[str, Any]) -> SimplifiedModelSpace:
        self._check_initialized()
        self.validate(sample)
        # Mutables passed as init arguments take their chosen value in the frozen recipe.
        model = type(self)(frozen_call(self.model, sample), self.mutables,
                           self._frozen_evaluator(sample))
        self._frozen_from(model, sample)
        return model

    def executable_model(self) -> Any:
        if self.sample is None:
            raise RuntimeError("this model space is not frozen yet: call freeze(sample) first")
        with model_context(self.build_sample or {}):
            return self.model.build()

    def dump(self) -> bytes:
        """This frozen model as a msgpack message; TypeError says what cannot be sent.

        A model that is frozen and has no metrics yet is dumped once: a submit dumps it
        for the pool's check and for the run file, and the second gets the first's
        bytes while its sample, recipe, evaluator and built sample are the same objects
        (replace one, rather than change it in place, to dump it afresh)."""
        built = self.__dict__.get("_build_sample")
        kept = self.__dict__.get("_nas_dumped")
        fresh = self.status is ModelStatus.Frozen and not self.metrics
        if (fresh and kept is not None and kept[0] is self.sample and kept[1] is self.model
                and kept[2] is self.evaluator and kept[3] is built):
            return kept[4]  # type: ignore[no-any-return]
        data = self._dump()
        self.__dict__["_nas_dumped"] = (
            (self.sample, self.model, self.evaluator, built, data) if fresh else None)
        return data

    def _dump(self) -> bytes:
        if self.sample is None:
            raise TypeError("only a frozen SimplifiedModelSpace can be dumped: freeze it first")
        try:
            recipe = self.model.recipe()
        except RecipeError as exc:
            raise TypeError(f"the model space cannot be sent to a worker: {exc}") from None
        for i, arg in enumerate(recipe.args):
            check_plain_data(arg, f"{self.model.display()}() argument {i}")
        for key, value in recipe.kwargs.items():
            check_plain_data(value, f"{self.model.display()}() argument {key!r}")
        for label, value in self.sample.items():
            check_plain_data(value, f"the sample's value for {label!r}")
        evaluator = self.evaluator.dump() if self.evaluator is not None else None
        built = self.__dict__.get("_build_sample")
        for label, value in (built or {}).items():
            check_plain_data(value, f"the built sample's value for {label!r}")
        message = ModelMessage(model=recipe, evaluator=evaluator, sample=self.sample,
                               status=self.status, metrics=self.metrics, build_sample=built)
        return self._encoder.encode(message)

    @classmethod
    def load(cls, data: bytes) -> SimplifiedModelSpace:
        """The model :meth:`dump` wrote; the recipe is resolved later, when it is built."""
        message = cls._decoder.decode(data)
        evaluator = FunctionEvaluator.load(message.evaluator) if message.evaluator else None
        model = cls(Call.of(message.model), {}, evaluator)
        model.sample = dict(message.sample)
        if message.build_sample is not None:
            model.__dict__["_build_sample"] = dict(message.build_sample)
        model.status = message.status
        model.metrics = message.metrics
        return model

    def __repr__(self) -> str:
        return (f"SimplifiedModelSpace(model={self.model.display()}, "
                f"mutables={self.mutables!r}, evaluator={self.evaluator!r}, "
                f"sample={self.sample!r}, status={self.status!r})")


def dump_model(model: ExecutableModelSpace) -> bytes:
    """A frozen model as bytes for another process; TypeError when it cannot leave."""
    if isinstance(model, SimplifiedModelSpace):
        return model.dump()
    if isinstance(model, RawFormatModelSpace):
        raise TypeError(RAW_FORMAT_STAYS)
    raise TypeError(f"{type(model).__name__} cannot be sent to another process")


def load_model(data: bytes) -> SimplifiedModelSpace:
    return SimplifiedModelSpace.load(data)

