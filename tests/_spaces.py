"""Model spaces and evaluator functions shared by the model-space tests.

They live here, imported as ``tests._spaces``, because a dumped model names its symbols
by module: pytest imports test files as top-level ``test_*`` modules (``tests`` has no
``__init__.py``), which another process cannot import, while ``tests._spaces`` imports in
any process started in the repository root.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import msgspec

from engine import (
    BaseModelSpace,
    Categorical,
    MutableList,
    Numerical,
    current_model,
    ensure_frozen,
    report_final,
    report_intermediate,
)


class Net(BaseModelSpace):
    """A width, a dropout rate and two kernel sizes; ``depth`` is a plain init argument."""

    def __init__(self, depth: int = 2) -> None:
        self.depth = depth
        self.width = ensure_frozen(Categorical([8, 16, 32], label="width"))
        self.dropout = ensure_frozen(Numerical(0.0, 0.5, quantize=0.1, label="dropout"))
        self.kernels = ensure_frozen(MutableList([
            Categorical([3, 5], label="k1"),
            Categorical([3, 5, 7], label="k2"),
        ]))
        self.built_under = current_model()


class Tree(BaseModelSpace):
    """Holds any structure of mutables, passed as its init argument."""

    def __init__(self, tree: Any) -> None:
        self.tree = ensure_frozen(tree)


class Wide(BaseModelSpace):
    """Its only mutable comes in as an init argument."""

    def __init__(self, width: Any, name: str = "wide") -> None:
        self.width = width
        self.name = name


def score(model: Net, lr: float = 0.1, epochs: int = 2) -> float:
    """Reports one intermediate per epoch and returns the final metric."""
    for epoch in range(epochs):
        report_intermediate(epoch + lr)
    return model.width * lr + model.depth


def final_wins(model: Any, value: float) -> float:
    """Reports ``value`` as final, then returns something else."""
    report_final(value)
    return -1.0


def no_metric(model: Any) -> None:
    """Reports nothing and returns nothing."""


def returns(model: Any, value: Any) -> Any:
    """Returns ``value`` as it is (a bad metric, say)."""
    return value


async def async_score(model: Net, lr: float = 0.1) -> float:
    """An async evaluator: reports across a checkpoint, returns the final."""
    report_intermediate(lr)
    await anyio.lowlevel.checkpoint()
    report_intermediate(2 * lr)
    return model.width * lr


def tree_metric(model: Tree, **kwargs: Any) -> float:
    """A metric that depends on the whole frozen tree and every evaluator argument (and not
    on whether a value is a tuple or the list a message gives back)."""
    report_intermediate(float(len(kwargs)))
    return float(len(msgspec.json.encode([model.tree, sorted(kwargs.items())])))
