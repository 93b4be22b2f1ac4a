"""Samples and the values in them: the :data:`Sample` type, the errors a sample that does
not fit raises (drawn in the package docstring), and how two values compare
(:class:`ValueIndex`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from engine.errors import NasEngineError

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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
