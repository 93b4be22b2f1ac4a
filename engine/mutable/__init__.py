"""Mutables: the choices a model space is made of.

A *sample* is a flat ``{label: value}`` dict. Every leaf mutable has a label and
takes its value from the sample; containers (:class:`MutableList`,
:class:`MutableDict`) only group mutables. Freezing a mutable with a sample gives
the plain value it stands for.

Exceptions raised here::

    ValueError
    ├── SampleValidationError   a sample does not fit a space (``paths`` say where)
    │   └── SampleMissingError  a label the model needs is not in the sample
    └── DuplicateLabelError     one label bound to two different mutables

``SampleValidationError.paths`` are ordered outermost first: ``["model", "width"]``
reads "in the model, at label width". A leaf puts its label in; a model space puts
``model`` or ``evaluator`` in front.

The families live in private modules, each importing at run time only those listed
before it: ``_sample`` (the Sample type, the errors, how values compare), ``_uses``
(which leaves a sample uses), ``_base`` (:class:`Mutable`), ``_expression`` (the
operators and :class:`MutableExpression`), ``_leaves`` (:class:`LabeledMutable`,
:class:`Categorical`), ``_numerical`` (:class:`Numerical`), ``_shortcuts``
(:func:`choice`, :func:`uniform`, ...) and ``_containers`` (:class:`MutableList`,
:class:`MutableDict`).
"""

from __future__ import annotations

from engine.mutable._base import Mutable as Mutable
from engine.mutable._base import freeze_value as freeze_value
from engine.mutable._base import leaves_of as leaves_of
from engine.mutable._containers import MutableDict as MutableDict
from engine.mutable._containers import MutableList as MutableList
from engine.mutable._expression import MutableExpression as MutableExpression
from engine.mutable._expression import _if_else as _if_else
from engine.mutable._expression import _max as _max
from engine.mutable._expression import _min as _min
from engine.mutable._leaves import Categorical as Categorical
from engine.mutable._leaves import LabeledMutable as LabeledMutable
from engine.mutable._leaves import check_weights as check_weights
from engine.mutable._numerical import Numerical as Numerical
from engine.mutable._sample import DuplicateLabelError as DuplicateLabelError
from engine.mutable._sample import Sample as Sample
from engine.mutable._sample import SampleMissingError as SampleMissingError
from engine.mutable._sample import SampleValidationError as SampleValidationError
from engine.mutable._sample import ValueIndex as ValueIndex
from engine.mutable._sample import check_sample_type as check_sample_type
from engine.mutable._shortcuts import choice as choice
from engine.mutable._shortcuts import lognormal as lognormal
from engine.mutable._shortcuts import loguniform as loguniform
from engine.mutable._shortcuts import normal as normal
from engine.mutable._shortcuts import qlognormal as qlognormal
from engine.mutable._shortcuts import qloguniform as qloguniform
from engine.mutable._shortcuts import qnormal as qnormal
from engine.mutable._shortcuts import quniform as quniform
from engine.mutable._shortcuts import randint as randint
from engine.mutable._shortcuts import uniform as uniform
from engine.mutable._uses import Uses as Uses
from engine.mutable._uses import check_used as check_used

__all__ = (
    "Categorical",
    "choice",
    "lognormal",
    "loguniform",
    "normal",
    "qlognormal",
    "qloguniform",
    "qnormal",
    "quniform",
    "randint",
    "uniform",
    "DuplicateLabelError",
    "LabeledMutable",
    "Mutable",
    "MutableDict",
    "MutableExpression",
    "MutableList",
    "Numerical",
    "Sample",
    "SampleMissingError",
    "SampleValidationError",
    "Uses",
)

# Pickles, recipes (engine._recipe.Symbol) and run-file fingerprints name a class or
# function by its __module__. These were all defined in the single module engine/mutable.py
# before it became this package: keeping that name keeps what is written the same, and
# lets what was written before load (so the pickled helpers below stay importable here).
for _moved in (
    Categorical, DuplicateLabelError, LabeledMutable, Mutable, MutableDict, MutableExpression,
    MutableList, Numerical, SampleMissingError, SampleValidationError, Uses, ValueIndex,
    check_sample_type, check_used, check_weights, choice, freeze_value, leaves_of, lognormal,
    loguniform, normal, qlognormal, qloguniform, qnormal, quniform, randint, uniform,
    _if_else, _max, _min,
):
    _moved.__module__ = __name__
del _moved
