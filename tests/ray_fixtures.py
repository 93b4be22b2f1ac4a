"""Model spaces and evaluators that RayPool's actors import (by recipe) in tests."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import anyio.lowlevel

import engine as e


class Toy(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical(list(range(20)), label="x"))


def score(model: Toy) -> float:
    """Two intermediate reports, then the final metric (its return value)."""
    e.report_intermediate(model.x / 10)
    e.report_intermediate(model.x / 5)
    return float(model.x)


def loud(model: Toy) -> float:
    print(f"training {model.x}")
    print(f"warning {model.x}", file=sys.stderr)
    return float(model.x)


async def async_score(model: Toy) -> float:
    await anyio.lowlevel.checkpoint()
    e.report_intermediate(0.5)
    e.report_final(model.x * 2)
    return -1.0


def boom(model: Toy) -> float:
    print(f"about to fail {model.x}")
    print(f"stderr before failing {model.x}", file=sys.stderr)
    raise ValueError(f"boom {model.x}")


def invalid(model: Toy) -> float:
    raise e.SampleValidationError("this architecture cannot be built", ["model", "x"])


def pid_then_wait(model: Toy) -> float:
    """Report this worker's pid, then train until stopped from outside."""
    e.report_intermediate(os.getpid())
    threading.Event().wait()
    raise AssertionError("unreachable")


def pid_then_wait_once(model: Toy, marker: str) -> float:
    """The first attempt reports its pid and waits to be killed; the next one succeeds."""
    path = Path(marker)
    if path.exists():
        return 2.0
    path.touch()
    return pid_then_wait(model)


def visible_gpus(model: Toy) -> float:
    """The number of GPUs the trial sees (for the GPU check on a device machine)."""
    e.report_intermediate(os.getpid())
    print(os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
    return float(len([t for t in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if t]))


def space(fn: object = score, **kwargs: object) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Toy(), e.FunctionEvaluator(fn, **kwargs))  # type: ignore[arg-type]


def cuda_sum(model: Toy) -> float:
    """A computation on the GPU the trial was given (for the device machine check)."""
    import torch

    e.report_intermediate(torch.cuda.device_count())
    return float(torch.ones(1000, device="cuda").sum().item())
