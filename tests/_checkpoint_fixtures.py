"""Importable training functions that keep checkpoints, for the pause / checkpoint tests
(some run in worker processes or in a driver process the tests kill)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import anyio.lowlevel

import engine as e

EPOCHS = 4


class Counter(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical([1, 2, 3, 4, 5, 6], label="x"))


def value(x: int, step: int) -> float:
    """Model ``x``'s report at ``step``: which model and which epoch, readable."""
    return float(10 * x + step)


def _start() -> int:
    """The epochs already trained: from the checkpoint this attempt continues from."""
    state: Any = e.load_checkpoint()
    return 0 if state is None else int(state["epoch"])


async def climb(model: Counter, epochs: int = EPOCHS) -> float:
    """Trains ``epochs`` epochs: checkpoint, then report, then a checkpoint of the event
    loop (where a pause lands). Its final is the epoch it continued from."""
    start = _start()
    for epoch in range(start + 1, epochs + 1):
        e.save_checkpoint({"epoch": epoch, "x": model.x})
        e.report_intermediate(value(model.x, epoch))
        await anyio.lowlevel.checkpoint()
    return float(start)


async def idle(model: Counter) -> float:
    """Trains until cancelled."""
    await anyio.sleep_forever()
    return 0.0


def climb_sync(model: Counter, epochs: int = EPOCHS, fail_at: int = 0, die_at: int = 0,
               hang_at: int = 0, once: str = "") -> float:
    """``climb`` in a thread or a worker process. On an attempt that starts afresh, it
    raises after reporting step ``fail_at``, its process exits (as if killed) after
    ``die_at``, or it hangs for good after ``hang_at`` (0: never). With ``once`` (a
    file's path), its process exits only the first time: a retry that starts afresh
    again, because the driver heard none of its reports, then trains on."""
    start = _start()
    if once and die_at:
        marker = Path(once)
        if marker.exists():
            die_at = 0
        else:
            marker.touch()
    for epoch in range(start + 1, epochs + 1):
        e.save_checkpoint({"epoch": epoch, "x": model.x})
        e.report_intermediate(value(model.x, epoch))
        if start == 0 and epoch == fail_at:
            raise RuntimeError(f"failed after epoch {epoch}")
        if start == 0 and epoch == die_at:
            os._exit(3)
        if start == 0 and epoch == hang_at:
            threading.Event().wait()
    return float(start)


def space(function: Any = climb, **kwargs: Any) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Counter(), e.FunctionEvaluator(function, **kwargs))


def fit(model: Counter, epochs: int = EPOCHS, die_at: int = 0) -> float:
    """Trains a small torch model with momentum (its optimizer state matters) and keeps
    checkpoints of both state dicts; reports the loss after each epoch. On an attempt
    that starts afresh, its process exits after ``die_at`` (0: never). Its final is the
    epoch it continued from. Deterministic: continued from a checkpoint, it reports
    what an uninterrupted run reports."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(model.x)
    data = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    target = data.sum(1, keepdim=True)
    net = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    state = e.load_checkpoint()
    start = 0
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
    for epoch in range(start + 1, epochs + 1):
        optimizer.zero_grad()
        F.mse_loss(net(data), target).backward()
        optimizer.step()
        e.save_checkpoint({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                           "epoch": epoch})
        with torch.no_grad():
            e.report_intermediate(F.mse_loss(net(data), target).item())
        if start == 0 and epoch == die_at:
            os._exit(3)
    return float(start)
