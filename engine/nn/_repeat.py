"""Repeat: a stack of blocks whose depth is a choice."""

from __future__ import annotations

import copy
import inspect
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from engine._context import ensure_frozen
from engine._labels import auto_label
from engine.mutable import Categorical, LabeledMutable, MutableExpression, Uses
from engine.nn._base import MutableModule, freeze_module, module_uses

__all__ = ("Repeat",)

Blocks = nn.Module | Callable[..., nn.Module] | Sequence[nn.Module | Callable[..., nn.Module]]
Depth = int | tuple[int, int] | Categorical | MutableExpression


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


MAX_DEPTH_COMBINATIONS = 100_000


def _expression_depths(depth: MutableExpression) -> list[Any]:
    """Every value ``depth`` takes: it must depend on categorical leaves only, with at
    most :data:`MAX_DEPTH_COMBINATIONS` combinations of values."""
    leaves = list(depth.simplify().values())
    if not all(isinstance(leaf, Categorical) for leaf in leaves):
        raise TypeError(f"a Repeat depth expression must depend on Categorical choices only "
                        f"(its largest value decides how many blocks to build), got {depth!r}")
    axes = [leaf.values for leaf in leaves if isinstance(leaf, Categorical)]
    count = 1
    for axis in axes:
        count *= len(axis)
    if count > MAX_DEPTH_COMBINATIONS:
        raise ValueError(f"the Repeat depth {depth!r} has {count} combinations of values, "
                         f"more than {MAX_DEPTH_COMBINATIONS} to list")
    return [depth.evaluate({leaf.label: v for leaf, v in zip(leaves, combo, strict=True)})
            for combo in itertools.product(*axes)]


def _depth_choice(depth: Any, label: str | None
                  ) -> tuple[Categorical | MutableExpression | None, int]:
    """The depth's mutable (None when fixed) and the largest depth."""
    if isinstance(depth, MutableExpression):
        if label is not None:
            raise ValueError(f"Repeat with a depth expression takes no label: drop "
                             f"label={label!r} (the labels are its choices')")
        depths = _expression_depths(depth)
        if not all(_is_count(v) for v in depths):
            raise TypeError(f"Repeat depth {depth!r} must give ints >= 0, it gives "
                            f"{sorted(set(map(repr, depths)))}")
        return depth, max(depths)
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
            ) -> tuple[Categorical | MutableExpression | None, list[nn.Module]]:
    choice, most = _depth_choice(depth, label)
    name = (choice.label if isinstance(choice, Categorical)
            else "(fixed depth)" if choice is None else repr(choice))
    return choice, _build_blocks(blocks, most, name)


class Repeat(MutableModule):
    """``blocks`` stacked ``depth`` times; ``depth`` is an int, an inclusive ``(min, max)``
    range, a Categorical of ints (whose label the Repeat takes) or a
    :class:`~engine.mutable.MutableExpression` of Categoricals (``stages * 2``; the
    blocks it leaves unused do not count in a sample, as for a Categorical).

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
        """The depth's label; None for a fixed depth or a depth expression."""
        return self.depth_choice.label if isinstance(self.depth_choice, Categorical) else None

    def _own_mutables(self) -> Iterable[LabeledMutable]:
        return () if self.depth_choice is None else self.depth_choice.leaf_mutables()

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
            return int(self.depth_choice.default())
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
