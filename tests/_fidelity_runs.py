"""Run files whose models reached different fidelities, for the dashboard's tests: a
model trained to its end, one its strategy stopped early, one paused, one failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    MetricReported,
    ModelFailed,
    ModelPaused,
    ModelQueued,
    ModelTrained,
    TrainingStarted,
)
from tests._results_fixtures import write_run


def _trains(model_id: int, curve: list[float]) -> list[Any]:
    return [(ModelQueued, {"model_id": model_id, "sample": {"x": model_id, "act": "relu"}}),
            (TrainingStarted, {"model_id": model_id, "worker": "w0", "attempt": 1})] + [
        (MetricReported, {"model_id": model_id, "value": v, "step": s})
        for s, v in enumerate(curve, 1)]


def mixed_run(path: Path, *, full: bool = True) -> Path:
    """:func:`mixed_events` written to ``path`` (not from async code: see ``write``)."""
    return write_run(path, mixed_events(full=full))


def mixed_events(*, full: bool = True) -> list[Event]:
    """Model 1 trains 3 steps to its end (0.7; left out without ``full``), model 2 is
    stopped at step 1 (0.95), model 3 fails, model 4 pauses at step 2 (0.99), in that
    order (one second apart)."""
    events: list[Any] = [(EngineStarted, {"pool": "inline", "capacity": 1})]
    if full:
        events += _trains(1, [0.3, 0.5, 0.7])
        events.append((ModelTrained, {"model_id": 1, "final": 0.7, "duration": 1.0}))
    events += _trains(2, [0.95])
    events.append((ModelTrained, {"model_id": 2, "final": 0.95, "duration": 1.0,
                                  "stopped_at": 1}))
    events += _trains(3, [])
    events.append((ModelFailed, {"model_id": 3, "error_type": "ValueError",
                                 "message": "nope", "traceback": "tb", "attempt": 1}))
    events += _trains(4, [0.9, 0.99])
    events += [(ModelPaused, {"model_id": 4, "step": 2}), (EngineStopped, {"reason": "finished"})]
    return [kind(seq=seq, time=100.0 + seq, **fields)
            for seq, (kind, fields) in enumerate(events, 1)]
