"""Expressions over mutables: the operators a leaf or an expression supports
(``width * 2``, ``depth > 2``) and the :class:`MutableExpression` they build."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.mutable._base import Mutable, freeze_value, leaves_of
from engine.mutable._sample import _same_value

if TYPE_CHECKING:
    from engine.mutable._leaves import LabeledMutable


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

    def _gate_value(self, sample: Mapping[str, Any]) -> Any:
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
