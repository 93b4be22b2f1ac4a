""":class:`RawFormatModelSpace`: the live model space, run in this process only."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from engine.evaluator import Evaluator
from engine.mutable import Mutable
from engine.space._base import BaseModelSpace, ExecutableModelSpace, _check_parts

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
