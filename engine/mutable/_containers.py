"""Containers that only group mutables: :class:`MutableList` and :class:`MutableDict`,
which freeze to a plain list and dict."""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any

from engine.mutable._base import Mutable, freeze_value, leaves_of

if TYPE_CHECKING:
    from engine.mutable._leaves import LabeledMutable


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
