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
"""

from __future__ import annotations

import itertools
import math
import operator
import random as _random
import statistics
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from typing import Any, TypeAlias

from engine._labels import auto_label
from engine.errors import NasEngineError

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

Sample: TypeAlias = dict[str, Any]


class SampleValidationError(NasEngineError, ValueError):
    """A sample does not fit a space. ``paths`` locate the problem, outermost first."""

    def __init__(self, message: str, paths: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.paths: list[str] = list(paths)

    def prefixed(self, *outer: str) -> SampleValidationError:
        """Put ``outer`` in front of the paths (called by each enclosing layer)."""
        self.paths[:0] = outer
        return self

    def __str__(self) -> str:
        where = "/".join(self.paths)
        return f"{self.message} (at {where})" if where else self.message


class SampleMissingError(SampleValidationError):
    """A label that a model needs is not in its sample: the mutable is not part of the
    space the sample was drawn from (for example, made inside a plain ``nn.Module`` or read
    with ``ensure_frozen`` without being registered), so it is never searched."""


class DuplicateLabelError(NasEngineError, ValueError):
    """One label names two different mutables; give one of them another label."""


def check_sample_type(sample: Any) -> None:
    """Raise TypeError unless ``sample`` is a mapping from str labels to values."""
    if not isinstance(sample, Mapping):
        raise TypeError(
            f"a sample must be a dict {{label: value}}, got {type(sample).__name__} {sample!r}"
        )
    for label in sample:
        if not isinstance(label, str):
            raise TypeError(f"sample labels must be str, got {type(label).__name__} {label!r}")


def _canonical(value: Any) -> Any:
    """Tuples and lists compare equal after a JSON or msgpack round trip."""
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(_canonical(a) == _canonical(b))


_MISSING: Any = object()


def _hashable(value: Any) -> Any:
    """``value`` with lists and tuples made tuples; TypeError when it cannot be hashed."""
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    hash(value)
    return value


def _value_key(value: Any) -> tuple[bool, Any]:
    """A key equal for two values exactly when :func:`_same_value` holds (TypeError for
    unhashable values)."""
    if type(value) is int or type(value) is str:  # the common case, made cheap
        return False, value
    return isinstance(value, bool), _hashable(value)


class ValueIndex:
    """Positions of choices by value, as :func:`_same_value` compares them: a hash lookup
    for hashable values, a scan of the unhashable choices otherwise (and of every choice
    for an unhashable value). Building it costs about O(1) per hashable value, so a
    Categorical of a million choices builds in well under a second."""

    def __init__(self, values: Sequence[Any]) -> None:
        self._values = values
        self._positions: dict[tuple[bool, Any], int] = {}
        self._unhashable: list[int] = []
        self._count = 0
        self.duplicate: Any = _MISSING  # the first value listed twice, if any
        positions = self._positions
        for i, value in enumerate(values):
            self._count = i
            try:
                key = _value_key(value)
            except TypeError:
                key = None
            if (key in positions if key is not None else self.find(value) >= 0) or (
                    self._unhashable and self.find(value) >= 0):
                self.duplicate = value
                return
            if key is None:
                self._unhashable.append(i)
            else:
                positions[key] = i
        self._count = len(values)

    def find(self, value: Any) -> int:
        """The position of ``value`` among the choices, or -1."""
        try:
            key = _value_key(value)
        except TypeError:
            candidates: Iterable[int] = range(self._count)
        else:
            position = self._positions.get(key, -1)
            if position >= 0:
                return position
            candidates = self._unhashable
        return next((i for i in candidates if _same_value(value, self._values[i])), -1)


class Mutable:
    """Something that holds choices. Subclasses define leaves or containers."""

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        """Every leaf mutable inside, in definition order (duplicates included)."""
        raise NotImplementedError

    def check_contains(self, sample: Mapping[str, Any]) -> SampleValidationError | None:
        """The reason ``sample`` does not fit, or ``None`` when it does.

        Only the labels the sample uses (see :meth:`uses`) are checked: a label that the
        sample's own choices leave unused may be missing or hold anything. Raises
        TypeError when ``sample`` is not a dict, and DuplicateLabelError when the space
        binds one label to two different mutables (no sample can fit it then).
        """
        check_sample_type(sample)
        return check_used(self.uses(), self.simplify(), sample)

    def uses(self) -> Uses:
        """Which leaves a sample uses. By default every leaf, whatever the sample;
        a mutable whose choices gate others (a LayerChoice, a Repeat) says which."""
        return Uses(always=tuple(self.leaf_mutables()))

    def used_labels(self, sample: Mapping[str, Any]) -> list[str]:
        """The labels ``sample`` uses, in the order :meth:`simplify` lists them. Raises
        :class:`SampleValidationError` when a choice that gates others is missing or
        invalid (which labels are used then is unknown)."""
        check_sample_type(sample)
        found: dict[str, LabeledMutable] = {}
        error = self.uses().walk(sample, found)
        if error is not None:
            raise error
        return [label for label in self.simplify() if label in found]

    def canonical(self, sample: Mapping[str, Any]) -> Sample:
        """``sample`` without the labels it does not use: two samples that build the same
        model have equal canonical forms (and equal ``sample_key``). Raises as
        :meth:`used_labels` does. The reference has no such notion: its samples are flat."""
        used = set(self.used_labels(sample))
        return {label: value for label, value in sample.items() if label in used}

    def canonicalizer(self) -> Callable[[Mapping[str, Any]], Sample]:
        """:meth:`canonical` as a function that walks the space's structure as it is now,
        taken once: much cheaper per call (a strategy calls it for every candidate), but
        blind to later changes of the space."""
        uses = self.uses()

        def canonical(sample: Mapping[str, Any]) -> Sample:
            check_sample_type(sample)
            found: dict[str, LabeledMutable] = {}
            error = uses.walk(sample, found)
            if error is not None:
                raise error
            return {label: value for label, value in sample.items() if label in found}

        return canonical

    def completed(self, sample: Mapping[str, Any]) -> Sample:
        """``sample`` with every label it does not use set to that leaf's default, so a
        constructor that builds unused parts too (and reads their choices) can run; the
        result builds the same model as ``sample``. Raises as :meth:`used_labels` does."""
        used = set(self.used_labels(sample))
        full = {label: leaf.default_value() for label, leaf in self.simplify().items()
                if label not in used}
        full.update((label, value) for label, value in sample.items() if label in used)
        return full

    def freeze(self, sample: Mapping[str, Any]) -> Any:
        """The plain value this mutable stands for under ``sample`` (validated first)."""
        raise NotImplementedError

    def simplify(self) -> dict[str, LabeledMutable]:
        """Leaf mutables keyed by label. Raises DuplicateLabelError on a clash.

        Unlike the reference, it takes no ``is_leaf``: every leaf here is a labelled value
        with no mutable inside, so there is nothing to expand or collapse.
        """
        found: dict[str, LabeledMutable] = {}
        for leaf in self.leaf_mutables():
            known = found.get(leaf.label)
            if known is None:
                found[leaf.label] = leaf
            elif known != leaf:
                raise DuplicateLabelError(
                    f"label {leaf.label!r} is bound to two different mutables: "
                    f"{known!r} and {leaf!r}; give one of them another label"
                )
        return found

    def contains(self, sample: Mapping[str, Any]) -> bool:
        return self.check_contains(sample) is None

    def validate(self, sample: Mapping[str, Any]) -> None:
        """Raise :class:`SampleValidationError` when ``sample`` does not fit."""
        error = self.check_contains(sample)
        if error is not None:
            raise error

    def default(self, memo: Sample | None = None) -> Any:
        """Freeze with every leaf at its default; ``memo`` collects the sample.

        A label already in ``memo`` with another value than its default raises
        :class:`SampleValidationError` (a ValueError), as in the reference.
        """
        memo = {} if memo is None else memo
        for leaf in self.simplify().values():
            leaf.default(memo)
        return self.freeze(memo)

    def random(
        self, memo: Sample | None = None, random_state: _random.Random | None = None
    ) -> Any:
        """Freeze with every leaf drawn from ``random_state``; ``memo`` collects the sample."""
        if isinstance(memo, _random.Random):
            raise TypeError("random() takes the generator as random_state=...: the first "
                            "argument is the memo dict")
        memo = {} if memo is None else memo
        rng = random_state if random_state is not None else _random.Random()
        for label, leaf in self.simplify().items():
            if label not in memo:
                memo[label] = leaf.random_value(rng)
        return self.freeze(memo)

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[Any]:
        """Every combination of the leaves' grid values, frozen, in a fixed order.

        ``memo`` pins labels; after each yield it holds that item's sample.
        """
        memo = {} if memo is None else memo
        pinned = dict(memo)
        leaves = [leaf for label, leaf in self.simplify().items() if label not in pinned]
        axes = [leaf.grid_values(granularity) for leaf in leaves]
        for combo in itertools.product(*axes):
            memo.clear()
            memo.update(pinned)
            memo.update({leaf.label: value for leaf, value in zip(leaves, combo, strict=True)})
            yield self.freeze(memo)


class _Operators:
    """Arithmetic and comparison that build a :class:`MutableExpression` (``width * 2``,
    ``kernel // 2``, ``depth > 2``). ``==`` and ``!=`` are not among them: unlike the
    reference, they keep comparing mutables themselves (labels are de-duplicated with
    them); use :meth:`MutableExpression.equal` for a symbolic equality."""

    def _binary(self, op: Callable[[Any, Any], Any], other: Any, *, right: bool = False
                ) -> MutableExpression:
        operands = (other, self) if right else (self, other)
        return MutableExpression(op, operands)

    def __add__(self, other: Any) -> MutableExpression:
        return self._binary(operator.add, other)

    def __radd__(self, other: Any) -> MutableExpression:
        return self._binary(operator.add, other, right=True)

    def __sub__(self, other: Any) -> MutableExpression:
        return self._binary(operator.sub, other)

    def __rsub__(self, other: Any) -> MutableExpression:
        return self._binary(operator.sub, other, right=True)

    def __mul__(self, other: Any) -> MutableExpression:
        return self._binary(operator.mul, other)

    def __rmul__(self, other: Any) -> MutableExpression:
        return self._binary(operator.mul, other, right=True)

    def __truediv__(self, other: Any) -> MutableExpression:
        return self._binary(operator.truediv, other)

    def __rtruediv__(self, other: Any) -> MutableExpression:
        return self._binary(operator.truediv, other, right=True)

    def __floordiv__(self, other: Any) -> MutableExpression:
        return self._binary(operator.floordiv, other)

    def __rfloordiv__(self, other: Any) -> MutableExpression:
        return self._binary(operator.floordiv, other, right=True)

    def __mod__(self, other: Any) -> MutableExpression:
        return self._binary(operator.mod, other)

    def __rmod__(self, other: Any) -> MutableExpression:
        return self._binary(operator.mod, other, right=True)

    def __pow__(self, other: Any) -> MutableExpression:
        return self._binary(operator.pow, other)

    def __rpow__(self, other: Any) -> MutableExpression:
        return self._binary(operator.pow, other, right=True)

    def __lt__(self, other: Any) -> MutableExpression:
        return self._binary(operator.lt, other)

    def __le__(self, other: Any) -> MutableExpression:
        return self._binary(operator.le, other)

    def __gt__(self, other: Any) -> MutableExpression:
        return self._binary(operator.gt, other)

    def __ge__(self, other: Any) -> MutableExpression:
        return self._binary(operator.ge, other)

    def __neg__(self) -> MutableExpression:
        return MutableExpression(operator.neg, (self,))

    def __pos__(self) -> MutableExpression:
        return MutableExpression(operator.pos, (self,))

    def __abs__(self) -> MutableExpression:
        return MutableExpression(abs, (self,))


def _if_else(condition: Any, if_true: Any, if_false: Any) -> Any:
    return if_true if condition else if_false


def _max(*values: Any) -> Any:
    return max(values)


def _min(*values: Any) -> Any:
    return min(values)


_SYMBOLS: dict[Any, str] = {
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
    operator.floordiv: "//", operator.mod: "%", operator.pow: "**", operator.lt: "<",
    operator.le: "<=", operator.gt: ">", operator.ge: ">=", operator.eq: "==",
    operator.ne: "!=",
}
_UNARY: dict[Any, str] = {operator.neg: "-", operator.pos: "+"}


class MutableExpression(_Operators, Mutable):
    """A value computed from mutables: ``function(*operands)`` once the operands that are
    mutables are frozen (operands that are not stay as they are). Made by arithmetic and
    comparison on mutables (``width * 2``, ``kernel // 2 + 1``, ``depth >= 3``) or by
    :meth:`max`, :meth:`min`, :meth:`condition` and :meth:`equal`. It is usable where a
    mutable is (a layer argument, a Repeat depth, an evaluator argument, an init
    argument); :meth:`simplify` shows only its leaves, and freezing evaluates it.

    Python's ``max(a, b)`` and ``if a > b`` need a truth value, which a symbolic
    comparison has not: they raise TypeError pointing here.
    """

    def __init__(self, function: Callable[..., Any], operands: Sequence[Any]) -> None:
        if not callable(function):
            raise TypeError(f"a MutableExpression needs a function, got {function!r}")
        self.function = function
        self.operands = tuple(operands)

    @staticmethod
    def max(first: Any, *rest: Any) -> MutableExpression:
        """The largest of the operands, once frozen (the reference's ``max``)."""
        return MutableExpression(_max, (first, *rest))

    @staticmethod
    def min(first: Any, *rest: Any) -> MutableExpression:
        """The smallest of the operands, once frozen."""
        return MutableExpression(_min, (first, *rest))

    @staticmethod
    def condition(condition: Any, if_true: Any, if_false: Any) -> MutableExpression:
        """``if_true`` when ``condition`` freezes to a true value, else ``if_false``."""
        return MutableExpression(_if_else, (condition, if_true, if_false))

    @staticmethod
    def equal(a: Any, b: Any) -> MutableExpression:
        """Whether ``a`` and ``b`` freeze to equal values."""
        return MutableExpression(operator.eq, (a, b))

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        return leaves_of(self.operands)

    def evaluate(self, sample: Mapping[str, Any]) -> Any:
        """The value under ``sample``, without validating it first."""
        values = [o.evaluate(sample) if isinstance(o, MutableExpression)
                  else freeze_value(o, sample) for o in self.operands]
        return self.function(*values)

    def freeze(self, sample: Mapping[str, Any]) -> Any:
        self.validate(sample)
        return self.evaluate(sample)

    def __bool__(self) -> bool:
        raise TypeError(
            f"{self!r} has no truth value before it is frozen: for a choice that depends on "
            "it, use MutableExpression.condition / max / min instead of if, max() or min()")

    def __eq__(self, other: object) -> bool:
        """The same function of equal operands (structural, as mutables compare here)."""
        return (isinstance(other, MutableExpression) and other.function is self.function
                and len(other.operands) == len(self.operands)
                and all(_same_operand(a, b)
                        for a, b in zip(other.operands, self.operands, strict=True)))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        args = [repr(o) for o in self.operands]
        symbol = _SYMBOLS.get(self.function)
        if symbol is not None and len(args) == 2:
            return f"({args[0]} {symbol} {args[1]})"
        if self.function in _UNARY and len(args) == 1:
            return f"{_UNARY[self.function]}{args[0]}"
        name = {_max: "max", _min: "min", _if_else: "condition"}.get(
            self.function, getattr(self.function, "__name__", repr(self.function)))
        return f"{name}({', '.join(args)})"


def _same_operand(a: Any, b: Any) -> bool:
    if isinstance(a, Mutable) or isinstance(b, Mutable):
        return type(a) is type(b) and bool(a == b)
    return _same_value(a, b)


class Uses:
    """Which leaves a sample uses: the ``always`` leaves, those of every part in
    ``parts``, and, when there is a ``gate``, the gate's leaves and the ``branches`` its
    value picks: the branch at the value's position among the values of a
    :class:`Categorical` gate, or, with ``prefix``, the first ``value`` branches (a
    Repeat's depth, which may also be a :class:`MutableExpression`).

    It holds leaves only, never modules, so a simplified space can keep it.
    """

    __slots__ = ("always", "branches", "gate", "parts", "prefix")
    always: tuple[LabeledMutable, ...]
    parts: tuple[Uses, ...]
    gate: Mutable | None
    branches: tuple[Uses, ...]
    prefix: bool

    def __init__(self, always: Sequence[LabeledMutable] = (), parts: Sequence[Uses] = (), *,
                 gate: Mutable | None = None, branches: Sequence[Uses] = (),
                 prefix: bool = False) -> None:
        # Flattened, for a cheap walk: parts without a gate merge into this one, so only
        # gated parts remain, and each label is listed once.
        merged: dict[str, LabeledMutable] = {}
        gated: list[Uses] = []
        for leaf in always:
            merged.setdefault(leaf.label, leaf)
        for part in parts:
            if part.gate is None:
                for leaf in part.always:
                    merged.setdefault(leaf.label, leaf)
                gated.extend(part.parts)
            else:
                gated.append(part)
        self.always = tuple(merged.values())
        self.parts = tuple(gated)
        self.gate = gate
        self.branches = tuple(branches)
        self.prefix = prefix

    @property
    def empty(self) -> bool:
        """Whether no sample uses anything here."""
        return not self.always and not self.parts and self.gate is None

    def walk(self, sample: Mapping[str, Any], found: dict[str, LabeledMutable]
             ) -> SampleValidationError | None:
        """Add the used leaves to ``found``; the error of a gate that ``sample`` does not
        fit (then ``found`` is partial)."""
        for leaf in self.always:
            found.setdefault(leaf.label, leaf)
        for part in self.parts:
            error = part.walk(sample, found)
            if error is not None:
                return error
        gate = self.gate
        if gate is None:
            return None
        for leaf in gate.leaf_mutables():
            found.setdefault(leaf.label, leaf)
            error = _check_leaf(leaf, sample)
            if error is not None:
                return error
        value = (gate.normalize(sample[gate.label]) if isinstance(gate, LabeledMutable)
                 else gate.evaluate(sample) if isinstance(gate, MutableExpression)
                 else gate.freeze(sample))
        if self.prefix:
            picked = self.branches[: int(value)]
        elif isinstance(gate, Categorical):
            index = gate._index(value)
            picked = self.branches[index: index + 1]
        else:
            raise TypeError(f"a gate with branches must be a Categorical, got {gate!r}")
        for branch in picked:
            error = branch.walk(sample, found)
            if error is not None:
                return error
        return None


def _check_leaf(leaf: LabeledMutable, sample: Mapping[str, Any]
                ) -> SampleValidationError | None:
    """:meth:`LabeledMutable.check_contains` without checking the sample's type again."""
    if leaf.label not in sample:
        return SampleMissingError(f"label {leaf.label!r} is missing from the sample",
                                  [leaf.label])
    reason = leaf.check_value(sample[leaf.label])
    return None if reason is None else SampleValidationError(reason, [leaf.label])


def check_used(uses: Uses, leaves: Mapping[str, LabeledMutable], sample: Mapping[str, Any]
               ) -> SampleValidationError | None:
    """Why ``sample`` does not fit the used ``leaves`` (checked in their order), or None."""
    found: dict[str, LabeledMutable] = {}
    error = uses.walk(sample, found)
    if error is not None:
        return error
    for label, leaf in leaves.items():
        if label in found:
            error = leaf.check_contains(sample)
            if error is not None:
                return error
    return None


class LabeledMutable(_Operators, Mutable):
    """A leaf: one label, one value in the sample. Arithmetic and comparison on it make
    a :class:`MutableExpression`."""

    label: str

    def __init__(self, label: str | None) -> None:
        if label is None:
            label = auto_label(type(self).__name__.lower())
        if not isinstance(label, str) or not label:
            raise TypeError(f"a mutable's label must be a non-empty str, got {label!r}")
        self.label = label

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        yield self

    def check_contains(self, sample: Mapping[str, Any]) -> SampleValidationError | None:
        check_sample_type(sample)
        if self.label not in sample:
            return SampleMissingError(f"label {self.label!r} is missing from the sample",
                                      [self.label])
        reason = self.check_value(sample[self.label])
        return None if reason is None else SampleValidationError(reason, [self.label])

    def freeze(self, sample: Mapping[str, Any]) -> Any:
        self.validate(sample)
        return self.normalize(sample[self.label])

    def default(self, memo: Sample | None = None) -> Any:
        memo = {} if memo is None else memo
        default = self.default_value()
        value = self.freeze(memo) if self.label in memo else default
        if not _same_value(value, self.normalize(default)):
            raise SampleValidationError(
                f"the memo holds {value!r} for {self.label!r}, whose default is {default!r}: "
                "default() gives every label its default (use freeze() for other values)",
                [self.label])
        memo[self.label] = value
        return value

    def check_value(self, value: Any) -> str | None:
        """Why ``value`` is not one this leaf can take, or ``None``."""
        raise NotImplementedError

    def normalize(self, value: Any) -> Any:
        """The canonical form of a valid value (what ``freeze`` returns)."""
        return value

    def default_value(self) -> Any:
        raise NotImplementedError

    def random_value(self, rng: _random.Random) -> Any:
        raise NotImplementedError

    def grid_values(self, granularity: int | None = None) -> list[Any]:
        raise NotImplementedError


def check_weights(weights: Any, count: int, owner: str, *, total: bool = True
                  ) -> list[float] | None:
    """``weights`` as a list of floats, one per value, each in [0, 1], summing to 1 when
    ``total`` (as in the reference); ValueError naming ``owner`` otherwise."""
    if weights is None:
        return None
    if isinstance(weights, str | bytes | Mapping) or not isinstance(weights, Iterable):
        raise TypeError(f"{owner}: weights must be a list of numbers, got {weights!r}")
    listed = list(weights)
    if len(listed) != count:
        raise ValueError(f"{owner}: {len(listed)} weights for {count} values; give one "
                         "weight per value")
    for w in listed:
        if not _is_number(w) or not 0 <= w <= 1:
            raise ValueError(f"{owner}: each weight must be a number in [0, 1], got {w!r}")
    if total and abs(math.fsum(listed) - 1) > 1e-6:
        raise ValueError(f"{owner}: the weights must sum to 1, got {math.fsum(listed)!r} "
                         f"for {listed!r}")
    return [float(w) for w in listed]


class Categorical(LabeledMutable):
    """One of ``values``. ``default`` is the first value unless given.

    ``weights`` (one per value, summing to 1, as in the reference) is the prior that
    :meth:`random_value` draws from; without it the values are equally likely. As in
    the reference, the grid lists the more likely values first when weights differ."""

    def __init__(
        self, values: Iterable[Any], *, weights: Sequence[float] | None = None,
        default: Any = _MISSING, label: str | None = None
    ) -> None:
        super().__init__(label)
        label = self.label
        if isinstance(values, str | bytes | Mapping):
            raise TypeError(f"Categorical {label!r} takes a list of choices, got "
                            f"{type(values).__name__} {values!r}")
        self.values = list(values)
        if not self.values:
            raise ValueError(f"Categorical {label!r} needs at least one value")
        self._positions = ValueIndex(self.values)
        if self._positions.duplicate is not _MISSING:
            raise ValueError(f"Categorical {label!r} lists {self._positions.duplicate!r} twice")
        if default is not _MISSING and not self._index(default) >= 0:
            raise ValueError(f"default {default!r} of {label!r} is not one of {self.values!r}")
        self.default_ = self.values[0] if default is _MISSING else default
        self.weights = check_weights(weights, len(self.values), f"Categorical {label!r}")

    def _index(self, value: Any) -> int:
        return self._positions.find(value)

    def check_value(self, value: Any) -> str | None:
        if self._index(value) < 0:
            return f"{value!r} is not one of the choices {self.values!r} of {self.label!r}"
        return None

    def normalize(self, value: Any) -> Any:
        return self.values[self._index(value)]

    def default_value(self) -> Any:
        return self.default_

    def random_value(self, rng: _random.Random) -> Any:
        if self.weights is None:
            return rng.choice(self.values)
        return rng.choices(self.values, self.weights)[0]

    def grid_values(self, granularity: int | None = None) -> list[Any]:
        if self.weights is None or len(set(self.weights)) == 1:
            return list(self.values)
        order = sorted(range(len(self.values)), key=lambda i: -self.weights[i])  # type: ignore[index]
        return [self.values[i] for i in order]

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Categorical)
            and other.label == self.label
            and _canonical(other.values) == _canonical(self.values)
            and _same_value(other.default_, self.default_)
            and other.weights == self.weights
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        weights = f", weights={self.weights!r}" if self.weights is not None else ""
        return f"Categorical({self.values!r}{weights}, label={self.label!r})"


class Numerical(LabeledMutable):
    """A number in ``[low, high]``.

    Its prior (what :meth:`random_value` draws from) is uniform on ``[low, high]``, or
    uniform on a log scale with ``log``; with ``mu`` and ``sigma`` it is normal (with
    ``log``: log-normal, the value is ``exp`` of a normal draw), and ``low``/``high``,
    which may then be infinite, truncate it. ``quantize`` rounds to multiples of a step
    (then clips to the bounds). The default is the prior's median (``mu``, or
    ``exp(mu)`` for a log-normal, when nothing truncates it).

    Differs from the reference on purpose: the reference clips a normal draw to the
    bounds (so values pile up on them); here the normal is truncated, so every value in
    the bounds keeps its relative likelihood and none is favoured. Draws come from
    ``random.Random`` by inverse CDF, not from numpy/scipy.
    """

    def __init__(
        self,
        low: float = -math.inf,
        high: float = math.inf,
        *,
        mu: float | None = None,
        sigma: float | None = None,
        log: bool = False,
        quantize: float | None = None,
        default: float | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__(label)
        label = self.label
        normal = mu is not None or sigma is not None
        if normal and (mu is None or sigma is None):
            raise ValueError(f"Numerical {label!r}: a normal prior needs both mu and sigma, "
                             f"got mu={mu!r}, sigma={sigma!r}")
        for name, bound in (("low", low), ("high", high)):
            if not _is_number(bound) or math.isnan(bound) or (
                    not normal and not math.isfinite(bound)):
                kind = "a number" if normal else "a finite number"
                hint = "" if normal else " (an infinite bound needs a normal prior: mu, sigma)"
                raise TypeError(f"Numerical {label!r}: {name} must be {kind}, got "
                                f"{bound!r}{hint}")
        if not low < high:
            raise ValueError(f"Numerical {label!r}: low ({low}) must be below high ({high})")
        if log and not normal and low <= 0:
            raise ValueError(f"Numerical {label!r}: a log scale needs low > 0, got {low}")
        if normal:
            if not (_is_number(mu) and math.isfinite(mu)):  # type: ignore[arg-type]
                raise TypeError(f"Numerical {label!r}: mu must be a finite number, got {mu!r}")
            if not (_is_number(sigma) and math.isfinite(sigma) and sigma > 0):  # type: ignore[arg-type,operator]
                raise ValueError(f"Numerical {label!r}: sigma must be a finite number > 0, "
                                 f"got {sigma!r}")
        if quantize is not None and not (_is_number(quantize) and quantize > 0):
            raise ValueError(f"Numerical {label!r}: quantize must be a positive number, "
                             f"got {quantize!r}")
        self.low, self.high, self.log, self.quantize = low, high, log, quantize
        self.mu, self.sigma = mu, sigma
        self._mass = self._truncated_mass()
        if self._mass is not None and not self._mass[1] > self._mass[0]:
            raise ValueError(f"Numerical {label!r}: [{low}, {high}] holds no probability of "
                             f"the normal prior (mu={mu}, sigma={sigma}{', log' if log else ''})")
        if default is not None and self.check_value(default) is not None:
            raise ValueError(f"Numerical {label!r}: default {default!r} is out of range")
        self.default_ = default

    def _truncated_mass(self) -> tuple[float, float] | None:
        """The normal prior's CDF at the bounds (on the log scale with ``log``)."""
        if self.mu is None or self.sigma is None:
            return None
        dist = statistics.NormalDist(self.mu, self.sigma)
        lo, hi = self.low, self.high
        if self.log:
            lo = math.log(lo) if lo > 0 else -math.inf
            hi = math.log(hi) if math.isfinite(hi) else math.inf
        return (dist.cdf(lo) if math.isfinite(lo) else 0.0,
                dist.cdf(hi) if math.isfinite(hi) else 1.0)

    def check_value(self, value: Any) -> str | None:
        if not _is_number(value):
            return (f"{self.label!r} takes a number, got {type(value).__name__} {value!r}")
        if not self.low <= value <= self.high:
            return f"{value!r} is outside [{self.low}, {self.high}] of {self.label!r}"
        if not math.isfinite(value):  # within infinite bounds
            return f"{self.label!r} takes a finite number, got {value!r}"
        if self.quantize is not None:
            steps = value / self.quantize
            if abs(steps - round(steps)) > 1e-6 and value not in (self.low, self.high):
                return f"{value!r} is not a multiple of {self.quantize} for {self.label!r}"
        return None

    def _from_quantile(self, q: float) -> float:
        if self._mass is not None and self.mu is not None and self.sigma is not None:
            a, b = self._mass
            p = min(max(a + q * (b - a), 1e-15), 1 - 1e-15)  # inv_cdf needs 0 < p < 1
            value = statistics.NormalDist(self.mu, self.sigma).inv_cdf(p)
            if self.log:
                value = math.exp(value)
        elif self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            value = math.exp(lo + q * (hi - lo))
        else:
            value = self.low + q * (self.high - self.low)
        if self.quantize is not None:
            value = round(value / self.quantize) * self.quantize
        return min(max(value, self.low), self.high)

    def default_value(self) -> float:
        return self.default_ if self.default_ is not None else self._from_quantile(0.5)

    def random_value(self, rng: _random.Random) -> float:
        return self._from_quantile(rng.random())

    def grid_values(self, granularity: int | None = None) -> list[float]:
        """``2**g - 1`` evenly spaced quantiles (``g`` = granularity, default 1), deduplicated:
        each granularity keeps the points of the ones before it."""
        g = 1 if granularity is None else granularity
        if not isinstance(g, int) or isinstance(g, bool) or g < 1:
            raise ValueError(f"granularity must be an int >= 1, got {g!r}")
        points = (self._from_quantile(k / 2**g) for k in range(1, 2**g))
        return list(dict.fromkeys(points))

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Numerical)
            and (other.label, other.low, other.high, other.log, other.quantize, other.default_,
                 other.mu, other.sigma)
            == (self.label, self.low, self.high, self.log, self.quantize, self.default_,
                self.mu, self.sigma)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        prior = f", mu={self.mu}, sigma={self.sigma}" if self.mu is not None else ""
        extra = prior + (", log=True" if self.log else "") + (
            f", quantize={self.quantize}" if self.quantize is not None else "")
        return f"Numerical({self.low}, {self.high}{extra}, label={self.label!r})"


# --- shortcuts, named and ordered as the reference's (label first) ---------------------


def choice(label: str, values: Iterable[Any], *, weights: Sequence[float] | None = None
           ) -> Categorical:
    """One of ``values`` (equally likely unless ``weights`` are given)."""
    return Categorical(values, weights=weights, label=label)


def randint(label: str, lower: int, upper: int) -> Categorical:
    """An int in ``[lower, upper)``, all equally likely (a Categorical, as in the
    reference)."""
    for name, bound in (("lower", lower), ("upper", upper)):
        if not isinstance(bound, int) or isinstance(bound, bool):
            raise TypeError(f"randint {label!r}: {name} must be an int, got {bound!r}")
    if not lower < upper:
        raise ValueError(f"randint {label!r}: lower ({lower}) must be below upper ({upper})")
    return Categorical(range(lower, upper), label=label)


def uniform(label: str, low: float, high: float) -> Numerical:
    """A number drawn uniformly from ``[low, high]``."""
    return Numerical(low, high, label=label)


def quniform(label: str, low: float, high: float, quantize: float) -> Numerical:
    """:func:`uniform`, rounded to a multiple of ``quantize`` and clipped to the bounds."""
    return Numerical(low, high, quantize=quantize, label=label)


def loguniform(label: str, low: float, high: float) -> Numerical:
    """A number in ``[low, high]`` whose logarithm is uniform (``low > 0``)."""
    return Numerical(low, high, log=True, label=label)


def qloguniform(label: str, low: float, high: float, quantize: float) -> Numerical:
    """:func:`loguniform`, rounded to a multiple of ``quantize`` and clipped."""
    return Numerical(low, high, log=True, quantize=quantize, label=label)


def normal(label: str, mu: float, sigma: float) -> Numerical:
    """A number drawn from the normal distribution of mean ``mu``, deviation ``sigma``."""
    return Numerical(mu=mu, sigma=sigma, label=label)


def qnormal(label: str, mu: float, sigma: float, quantize: float) -> Numerical:
    """:func:`normal`, rounded to a multiple of ``quantize``."""
    return Numerical(mu=mu, sigma=sigma, quantize=quantize, label=label)


def lognormal(label: str, mu: float, sigma: float) -> Numerical:
    """``exp`` of a :func:`normal` draw: a positive number whose logarithm is normal."""
    return Numerical(mu=mu, sigma=sigma, log=True, label=label)


def qlognormal(label: str, mu: float, sigma: float, quantize: float) -> Numerical:
    """:func:`lognormal`, rounded to a multiple of ``quantize``."""
    return Numerical(mu=mu, sigma=sigma, log=True, quantize=quantize, label=label)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def freeze_value(value: Any, sample: Mapping[str, Any]) -> Any:
    """``value`` frozen when it is a mutable, unchanged otherwise."""
    return value.freeze(sample) if isinstance(value, Mutable) else value


def leaves_of(values: Iterable[Any]) -> Iterator[LabeledMutable]:
    for value in values:
        if isinstance(value, Mutable):
            yield from value.leaf_mutables()


class MutableList(Mutable):
    """A list whose items may be mutables; freezes to a plain list.

    It behaves as a list: index, slice (a MutableList), assign, delete, ``append``,
    ``extend``, ``insert``, ``+=``, ``in``. Two compare equal when their items do. Unlike
    the reference, it has no ``extra_repr`` and its paths name labels, not positions.
    """

    def __init__(self, mutables: Iterable[Any] = ()) -> None:
        self.mutables: list[Any] = list(mutables)

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        return leaves_of(self.mutables)

    def freeze(self, sample: Mapping[str, Any]) -> list[Any]:
        self.validate(sample)
        return [freeze_value(item, sample) for item in self.mutables]

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return MutableList(self.mutables[index])
        return self.mutables[index]

    def __setitem__(self, index: int, value: Any) -> None:
        self.mutables[index] = value

    def __delitem__(self, index: int | slice) -> None:
        del self.mutables[index]

    def __len__(self) -> int:
        return len(self.mutables)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.mutables)

    def __contains__(self, item: object) -> bool:
        return item in self.mutables

    def __iadd__(self, items: Iterable[Any]) -> MutableList:
        return self.extend(items)

    def append(self, item: Any) -> MutableList:
        """Add ``item`` at the end; returns this list (as the reference does)."""
        self.mutables.append(item)
        return self

    def extend(self, items: Iterable[Any]) -> MutableList:
        """Add ``items`` at the end; returns this list."""
        self.mutables.extend(items)
        return self

    def insert(self, index: int, item: Any) -> None:
        self.mutables.insert(index, item)

    def __eq__(self, other: object) -> bool:
        """Equal when the items are (as the reference's containers compare)."""
        return isinstance(other, MutableList) and self.mutables == other.mutables

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MutableList({self.mutables!r})"


class MutableDict(Mutable):
    """A dict whose values may be mutables; freezes to a plain dict.

    Build it from a mapping, pairs or keywords (``MutableDict(lr=..., depth=...)``; a
    keyword also in the mapping is a ValueError). It behaves as a dict: get, assign,
    delete, ``pop``, ``update``, ``clear``, ``keys``/``values``/``items``, ``in``. Two
    compare equal when their items do, in any order.
    """

    def __init__(
        self, mutables: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.mutables: dict[str, Any] = dict(mutables or {})
        for key, value in kwargs.items():
            if key in self.mutables:
                raise ValueError(f"MutableDict got {key!r} twice: in the mapping and as a "
                                 "keyword")
            self.mutables[key] = value

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        return leaves_of(self.mutables.values())

    def freeze(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        self.validate(sample)
        return {key: freeze_value(value, sample) for key, value in self.mutables.items()}

    def __getitem__(self, key: str) -> Any:
        return self.mutables[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.mutables[key] = value

    def __delitem__(self, key: str) -> None:
        del self.mutables[key]

    def __len__(self) -> int:
        return len(self.mutables)

    def __iter__(self) -> Iterator[str]:
        return iter(self.mutables)

    def __contains__(self, key: object) -> bool:
        return key in self.mutables

    def get(self, key: str, default: Any = None) -> Any:
        return self.mutables.get(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        """Remove ``key`` and return its value (``default`` when given and it is absent)."""
        return self.mutables.pop(key, *default)

    def update(self, mutables: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
               **kwargs: Any) -> None:
        self.mutables.update(mutables, **kwargs)

    def clear(self) -> None:
        self.mutables.clear()

    def keys(self) -> KeysView[str]:
        return self.mutables.keys()

    def values(self) -> ValuesView[Any]:
        return self.mutables.values()

    def items(self) -> ItemsView[str, Any]:
        return self.mutables.items()

    def __eq__(self, other: object) -> bool:
        """Equal when the items are, in any order (as the reference's containers compare)."""
        return isinstance(other, MutableDict) and self.mutables == other.mutables

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MutableDict({self.mutables!r})"
