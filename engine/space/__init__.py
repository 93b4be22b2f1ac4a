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

The families live in private modules, each importing at run time only those listed
before it: ``_status`` (:class:`ModelStatus`, :class:`Metrics`), ``_base``
(:class:`BaseModelSpace`, :class:`ExecutableModelSpace`, :func:`frozen_call`), ``_raw``
(:class:`RawFormatModelSpace`) and ``_simplified`` (:class:`SimplifiedModelSpace`,
:class:`ModelMessage`, :func:`dump_model`, :func:`load_model`).
"""

from __future__ import annotations

# The imports marked F401 are not API: a class's string annotations are resolved in the
# module its __module__ names (typing.get_type_hints, msgspec.inspect), and the classes
# below keep the name engine.space, so this namespace holds what their annotations use,
# as the single module did (tests/test_space_paths.py checks each one resolves).
from typing import Any, ClassVar  # noqa: F401

import msgspec  # noqa: F401

from engine._context import current_model as current_model
from engine._context import ensure_frozen as ensure_frozen
from engine._context import model_context as model_context
from engine._objective import MetricValue  # noqa: F401
from engine._recipe import Recipe  # noqa: F401
from engine._recipe import RecipeError as RecipeError
from engine.errors import TrialError  # noqa: F401
from engine.evaluator import Evaluator, EvaluatorSpec  # noqa: F401
from engine.mutable import Sample  # noqa: F401
from engine.space._base import BaseModelSpace as BaseModelSpace
from engine.space._base import ExecutableModelSpace as ExecutableModelSpace
from engine.space._base import _Plan as _Plan
from engine.space._base import frozen_call as frozen_call
from engine.space._raw import RAW_FORMAT_STAYS as RAW_FORMAT_STAYS
from engine.space._raw import RawFormatModelSpace as RawFormatModelSpace
from engine.space._simplified import ModelMessage as ModelMessage
from engine.space._simplified import SimplifiedModelSpace as SimplifiedModelSpace
from engine.space._simplified import dump_model as dump_model
from engine.space._simplified import load_model as load_model
from engine.space._status import Metrics as Metrics
from engine.space._status import ModelStatus as ModelStatus

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

# Pickles (Ray ships models with cloudpickle), recipes (engine._recipe.Symbol) and run-file
# fingerprints name a class or function by its __module__. These were all defined in the
# single module engine/space.py before it became this package: keeping that name keeps
# what is written the same, and lets what was written before load. _Plan is among them
# because an initialized space keeps one (its "_nas_plan") and pickles with it.
for _moved in (
    BaseModelSpace, ExecutableModelSpace, Metrics, ModelMessage, ModelStatus,
    RawFormatModelSpace, SimplifiedModelSpace, dump_model, frozen_call, load_model, _Plan,
):
    _moved.__module__ = __name__
del _moved
