"""Check ProcessPool's GPU placement on a GPU machine.

Trains a few small torch models through ``Engine(ProcessPool(gpus_per_trial=0.5))`` and
prints, per trial, where it ran: the worker, its GPU ids, the CUDA device name the trial
saw, its CUDA_VISIBLE_DEVICES and the memory it had allocated. Exits 1 when a trial
failed or did not see exactly its own GPU.

Run (needs only the repository and torch)::

    pip install -e . && python benchmarks/gpu_check.py [--trials 4] [--gpus-per-trial 0.5]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import anyio

from engine import (
    BaseModelSpace,
    Categorical,
    Engine,
    FunctionEvaluator,
    SimplifiedModelSpace,
    ensure_frozen,
    report_intermediate,
)
from engine import events as ev
from engine.workers.process import ProcessPool


class TinyNet(BaseModelSpace):
    """An MLP whose width and depth are chosen per trial."""

    def __init__(self, inputs: int) -> None:
        self.inputs = inputs
        self.width = ensure_frozen(Categorical([64, 128, 256], label="width"))
        self.depth = ensure_frozen(Categorical([1, 2, 3], label="depth"))


def train(model: TinyNet, steps: int) -> float:
    """Fits random labels on the trial's GPU; prints what the trial saw."""
    import torch  # in the worker only: the parent never initialises CUDA

    device = torch.device("cuda")
    layers: list[Any] = []
    width = model.inputs
    for _ in range(model.depth):
        layers += [torch.nn.Linear(width, model.width), torch.nn.ReLU()]
        width = model.width
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 2)).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.manual_seed(0)
    x = torch.randn(512, model.inputs, device=device)
    y = (x.sum(dim=1) > 0).long()
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            report_intermediate(loss.item())
    accuracy = (net(x).argmax(dim=1) == y).float().mean().item()
    print(f"device={torch.cuda.get_device_name(device)!r} "
          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} "
          f"device_count={torch.cuda.device_count()} "
          f"memory_allocated={torch.cuda.memory_allocated(device) / 2**20:.1f}MiB "
          f"max_memory_allocated={torch.cuda.max_memory_allocated(device) / 2**20:.1f}MiB "
          f"pid={os.getpid()}")
    return accuracy


async def main(trials: int, gpus_per_trial: float, steps: int) -> int:
    space = SimplifiedModelSpace.from_model(TinyNet(32), FunctionEvaluator(train, steps=steps))
    samples = [{"width": [64, 128, 256][i % 3], "depth": 1 + i % 3} for i in range(trials)]
    pool = ProcessPool(gpus_per_trial=gpus_per_trial)
    print(f"{pool!r}: {trials} trials at gpus_per_trial={gpus_per_trial}")
    started: dict[int, ev.TrainingStarted] = {}
    failed: dict[int, ev.ModelFailed] = {}
    async with Engine(pool) as engine:
        events = engine.subscribe()
        handles = [await engine.submit(space.freeze(sample)) for sample in samples]
        for handle in handles:
            await handle
    async for event in events:
        if isinstance(event, ev.TrainingStarted):
            started[event.model_id] = event
        elif isinstance(event, ev.ModelFailed):
            failed[event.model_id] = event
    return report(handles, started, failed)


def report(handles: list[Any], started: dict[int, ev.TrainingStarted],
           failed: dict[int, ev.ModelFailed]) -> int:
    problems = 0
    for handle in handles:
        where = started.get(handle.model_id)
        seen = handle.output.stdout.strip() if handle.output else ""
        print(f"trial {handle.model_id} {handle.model.sample} {handle.status.value} "
              f"metric={handle.model.metric} worker={where.worker if where else None} "
              f"gpus={where.gpus if where else None} {seen}")
        if handle.model_id in failed:
            print(f"  {failed[handle.model_id].error_type}: {failed[handle.model_id].message}")
        own_gpus = len(where.gpus) if where else -1  # a trial sees its own GPUs only
        if handle.model.metric is None or f"device_count={own_gpus} " not in seen:
            problems += 1
    print("ok" if not problems else f"{problems} trial(s) failed or saw the wrong GPUs")
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--gpus-per-trial", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.trials, args.gpus_per_trial, args.steps))
