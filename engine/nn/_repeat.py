"""Repeat: a stack of blocks whose depth is a choice."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from engine._context import ensure_frozen
from engine._labels import auto_label
from engine.mutable import Categorical, LabeledMutable, Uses
from engine.nn._base import MutableModule, freeze_module, module_uses

__all__ = ("Repeat",)

Blocks = nn.Module | Callable[..., nn.Module] | Sequence[nn.Module | Callable[..., nn.Module]]
Depth = int | tuple[int, int] | Categorical


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _depth_choice(depth: Any, label: str | None) -> tuple[Categorical | None, int]:
    """The depth's mutable (None when fixed) and the largest depth."""
    if _is_count(depth):
        if label is not None:
            raise ValueError(f"Repeat {label!r} has a fixed depth {depth}, so there is no "
                             "choice to label: drop label=, or give a (min, max) depth")
        return None, int(depth)
    if isinstance(depth, Categorical):
        if label is not None and label != depth.label:
            raise ValueError(f"Repeat takes its label from the depth Categorical "
                             f"({depth.label!r}): drop label={label!r}")
        if not all(_is_count(v) for v in depth.values):
            raise TypeError(f"Repeat {depth.label!r}: depth choices must be ints >= 0, "
                            f"got {depth.values!r}")
        return depth, max(depth.values)
    if isinstance(depth, tuple | list) and len(depth) == 2 and all(map(_is_count, depth)):
        low, high = depth
        label = label if label is not None else auto_label("repeat")
        if low > high:
            raise ValueError(f"Repeat {label!r}: the depth range {tuple(depth)!r} has its "
                             f"minimum {low} above its maximum {high}")
        return Categorical(list(range(low, high + 1)), label=label), high
    raise TypeError("Repeat depth must be an int >= 0, a (min, max) tuple of ints >= 0 or a "
                    f"Categorical of ints, got {depth!r}")


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _call_factory(factory: Callable[..., Any], index: int) -> Any:
    """``factory(index)`` when it has a required positional parameter, else ``factory()``
    (so a class like ``nn.ReLU`` is not handed the index as ``inplace``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return factory(index)
    if any(p.kind in _POSITIONAL and p.default is p.empty for p in parameters):
        return factory(index)
    return factory()


def _build_blocks(blocks: Any, count: int, label: str) -> list[nn.Module]:
    """``count`` blocks: copies of a module, a factory's results (called with the block
    index), or the items of a list (one per block up to the maximum depth)."""
    if isinstance(blocks, nn.Module):
        return [blocks] + [copy.deepcopy(blocks) for _ in range(count - 1)] if count else []
    if isinstance(blocks, list | tuple):
        if len(blocks) != count:
            raise ValueError(f"Repeat {label!r} got {len(blocks)} blocks for a maximum depth "
                             f"of {count}: pass one block per layer, or a single module or "
                             "factory")
        items = list(blocks)
    elif callable(blocks):
        items = [blocks] * count
    else:
        raise TypeError(f"Repeat {label!r} takes a module, a factory or a list of them as "
                        f"blocks, got {type(blocks).__name__}")
    built = [item if isinstance(item, nn.Module) else _call_factory(item, i)
             for i, item in enumerate(items)]
    for i, block in enumerate(built):
        if not isinstance(block, nn.Module):
            raise TypeError(f"block {i} of Repeat {label!r} is a {type(block).__name__}, "
                            "not an nn.Module (a factory must return a module)")
    return built


def _repeat(blocks: Any, depth: Any, label: str | None
            ) -> tuple[Categorical | None, list[nn.Module]]:
    choice, most = _depth_choice(depth, label)
    name = choice.label if choice is not None else "(fixed depth)"
    return choice, _build_blocks(blocks, most, name)


class Repeat(MutableModule):
    """``blocks`` stacked ``depth`` times; ``depth`` is an int, an inclusive ``(min, max)``
    range or a Categorical of ints (whose label the Repeat takes).

    ``blocks`` is a module (deep-copied per layer), a factory (called with the layer index
    when it has a required positional parameter, without arguments otherwise), or a list
    with one module or factory per layer up to the maximum depth. Under a model
    context the constructor returns an ``nn.Sequential`` of the chosen depth (the deeper
    blocks are still built and dropped, so automatic labels do not shift). Before
    freezing, it runs its default depth.
    """

    def __init__(self, blocks: Blocks, depth: Depth, *, label: str | None = None) -> None:
        super().__init__()
        self.depth_choice, built = _repeat(blocks, depth, label)
        self.blocks = nn.ModuleList(built)

    @classmethod
    def _build_frozen(cls, blocks: Blocks, depth: Depth, *, label: str | None = None
                      ) -> nn.Module:
        choice, built = _repeat(blocks, depth, label)
        chosen = len(built) if choice is None else ensure_frozen(choice)
        return nn.Sequential(*built[:chosen])

    @property
    def label(self) -> str | None:
        return None if self.depth_choice is None else self.depth_choice.label

    def _own_mutables(self) -> Iterable[LabeledMutable]:
        return () if self.depth_choice is None else (self.depth_choice,)

    def uses(self) -> Uses:
        """Its depth, and what the first ``depth`` blocks use (the choices of deeper
        blocks are not used)."""
        blocks = [module_uses(block) for block in self.blocks]
        if self.depth_choice is None:
            return Uses((), blocks)
        return Uses(gate=self.depth_choice, branches=blocks, prefix=True)

    def _depth(self, sample: Mapping[str, Any] | None) -> int:
        if self.depth_choice is None:
            return len(self.blocks)
        if sample is None:
            return int(self.depth_choice.default_value())
        return int(self.depth_choice.freeze(sample))

    def freeze(self, sample: Mapping[str, Any]) -> nn.Sequential:
        self.validate(sample)
        return nn.Sequential(*(freeze_module(block, sample)
                               for block in self.blocks[: self._depth(sample)]))

    def forward(self, x: Any) -> Any:
        for block in self.blocks[: self._depth(None)]:
            x = block(x)
        return x

    def extra_repr(self) -> str:
        return f"label={self.label!r}"
