"""Model spaces written in PyTorch.

Subclass :class:`ModelSpace` and build the model with search primitives::

    class Net(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            width = Categorical([16, 32], label="width")
            self.fc1 = Linear(8, width)                       # a mutable layer argument
            self.act = LayerChoice([nn.ReLU(), nn.Tanh()])    # labelled "layerchoice_1"
            self.body = Repeat(lambda i: Linear(width, width), (1, 3))
            self.fc2 = Linear(width, 2)

Built under :func:`engine.model_context` (which is what ``freeze`` and a worker do), the
same code builds the frozen model: LayerChoice returns the chosen candidate, Repeat an
``nn.Sequential``, InputChoice a :class:`ChosenInputs`, a mutable layer the plain torch
layer. Before freezing, a space runs as its default architecture.

Exceptions: bad arguments raise TypeError or ValueError naming the primitive's label; a
sample that does not fit raises :class:`~engine.SampleValidationError` whose ``paths``
end with the label; one label on two different mutables raises
:class:`~engine.DuplicateLabelError`.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401  (checked first, so the error says what to install)
except ModuleNotFoundError as exc:
    if exc.name != "torch":
        raise
    raise ModuleNotFoundError(
        "engine.nn needs PyTorch, which is not installed: pip install 'nas-engine[torch]' "
        "(or install torch for your platform as https://pytorch.org describes)",
        name="torch",
    ) from exc

from engine.nn._base import MutableModule as MutableModule
from engine.nn._choice import ChosenInputs as ChosenInputs
from engine.nn._choice import InputChoice as InputChoice
from engine.nn._choice import LayerChoice as LayerChoice
from engine.nn._layers import AdaptiveAvgPool1d as AdaptiveAvgPool1d
from engine.nn._layers import AdaptiveAvgPool2d as AdaptiveAvgPool2d
from engine.nn._layers import AdaptiveMaxPool2d as AdaptiveMaxPool2d
from engine.nn._layers import AvgPool1d as AvgPool1d
from engine.nn._layers import AvgPool2d as AvgPool2d
from engine.nn._layers import BatchNorm1d as BatchNorm1d
from engine.nn._layers import BatchNorm2d as BatchNorm2d
from engine.nn._layers import BatchNorm3d as BatchNorm3d
from engine.nn._layers import Conv1d as Conv1d
from engine.nn._layers import Conv2d as Conv2d
from engine.nn._layers import Conv3d as Conv3d
from engine.nn._layers import ConvTranspose1d as ConvTranspose1d
from engine.nn._layers import ConvTranspose2d as ConvTranspose2d
from engine.nn._layers import ConvTranspose3d as ConvTranspose3d
from engine.nn._layers import Dropout as Dropout
from engine.nn._layers import Dropout1d as Dropout1d
from engine.nn._layers import Dropout2d as Dropout2d
from engine.nn._layers import GroupNorm as GroupNorm
from engine.nn._layers import InstanceNorm1d as InstanceNorm1d
from engine.nn._layers import InstanceNorm2d as InstanceNorm2d
from engine.nn._layers import LayerNorm as LayerNorm
from engine.nn._layers import Linear as Linear
from engine.nn._layers import MaxPool1d as MaxPool1d
from engine.nn._layers import MaxPool2d as MaxPool2d
from engine.nn._layers import MultiheadAttention as MultiheadAttention
from engine.nn._layers import MutableLayer as MutableLayer
from engine.nn._multiple import CategoricalMultiple as CategoricalMultiple
from engine.nn._repeat import Repeat as Repeat
from engine.nn._space import ModelSpace as ModelSpace

__all__ = (
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "CategoricalMultiple",
    "ChosenInputs",
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
    "InputChoice",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "LayerChoice",
    "LayerNorm",
    "Linear",
    "MaxPool1d",
    "MaxPool2d",
    "ModelSpace",
    "MultiheadAttention",
    "MutableLayer",
    "MutableModule",
    "Repeat",
)
