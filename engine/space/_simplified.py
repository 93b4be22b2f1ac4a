""":class:`SimplifiedModelSpace` (a recipe plus its simplified mutables) and its wire form:
:class:`ModelMessage`, :func:`dump_model` and :func:`load_model`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from engine._context import model_context
from engine._recipe import Call, Recipe, RecipeError, check_plain_data
from engine.evaluator import Evaluator, EvaluatorSpec, FunctionEvaluator
from engine.mutable import Mutable, MutableDict, Uses
from engine.space._base import BaseModelSpace, ExecutableModelSpace, _check_parts, frozen_call
from engine.space._raw import RAW_FORMAT_STAYS, RawFormatModelSpace
from engine.space._status import Metrics, ModelStatus


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
