"""Typed events: one msgspec tagged union, and reusable codecs for it.

Every status change of every model is one event; so are the engine's and the workers'
life-cycle changes. Each event has ``seq`` (contiguous from 1 within a run), ``time``
(seconds since the epoch) and a ``kind`` tag. JSON and msgpack round trips give back
the same types::

    data = encode_json(event)
    assert decode_json(data) == event

JSON has no NaN or infinity, and a diverged training reports them: the JSON codec
spells a non-finite metric (``MetricReported.value``, ``ModelTrained.final`` and
``duration``) as the string ``"nan"``, ``"inf"`` or ``"-inf"`` and reads it back as the
float; the fields stay ``float``.
"""

from __future__ import annotations

import enum
import math
import typing
from typing import Any, TypeAlias

import msgspec

__all__ = (
    "EVENT_TYPES",
    "EngineStarted",
    "EngineStopped",
    "Event",
    "EventBase",
    "InterruptReason",
    "MetricReported",
    "ModelEvent",
    "ModelFailed",
    "ModelInterrupted",
    "ModelInvalid",
    "ModelPaused",
    "ModelQueued",
    "ModelResumed",
    "ModelRetrying",
    "ModelTrained",
    "Stamp",
    "TrainingStarted",
    "WorkerDied",
    "WorkerStarted",
    "decode_json",
    "decode_msgpack",
    "encode_json",
    "encode_msgpack",
)


class InterruptReason(enum.StrEnum):
    cancelled = "cancelled"  # its handle was cancelled
    timeout = "timeout"  # it ran past the per-trial timeout
    shutdown = "shutdown"  # the engine stopped (error, cancellation, wall-time budget)
    stopped = "stopped"  # its strategy stopped it early before it reported anything


class Stamp(typing.TypedDict):
    """What every event starts with: ``Kind(**stamp, field=...)``."""

    seq: int
    time: float


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    seq: int
    time: float

    @property
    def kind(self) -> str:
        """The event's tag (``"queued"``, ``"trained"``...), as in its JSON."""
        return str(self.__struct_config__.tag)


class ModelEvent(EventBase, frozen=True, kw_only=True):
    model_id: int


class EngineStarted(EventBase, frozen=True, kw_only=True, tag="engine_started"):
    pool: str
    capacity: int
    resumed: bool = False
    journal: str | None = None  # the run's SQLite file


class EngineStopped(EventBase, frozen=True, kw_only=True, tag="engine_stopped"):
    reason: str  # "finished", "error", "cancelled"


class WorkerStarted(EventBase, frozen=True, kw_only=True, tag="worker_started"):
    worker: str
    pid: int | None = None
    gpus: tuple[int, ...] = ()


class WorkerDied(EventBase, frozen=True, kw_only=True, tag="worker_died"):
    worker: str
    pid: int | None = None
    exitcode: int | None = None
    signal: int | None = None
    reason: str = ""


class ModelQueued(ModelEvent, frozen=True, kw_only=True, tag="queued"):
    """Status ``frozen``: accepted and waiting for a worker."""

    sample: dict[str, Any]


class TrainingStarted(ModelEvent, frozen=True, kw_only=True, tag="training"):
    """Status ``training``: its worker built the model and starts training it now.
    ``setup`` is the seconds the worker spent getting there (loading and building the
    model), which the trial's duration and timeout leave out. ``resume_step``: the
    attempt continues the model from its checkpoint of that step (it keeps its first
    ``resume_step`` intermediates; its next metric is step ``resume_step + 1``); 0 when
    it starts afresh."""

    worker: str
    attempt: int
    gpus: tuple[int, ...] = ()
    setup: float = 0.0
    resume_step: int = 0


class MetricReported(ModelEvent, frozen=True, kw_only=True, tag="metric"):
    """An intermediate metric (the status stays ``training``)."""

    value: float
    step: int


class ModelTrained(ModelEvent, frozen=True, kw_only=True, tag="trained", omit_defaults=True):
    """Trained to its end (``stopped_at`` None), or stopped early by its strategy
    (``handle.stop()``) after reporting ``stopped_at`` intermediates: then ``final`` is
    the last of them and the model ranks at that fidelity."""

    final: float
    duration: float
    stopped_at: int | None = None


class ModelFailed(ModelEvent, frozen=True, kw_only=True, tag="failed"):
    error_type: str
    message: str
    traceback: str
    attempt: int


class ModelRetrying(ModelEvent, frozen=True, kw_only=True, tag="retrying"):
    attempt: int  # the attempt that comes next
    reason: str


class ModelInterrupted(ModelEvent, frozen=True, kw_only=True, tag="interrupted"):
    reason: InterruptReason


class ModelInvalid(ModelEvent, frozen=True, kw_only=True, tag="invalid"):
    message: str
    paths: tuple[str, ...] = ()


class ModelPaused(ModelEvent, frozen=True, kw_only=True, tag="paused"):
    """Status ``paused``: its strategy paused it (``handle.pause()``); its worker is free.
    ``step``: the intermediates it keeps; ``checkpoint``: the step of the checkpoint it
    continues from when resumed (None: it saved none, and would start afresh)."""

    step: int
    checkpoint: int | None = None


class ModelResumed(ModelEvent, frozen=True, kw_only=True, tag="resumed"):
    """Status ``frozen`` again: a paused model is queued again (``handle.resume()``)."""


Event: TypeAlias = (
    EngineStarted
    | EngineStopped
    | WorkerStarted
    | WorkerDied
    | ModelQueued
    | TrainingStarted
    | MetricReported
    | ModelTrained
    | ModelFailed
    | ModelRetrying
    | ModelInterrupted
    | ModelInvalid
    | ModelPaused
    | ModelResumed
)

#: Every concrete event type, derived from the union: a new event type is added to
#: ``Event`` and nowhere else.
EVENT_TYPES: tuple[type[EventBase], ...] = typing.get_args(Event)

_json_encoder = msgspec.json.Encoder()
_json_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoder: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(Event)
# The fields that carry a trial's numbers, which may be NaN or infinite.
_FLOAT_FIELDS: dict[type[EventBase], tuple[str, ...]] = {
    MetricReported: ("value",), ModelTrained: ("final", "duration")}
_FLOAT_KINDS = {str(t.__struct_config__.tag): f for t, f in _FLOAT_FIELDS.items()}
#: How the JSON codec spells each non-finite float.
_SPELLINGS: dict[str | None, float] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode_json(event: EventBase) -> bytes:
    data = _json_encoder.encode(event)
    # msgspec writes a non-finite float as null; only then spell it (rare, so cheap).
    if b"null" in data and type(event) in _FLOAT_FIELDS:
        fields = msgspec.to_builtins(event)
        for name in _FLOAT_FIELDS[type(event)]:
            if not math.isfinite(fields[name]):
                fields[name] = str(fields[name])  # "nan", "inf", "-inf"
        data = _json_encoder.encode(fields)
    return data


def decode_json(data: bytes | str) -> Event:
    """One event from JSON; msgspec.ValidationError names the bad field (``at $.seq``)."""
    try:
        return _json_decoder.decode(data)
    except msgspec.ValidationError:
        event = _decode_non_finite(data, _SPELLINGS)
        if event is None:
            raise
        return event


def _decode_non_finite(data: bytes | str, spellings: dict[str | None, float]) -> Event | None:
    """The event in ``data`` with its metric fields spelled as in ``spellings`` read as
    those floats; None when that does not make it a valid event."""
    fields = msgspec.json.decode(data)
    names = _FLOAT_KINDS.get(str(fields.get("kind"))) if isinstance(fields, dict) else None
    if not names:
        return None
    for name in names:
        value = fields.get(name)
        if (value is None or isinstance(value, str)) and value in spellings:
            fields[name] = spellings[value]
    try:
        event: Event = msgspec.convert(fields, Event)
    except msgspec.ValidationError:
        return None
    return event


def encode_msgpack(event: EventBase) -> bytes:
    return _msgpack_encoder.encode(event)


def decode_msgpack(data: bytes) -> Event:
    return _msgpack_decoder.decode(data)
