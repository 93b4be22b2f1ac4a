"""Worker pools: one protocol (:class:`WorkerPool`), three pools, one trial runner.

- :class:`InlinePool`: threads in this process (tests, raw-format models).
- :class:`ProcessPool`: persistent spawned worker processes, GPU shares pinned with
  ``CUDA_VISIBLE_DEVICES``.
- :class:`RayPool`: Ray actors on a cluster (the ``ray`` extra; imported lazily).

Every pool calls :mod:`engine.workers.trial_runner` on the worker's side and passes the
conformance kit in :mod:`engine.testing`.
"""

from __future__ import annotations

from engine.errors import WorkerStartFailed as WorkerStartFailed
from engine.workers._base import PoolMonitor as PoolMonitor
from engine.workers._base import Trial as Trial
from engine.workers._base import TrialOutput as TrialOutput
from engine.workers._base import WorkerPool as WorkerPool
from engine.workers.inline import InlinePool as InlinePool
from engine.workers.process import ProcessPool as ProcessPool
from engine.workers.ray_pool import RayPool as RayPool

__all__ = (
    "InlinePool",
    "PoolMonitor",
    "ProcessPool",
    "RayPool",
    "Trial",
    "TrialOutput",
    "WorkerPool",
    "WorkerStartFailed",
)
