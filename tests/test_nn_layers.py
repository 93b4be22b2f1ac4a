"""The built-in mutable layers: each takes mutables among its arguments, builds as its
default before freezing, and freezes (live or rebuilt in a worker) to the plain torch
layer with the chosen values; the default choice keeps the live layer's weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import engine as e
import engine.nn as enn
from engine import Categorical

C = Categorical

# (mutable layer, its arguments with one choice, a sample, input shape, what to check)
CASES: list[tuple[str, Callable[[], Any], dict[str, Any], tuple[int, ...], str, Any]] = [
    ("Conv3d", lambda: enn.Conv3d(2, C([4, 8], label="c"), 3), {"c": 8}, (1, 2, 5, 5, 5),
     "out_channels", 8),
    ("ConvTranspose1d", lambda: enn.ConvTranspose1d(2, C([4, 8], label="c"), 3), {"c": 4},
     (1, 2, 5), "out_channels", 4),
    ("ConvTranspose2d", lambda: enn.ConvTranspose2d(2, 3, C([1, 3], label="k")), {"k": 3},
     (1, 2, 5, 5), "kernel_size", (3, 3)),
    ("ConvTranspose3d", lambda: enn.ConvTranspose3d(2, C([4, 8], label="c"), 1), {"c": 8},
     (1, 2, 3, 3, 3), "out_channels", 8),
    ("BatchNorm3d", lambda: enn.BatchNorm3d(4, momentum=C([0.1, 0.5], label="m")),
     {"m": 0.5}, (2, 4, 3, 3, 3), "momentum", 0.5),
    ("GroupNorm", lambda: enn.GroupNorm(C([2, 4], label="g"), 8), {"g": 4}, (2, 8, 3),
     "num_groups", 4),
    ("InstanceNorm1d", lambda: enn.InstanceNorm1d(4, eps=C([1e-5, 1e-3], label="e")),
     {"e": 1e-3}, (2, 4, 6), "eps", 1e-3),
    ("InstanceNorm2d", lambda: enn.InstanceNorm2d(4, affine=C([False, True], label="a")),
     {"a": True}, (2, 4, 3, 3), "affine", True),
    ("MaxPool1d", lambda: enn.MaxPool1d(C([2, 3], label="k")), {"k": 3}, (1, 2, 9),
     "kernel_size", 3),
    ("MaxPool2d", lambda: enn.MaxPool2d(C([2, 3], label="k"), stride=1), {"k": 3},
     (1, 2, 6, 6), "kernel_size", 3),
    ("AvgPool1d", lambda: enn.AvgPool1d(C([2, 3], label="k")), {"k": 2}, (1, 2, 8),
     "kernel_size", (2,)),
    ("AvgPool2d", lambda: enn.AvgPool2d(C([2, 3], label="k")), {"k": 3}, (1, 2, 6, 6),
     "kernel_size", 3),
    ("AdaptiveAvgPool1d", lambda: enn.AdaptiveAvgPool1d(C([1, 4], label="o")), {"o": 4},
     (1, 2, 8), "output_size", 4),
    ("AdaptiveAvgPool2d", lambda: enn.AdaptiveAvgPool2d(C([1, 2], label="o")), {"o": 2},
     (1, 2, 8, 8), "output_size", 2),
    ("AdaptiveMaxPool2d", lambda: enn.AdaptiveMaxPool2d(C([1, 2], label="o")), {"o": 2},
     (1, 2, 8, 8), "output_size", 2),
    ("Dropout1d", lambda: enn.Dropout1d(C([0.0, 0.5], label="p")), {"p": 0.5}, (2, 3, 4),
     "p", 0.5),
    ("Dropout2d", lambda: enn.Dropout2d(C([0.0, 0.5], label="p")), {"p": 0.5},
     (2, 3, 4, 4), "p", 0.5),
]


class One(enn.ModelSpace):
    """A space made of one layer, named by ``name`` in ``CASES``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        make = {case[0]: case[1] for case in CASES}[name]
        self.layer = make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layer(x)
        return out


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_a_mutable_layer_freezes_to_the_plain_layer(case: Any) -> None:
    name, _, sample, shape, attribute, value = case
    space = One(name)
    plain = getattr(nn, name)
    assert isinstance(space.layer, plain)
    assert space(torch.randn(*shape)) is not None  # runs as its default before freezing
    for fmt in (e.RawFormatModelSpace, e.SimplifiedModelSpace):
        model = fmt.from_model(space).freeze(sample)
        if isinstance(model, e.SimplifiedModelSpace):
            model = e.SimplifiedModelSpace.load(model.dump())
        layer = model.executable_model().layer
        assert type(layer) is plain
        assert getattr(layer, attribute) == value
        layer.eval()
        assert layer(torch.randn(*shape)).dim() == len(shape)


class Attention(enn.ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.embed = Categorical([8, 16], label="embed")
        self.attn = enn.MultiheadAttention(self.embed, Categorical([2, 4], label="heads"),
                                           batch_first=True)


def test_multihead_attention() -> None:
    space = Attention()
    assert set(space.simplify()) == {"embed", "heads"}
    model = e.SimplifiedModelSpace.from_model(space).freeze({"embed": 16, "heads": 4})
    frozen = e.SimplifiedModelSpace.load(model.dump()).executable_model()
    assert type(frozen.attn) is nn.MultiheadAttention
    assert (frozen.attn.embed_dim, frozen.attn.num_heads) == (16, 4)
    x = torch.randn(2, 5, 16)
    out, _ = frozen.attn(x, x, x)
    assert out.shape == (2, 5, 16)
    # The default architecture keeps the live layer's weights; another one starts afresh.
    live = space.freeze({"embed": 8, "heads": 2})
    assert torch.equal(live.attn.in_proj_weight, space.attn.in_proj_weight)
    assert not any(isinstance(m, e.Mutable) for m in list(live.modules())[1:])
