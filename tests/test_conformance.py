"""The pool conformance kit (engine.testing) run against every pool of this package.

RayPool's part is in tests/test_ray_pool.py (it shares that module's Ray cluster)."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import pytest

import engine.workers
from engine import ExecutableModelSpace, InlinePool
from engine.testing import Check, Feature, MockPool, check_start_failure, checks
from engine.workers.process import ProcessPool
from engine.workers.ray_pool import RayPool
from tests.process_fixtures import children

pytestmark = pytest.mark.timeout(120)

PROCESS = Feature.ALL
INLINE = Feature.EXCEPTION | Feature.CANCEL | Feature.TIMEOUT | Feature.STOP


def name(check: Check) -> str:
    return check.__name__.removeprefix("check_")


@pytest.mark.anyio
@pytest.mark.parametrize("prefetch", [0, 1])
@pytest.mark.parametrize("check", checks(PROCESS), ids=name)
async def test_process_pool(check: Check, prefetch: int) -> None:
    await check(lambda: ProcessPool(2, prefetch=prefetch))
    assert children() == []


@pytest.mark.anyio
async def test_process_pool_start_failure(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("import os\nos._exit(7)\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    await check_start_failure(lambda: ProcessPool(2, env={"PYTHONPATH": path}))
    assert children() == []


@pytest.mark.anyio
@pytest.mark.parametrize("check", checks(INLINE), ids=name)
async def test_inline_pool(check: Check) -> None:
    await check(lambda: InlinePool(2, grace=5.0))


def execute(model: ExecutableModelSpace) -> None:
    """A MockPool handler that runs the model's evaluator (which reports the final)."""
    model.execute()


@pytest.mark.anyio
@pytest.mark.parametrize("check", checks(Feature.EXCEPTION), ids=name)
async def test_mock_pool(check: Check) -> None:
    await check(lambda: MockPool(execute, capacity=2))


# -- every count refuses a bool (True is not 1 worker) -------------------------------------


@pytest.mark.parametrize(("make", "argument"), [
    (lambda v: InlinePool(v), "workers"),
    (lambda v: InlinePool(1, grace=v), "grace"),
    (lambda v: ProcessPool(v), "workers"),
    (lambda v: ProcessPool(1, prefetch=v), "prefetch"),
    (lambda v: ProcessPool(1, recycle_after=v), "recycle_after"),
    (lambda v: ProcessPool(1, start_timeout=v), "start_timeout"),
    (lambda v: ProcessPool(1, gpus_per_trial=v), "gpus_per_trial"),
    (lambda v: MockPool(execute, capacity=v), "capacity"),
    (lambda v: RayPool(v), "workers"),
    (lambda v: RayPool(1, num_cpus_per_trial=v), "num_cpus_per_trial"),
    (lambda v: RayPool(1, grace=v), "grace"),
])
@pytest.mark.parametrize("value", [True, False])
def test_counts_refuse_bools(make: Any, argument: str, value: bool) -> None:
    with pytest.raises(ValueError, match=f"^{argument} must be .*got {value}"):
        make(value)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ProcessPool(1, prefetch=-1), "prefetch must be an int >= 0 (models each worker "
                                          "holds besides the one it runs), got -1"),
    (lambda: ProcessPool(1, recycle_after=0), "recycle_after must be an int >= 1 or None "
                                              "(trials a worker runs before a fresh one "
                                              "takes its place), got 0"),
    (lambda: ProcessPool(1, start_timeout=float("nan")),
     "start_timeout must be a positive, finite number (seconds), got nan"),
    (lambda: InlinePool(1, grace=float("inf")),
     "grace must be a finite number >= 0 (seconds), got inf"),
    (lambda: RayPool(1, num_gpus_per_trial=-0.5),
     "num_gpus_per_trial must be a finite number >= 0, got -0.5"),
    (lambda: RayPool(1, grace=0), "grace must be a positive, finite number (seconds), got 0"),
])
def test_pool_arguments_share_one_check(make: Any, message: str) -> None:
    """Every pool's counts and durations go through engine._checks: one wording, which
    names the argument, the bound and what it measures."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make()


# -- one trial runner: no pool reaches into another ------------------------------------------

POOLS = ("inline", "process", "ray_pool")


@pytest.mark.parametrize("pool", POOLS)
def test_no_pool_imports_another_pools_names(pool: str) -> None:
    """Pools share the public trial runner (engine.workers.trial_runner) and the
    package's common modules, never another pool's module or its worker's."""
    source = (Path(engine.workers.__file__).parent / f"{pool}.py").read_text()
    imported = {node.module for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom) and node.module}
    others = {f"engine.workers.{name}" for name in (*POOLS, "_worker") if name != pool}
    assert imported & others == set()
