"""Checkpoints with RayPool on one machine: a model whose actor died is retried from
its last checkpoint (the actor writes to the run's folder by the driver's path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, ModelStatus
from engine import events as ev
from tests._checkpoint_fixtures import EPOCHS, climb_sync, space, value

ray = pytest.importorskip("ray", reason="RayPool needs Ray: pip install 'nas-engine[ray]'")

from engine.workers.ray_pool import RayPool  # noqa: E402 - after the skip

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A local Ray cluster (a head node with 2 CPUs) this process is connected to."""
    from ray.cluster_utils import Cluster

    head = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 2})
    try:
        yield head
    finally:
        ray.shutdown()
        head.shutdown()


async def test_a_model_whose_actor_died_continues_from_its_checkpoint(
        cluster: Any, tmp_path: Path) -> None:
    async with Engine(RayPool(1), max_retries=1) as engine:
        log = engine.subscribe()
        handle = await engine.submit(space(climb_sync, die_at=2, once=str(
            tmp_path / "died")).freeze({"x": 6}))
        model = await handle
    events = [event async for event in log]
    assert model.status is ModelStatus.Trained
    assert any(isinstance(e, ev.ModelRetrying) and "WorkerLost" in e.reason for e in events)
    starts = [e.resume_step for e in events if isinstance(e, ev.TrainingStarted)]
    # The actor's process exits right after its report of step 2, which Ray may not
    # have streamed yet (nor step 1's): the model then continues from the checkpoint of
    # the last step the driver heard (the one before is kept for that), or afresh when
    # it heard none, never from one it did not hear.
    heard = [e.step for e in events if isinstance(e, ev.MetricReported)]
    assert starts[0] == 0
    assert starts[1] in (0, 1, 2)
    assert heard[:starts[1]] == list(range(1, starts[1] + 1))
    assert model.metric == float(starts[1])  # it loaded the checkpoint of that epoch
    assert model.metrics.intermediates == [value(6, s) for s in range(1, EPOCHS + 1)]
