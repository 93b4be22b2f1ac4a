"""The pool conformance kit (engine.testing) run against every pool of this package.

RayPool's part is in tests/test_ray_pool.py (it shares that module's Ray cluster)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import ExecutableModelSpace, InlinePool
from engine.testing import Check, Feature, MockPool, check_start_failure, checks
from engine.workers.process import ProcessPool
from tests.process_fixtures import children

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

PROCESS = Feature.ALL
INLINE = Feature.EXCEPTION | Feature.CANCEL | Feature.TIMEOUT | Feature.STOP


def name(check: Check) -> str:
    return check.__name__.removeprefix("check_")


@pytest.mark.parametrize("prefetch", [0, 1])
@pytest.mark.parametrize("check", checks(PROCESS), ids=name)
async def test_process_pool(check: Check, prefetch: int) -> None:
    await check(lambda: ProcessPool(2, prefetch=prefetch))
    assert children() == []


async def test_process_pool_start_failure(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("import os\nos._exit(7)\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    await check_start_failure(lambda: ProcessPool(2, env={"PYTHONPATH": path}))
    assert children() == []


@pytest.mark.parametrize("check", checks(INLINE), ids=name)
async def test_inline_pool(check: Check) -> None:
    await check(lambda: InlinePool(2, grace=5.0))


def execute(model: ExecutableModelSpace) -> None:
    """A MockPool handler that runs the model's evaluator (which reports the final)."""
    model.execute()


@pytest.mark.parametrize("check", checks(Feature.EXCEPTION), ids=name)
async def test_mock_pool(check: Check) -> None:
    await check(lambda: MockPool(execute, capacity=2))
