"""Where a model is in its life (:class:`ModelStatus`) and what it reported
(:class:`Metrics`)."""

from __future__ import annotations

import enum

import msgspec

from engine._objective import MetricValue


class ModelStatus(enum.StrEnum):
    """Where a model is in its life. Only ``frozen`` models go to an engine."""

    Initialized = "initialized"
    Mutating = "mutating"
    Frozen = "frozen"
    Training = "training"
    Trained = "trained"
    Failed = "failed"
    Interrupted = "interrupted"
    Invalid = "invalid"
    Retrying = "retrying"
    #: Its strategy paused it (``handle.pause()``): its worker is free, it keeps its
    #: intermediates and checkpoint, and ``handle.resume()`` queues it again.
    Paused = "paused"

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def frozen(self) -> bool:
        """A frozen model cannot be mutated any more."""
        return self not in (ModelStatus.Initialized, ModelStatus.Mutating)

    def completed(self) -> bool:
        """A completed status does not change any more."""
        return self in _COMPLETED


_COMPLETED = frozenset(
    {ModelStatus.Trained, ModelStatus.Failed, ModelStatus.Interrupted, ModelStatus.Invalid}
)


class Metrics(msgspec.Struct, kw_only=True):
    """A model's reported metrics: intermediates in order, and one final value."""

    intermediates: list[MetricValue] = msgspec.field(default_factory=list)
    #: A number, or a dict of named numbers when the model reported several metrics.
    final: MetricValue | None = None
    #: The step its strategy stopped it at (``final`` is then that step's intermediate);
    #: None when it trained to its end. See ``strategies.base.fidelity``.
    stopped_at: int | None = None

    def __bool__(self) -> bool:
        return bool(self.intermediates) or self.final is not None
