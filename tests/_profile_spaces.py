"""An importable torch space for the profile tests (a process worker rebuilds it)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import engine as e
from engine import nn as enn


class Mlp(enn.ModelSpace):
    """Linear(8, width), ReLU, Linear(width, 2): 46 parameters at width 4, 706 at 64."""

    def __init__(self) -> None:
        super().__init__()
        width = e.Categorical([4, 64], label="width")
        self.body = nn.Sequential(enn.Linear(8, width), nn.ReLU(), enn.Linear(width, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


def train_mlp(model: Mlp, trained: str = "", value: Any = 0.5) -> Any:
    """One real optimizer step; appends the model's width to the file ``trained``, so a
    test sees which models trained."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.ones(4, 8)).sum().backward()
    optimizer.step()
    if trained:
        with open(trained, "a") as file:
            file.write(f"{model.body[0].out_features}\n")
    return value


def mlp_space(**kwargs: Any) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Mlp(), e.FunctionEvaluator(train_mlp, **kwargs))
