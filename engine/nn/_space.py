"""ModelSpace: a torch module that is a model space."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from torch import nn

from engine._context import ensure_frozen, in_model_context
from engine._labels import label_scope
from engine.mutable import LabeledMutable, Mutable, Uses, leaves_of
from engine.nn._base import freeze_module, module_leaves, module_uses
from engine.space import BaseModelSpace, frozen_call

__all__ = ("ModelSpace",)


class ModelSpace(nn.Module, BaseModelSpace):
    """A torch model whose layers and init arguments may hold choices.

    Its mutables are found, in definition order, in its init arguments, in its public
    attributes, in mutables given to :meth:`add_mutable`, and in its submodules
    (LayerChoice, InputChoice, Repeat, layers with mutable arguments, and choices nested
    in their candidates). Mutables made without a label inside its ``__init__`` get
    automatic labels that come out the same each time the space is built. Built under
    :func:`~engine.model_context` (as a simplified space does in a worker, with mutable
    init arguments replaced by their values), it is the frozen model: a plain module
    tree. :meth:`freeze` gives the same tree from the live space, keeping its weights.

    A label used by two equal mutables is one shared choice; by two different ones, a
    DuplicateLabelError when the space is built.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _scoped(cls.__init__)  # type: ignore[method-assign]

    def add_mutable(self, mutable: Mutable) -> Any:
        """Register ``mutable`` with this space and return its value: the sample's choice
        under a model context (where nothing is registered: the model is frozen), its
        default otherwise (so the space still runs)."""
        if not isinstance(mutable, Mutable):
            raise TypeError(f"add_mutable takes a mutable, got {type(mutable).__name__}")
        if in_model_context():
            return ensure_frozen(mutable)
        self.__dict__.setdefault("_nas_mutables", []).append(mutable)
        return mutable.default()

    def leaf_mutables(self) -> Iterator[LabeledMutable]:
        call = self.init_call()
        yield from leaves_of([*call.args, *call.kwargs.values()])
        yield from leaves_of(v for k, v in vars(self).items() if not k.startswith("_"))
        yield from leaves_of(self.__dict__.get("_nas_mutables", ()))
        for child in self.children():
            yield from module_leaves(child)

    def uses(self) -> Uses:
        """Init arguments, attributes and :meth:`add_mutable` mutables always; what its
        submodules use (a LayerChoice: its chosen candidate; a Repeat: its first blocks)."""
        call = self.init_call()
        always = [*leaves_of([*call.args, *call.kwargs.values()]),
                  *leaves_of(v for k, v in vars(self).items() if not k.startswith("_")),
                  *leaves_of(self.__dict__.get("_nas_mutables", ()))]
        return Uses(always, [module_uses(child) for child in self.children()])

    def freeze(self, sample: Mapping[str, Any]) -> Any:
        """The model ``sample`` picks, made from this live space: a deep copy with every
        module that holds choices replaced by its frozen form, so weights and in-place edits
        (a submodule set after construction, say) are kept. Mutable layers whose arguments
        the sample changes are built anew (a new shape needs new weights).

        A space whose constructor itself applies choices (values from :meth:`add_mutable`,
        or mutable init arguments that no submodule or attribute takes) cannot be copied
        with another choice: it is built again from its constructor under
        :func:`~engine.model_context`, with fresh weights, as a simplified space would be.
        """
        self.validate(sample)
        if self.constructor_choices():
            # The constructor builds unchosen parts too: give their choices a value.
            return super().freeze(self.completed(sample))
        call = self.init_call()
        try:
            clone = copy.deepcopy(self, {id(call): call})
        except (TypeError, copy.Error) as exc:
            raise TypeError(
                f"{type(self).__name__} cannot be frozen: freezing deep-copies the live model "
                f"(to keep its weights), and part of it cannot be copied ({exc}). Keep such "
                "objects out of the space, or freeze it through SimplifiedModelSpace"
            ) from exc
        for name, child in clone._modules.items():
            if child is not None:
                clone._modules[name] = freeze_module(child, sample)
        for name, value in vars(clone).items():
            if not name.startswith("_") and isinstance(value, Mutable):
                clone.__dict__[name] = value.freeze(sample)
        clone.__dict__["_nas_init_call"] = frozen_call(call, sample)
        clone.__dict__.pop("_nas_mutables", None)
        return clone

    def constructor_choices(self) -> list[str]:
        """Labels that only this space's constructor applies: those of :meth:`add_mutable`
        and of mutable init arguments that no submodule or public attribute takes."""
        labels = {leaf.label for leaf in leaves_of(self.__dict__.get("_nas_mutables", ()))}
        call = self.init_call()
        taken = {leaf.label for child in self.children() for leaf in module_leaves(child)}
        taken.update(leaf.label for leaf in leaves_of(
            v for k, v in vars(self).items() if not k.startswith("_")))
        labels.update(leaf.label for leaf in leaves_of([*call.args, *call.kwargs.values()])
                      if leaf.label not in taken)
        return sorted(labels)


def _scoped(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` inside one label scope; the outermost call checks labels at the end."""

    @functools.wraps(init)
    def __init__(self: ModelSpace, *args: Any, **kwargs: Any) -> None:
        outermost = "_nas_building" not in self.__dict__
        self.__dict__["_nas_building"] = True
        with label_scope():
            init(self, *args, **kwargs)
        if outermost and not in_model_context():
            self.simplify()  # raises DuplicateLabelError now, not at the first freeze

    return __init__
