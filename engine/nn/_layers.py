"""Torch layers whose init arguments may be mutables (``Linear(16, width)``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import nn

from engine._context import ensure_frozen
from engine.mutable import LabeledMutable, freeze_value, leaves_of
from engine.nn._base import MutableModule, default_of

__all__ = (
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "LayerNorm",
    "Linear",
    "MaxPool1d",
    "MaxPool2d",
    "MultiheadAttention",
    "MutableLayer",
)


class MutableLayer(MutableModule):
    """A torch layer that accepts mutables among its init arguments.

    Make one by putting it before the plain layer: ``class Conv3d(MutableLayer,
    nn.Conv3d): pass``. Under a model context the constructor returns the plain layer
    built with the chosen values; before freezing, the layer is built with every
    mutable at its default.
    """

    plain_layer: ClassVar[type[nn.Module]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__bases__:
            if issubclass(base, nn.Module) and not issubclass(base, MutableModule):
                cls.plain_layer = base
                return
        if not hasattr(cls, "plain_layer"):
            raise TypeError(f"{cls.__name__} needs a plain torch layer among its bases, as "
                            f"in class {cls.__name__}(MutableLayer, nn.Conv3d)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*map(default_of, args),
                         **{key: default_of(value) for key, value in kwargs.items()})
        self.__dict__["_nas_args"] = (args, kwargs)

    @classmethod
    def _build_frozen(cls, *args: Any, **kwargs: Any) -> nn.Module:
        return cls.plain_layer(*map(ensure_frozen, args),
                               **{key: ensure_frozen(value) for key, value in kwargs.items()})

    def _arguments(self) -> list[Any]:
        args, kwargs = self.__dict__["_nas_args"]
        return [*args, *kwargs.values()]

    def _own_mutables(self) -> Iterable[LabeledMutable]:
        return leaves_of(self._arguments())

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        """The plain layer built with the values ``sample`` picks. It keeps this layer's
        weights when those values are the ones it was built with (same shape), and starts
        from fresh weights otherwise."""
        self.validate(sample)
        args, kwargs = self.__dict__["_nas_args"]
        frozen_args = [freeze_value(a, sample) for a in args]
        frozen_kwargs = {k: freeze_value(v, sample) for k, v in kwargs.items()}
        layer = self.plain_layer(*frozen_args, **frozen_kwargs)
        if frozen_args == list(map(default_of, args)) and frozen_kwargs == {
                k: default_of(v) for k, v in kwargs.items()}:
            layer.load_state_dict(self.state_dict())
        return layer

    def extra_repr(self) -> str:
        labels = sorted({leaf.label for leaf in self._own_mutables()})
        return f"{super().extra_repr()}, choices={labels}" if labels else super().extra_repr()


class Linear(MutableLayer, nn.Linear):
    """``nn.Linear`` whose arguments may be mutables."""


class Conv1d(MutableLayer, nn.Conv1d):
    """``nn.Conv1d`` whose arguments may be mutables."""


class Conv2d(MutableLayer, nn.Conv2d):
    """``nn.Conv2d`` whose arguments may be mutables."""


class BatchNorm1d(MutableLayer, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose arguments may be mutables."""


class BatchNorm2d(MutableLayer, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose arguments may be mutables."""


class LayerNorm(MutableLayer, nn.LayerNorm):
    """``nn.LayerNorm`` whose arguments may be mutables."""


class Dropout(MutableLayer, nn.Dropout):
    """``nn.Dropout`` whose arguments may be mutables."""


class Conv3d(MutableLayer, nn.Conv3d):
    """``nn.Conv3d`` whose arguments may be mutables."""


class ConvTranspose1d(MutableLayer, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` whose arguments may be mutables."""


class ConvTranspose2d(MutableLayer, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose arguments may be mutables."""


class ConvTranspose3d(MutableLayer, nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` whose arguments may be mutables."""


class BatchNorm3d(MutableLayer, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` whose arguments may be mutables."""


class GroupNorm(MutableLayer, nn.GroupNorm):
    """``nn.GroupNorm`` whose arguments may be mutables."""


class InstanceNorm1d(MutableLayer, nn.InstanceNorm1d):
    """``nn.InstanceNorm1d`` whose arguments may be mutables."""


class InstanceNorm2d(MutableLayer, nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` whose arguments may be mutables."""


class MaxPool1d(MutableLayer, nn.MaxPool1d):
    """``nn.MaxPool1d`` whose arguments may be mutables."""


class MaxPool2d(MutableLayer, nn.MaxPool2d):
    """``nn.MaxPool2d`` whose arguments may be mutables."""


class AvgPool1d(MutableLayer, nn.AvgPool1d):
    """``nn.AvgPool1d`` whose arguments may be mutables."""


class AvgPool2d(MutableLayer, nn.AvgPool2d):
    """``nn.AvgPool2d`` whose arguments may be mutables."""


class AdaptiveAvgPool1d(MutableLayer, nn.AdaptiveAvgPool1d):
    """``nn.AdaptiveAvgPool1d`` whose arguments may be mutables."""


class AdaptiveAvgPool2d(MutableLayer, nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` whose arguments may be mutables."""


class AdaptiveMaxPool2d(MutableLayer, nn.AdaptiveMaxPool2d):
    """``nn.AdaptiveMaxPool2d`` whose arguments may be mutables."""


class Dropout1d(MutableLayer, nn.Dropout1d):
    """``nn.Dropout1d`` whose arguments may be mutables."""


class Dropout2d(MutableLayer, nn.Dropout2d):
    """``nn.Dropout2d`` whose arguments may be mutables."""



class MultiheadAttention(MutableLayer, nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose arguments may be mutables."""
