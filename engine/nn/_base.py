"""The base of every torch module that holds choices, and how to walk and freeze modules.

A :class:`MutableModule` has two faces. Built normally, it is part of a model space:
it keeps its choices (found by :meth:`~engine.mutable.Mutable.leaf_mutables`) and runs
as its default architecture. Built under :func:`~engine.model_context`, its constructor
returns the plain torch module that the sample picks instead, so a frozen model holds
no search wrapper at all.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from torch import nn

from engine._context import in_model_context
from engine.mutable import LabeledMutable, Mutable, Uses

__all__ = ("MutableModule", "default_of", "freeze_module", "module_leaves", "module_uses")

# ``copy``/``pickle`` rebuild an object with ``cls.__new__(cls, **newargs)``: this keyword
# tells ``__new__`` to make an empty instance, even under a model context.
_RESTORING = "_nas_restoring"


class MutableModule(nn.Module, Mutable):
    """A module with choices. Subclasses implement :meth:`_build_frozen` (what the
    constructor returns under a model context), :meth:`freeze`, and list their own
    mutables in :meth:`_own_mutables`; mutables of child modules are found by walking."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs.pop(_RESTORING, False) or not in_model_context():
            return super().__new__(cls)
        return cls._build_frozen(*args, **kwargs)

    def __getnewargs_ex__(self) -> tuple[tuple[()], dict[str, bool]]:
        return (), {_RESTORING: True}

    @classmethod
    def _build_frozen(cls, *args: Any, **kwargs: Any) -> nn.Module:
        """The plain module the current sample picks (called instead of ``__init__``)."""
        raise NotImplementedError(f"{cls.__name__}._build_frozen")

    def _own_mutables(self) -> Iterable[LabeledMutable]:
        """The leaf mutables this module itself defines (not its children's)."""
        return ()

    def leaf_mutables(self) -> Iterator[LabeledMutable]:
        yield from self._own_mutables()
        for child in self.children():
            yield from module_leaves(child)

    def uses(self) -> Uses:
        """Its own mutables always, and what its children use."""
        return Uses(tuple(self._own_mutables()),
                    tuple(module_uses(child) for child in self.children()))


def module_uses(module: nn.Module) -> Uses:
    """Which leaves of ``module`` and its descendants a sample uses (see
    :class:`~engine.mutable.Uses`)."""
    if isinstance(module, Mutable):
        return module.uses()
    return Uses((), tuple(module_uses(child) for child in module.children()))


def module_leaves(module: nn.Module) -> Iterator[LabeledMutable]:
    """Leaf mutables of ``module`` and its descendants, in definition order."""
    if isinstance(module, Mutable):
        yield from module.leaf_mutables()
        return
    for child in module.children():
        yield from module_leaves(child)


def _holds_choices(module: nn.Module) -> bool:
    return any(isinstance(m, Mutable) for m in module.modules())


def freeze_module(module: nn.Module, sample: Mapping[str, Any]) -> nn.Module:
    """``module`` with every module holding choices replaced by its frozen form.

    Parts without choices are reused as they are (weights included), not copied.
    """
    if isinstance(module, Mutable):
        frozen: nn.Module = module.freeze(sample)
        return frozen
    if not _holds_choices(module):
        return module
    clone = copy.copy(module)
    clone.__dict__["_modules"] = {
        name: None if child is None else freeze_module(child, sample)
        for name, child in module._modules.items()
    }
    return clone


def default_of(value: Any) -> Any:
    """``value`` frozen with its defaults when it is a mutable, unchanged otherwise."""
    return value.default() if isinstance(value, Mutable) else value
