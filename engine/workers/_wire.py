"""The messages between a :class:`~engine.workers.process.ProcessPool` and its worker
processes, and their framing: a 4-byte big-endian length, then one msgpack message.

Parent to worker: ``Setup`` once (with what to preload before it says hello), then
``Run`` per trial, ``Preload`` to import a model's modules ahead of its Runs, ``Skip``
to take back a Run not started yet, ``Halt`` to end the running trial at its next
report (its strategy stopped or paused the model: the worker is kept), ``Stop`` to
exit cleanly. A worker may be sent
Runs while it is busy (prefetch): it runs them in order, each as soon as the one
before has ended.
Worker to parent: ``Hello`` once ready, then per trial ``Began`` (its model is built
and training starts: the honest start of the trial), any ``Intermediate`` and ``Final``
reports as they happen, ending with ``Done`` (which carries a final reported
just before the trial ended) or ``Failed``; the next Run it holds starts right after
that. A Skip is answered at once: ``Skipped``, or ``Started`` when that Run had begun.
"""

from __future__ import annotations

import struct
from typing import TypeAlias

import msgspec

from engine._objective import MetricValue
from engine._recipe import Symbol

__all__ = (
    "Began",
    "Done",
    "Failed",
    "Final",
    "FrameBuffer",
    "FromWorker",
    "Halt",
    "Hello",
    "Intermediate",
    "OUTPUT_LIMIT",
    "Preload",
    "Run",
    "Setup",
    "Skip",
    "Skipped",
    "Started",
    "Stop",
    "ToWorker",
    "frame",
)

_HEADER = struct.Struct(">I")

#: The most of each captured output stream kept per trial (its tail), in bytes.
OUTPUT_LIMIT = 1 << 20


class Preload(msgspec.Struct, frozen=True, kw_only=True, tag="preload"):
    """Start-up work done before the trials that follow: import ``modules``, import the
    objects ``symbols`` name, call ``calls`` (no arguments), then, if torch is imported
    by now, pay its first-training costs (its lazily imported parts). In ``Setup`` it runs before
    Hello and a failure stops the worker; sent on its own, a failure is left to the
    trials (they fail with a clear error when they need what did not load)."""

    modules: tuple[str, ...] = ()
    symbols: tuple[Symbol, ...] = ()
    calls: tuple[Symbol, ...] = ()


class Setup(msgspec.Struct, frozen=True, kw_only=True, tag="setup"):
    """How the worker prepares: the parent's import path, where to capture output,
    what to preload before it says hello, and whether to echo each trial's output to
    its stderr as it comes (each line prefixed with the model id)."""

    sys_path: list[str]
    stdout_path: str
    stderr_path: str
    preload: Preload = Preload()
    echo: bool = False


class Run(msgspec.Struct, frozen=True, kw_only=True, tag="run"):
    """Execute one frozen model (``SimplifiedModelSpace.dump()`` bytes), after the Runs
    sent before it. ``id`` names it in Skip, Started and Skipped; ``model_id`` is the
    engine's id for it (echoed output's prefix). ``checkpoint``: the folder of the
    model's checkpoints (None: none), ``resume_step`` the step it continues from."""

    id: int
    model: bytes
    model_id: int = 0
    checkpoint: str | None = None
    resume_step: int = 0


class Skip(msgspec.Struct, frozen=True, kw_only=True, tag="skip"):
    """Drop Run ``id`` if it has not started: answered by Skipped, or by Started."""

    id: int


class Halt(msgspec.Struct, frozen=True, kw_only=True, tag="halt"):
    """End Run ``id`` at its training code's next ``report_intermediate``,
    ``report_final`` or ``save_checkpoint`` call (which raises a BaseException that the
    trial runner catches), or before it starts; then send its Done as usual and take
    the next Run. Ignored when Run ``id`` has ended already."""

    id: int


class Stop(msgspec.Struct, frozen=True, kw_only=True, tag="stop"):
    """Exit once the Runs sent before it have run: the worker is being recycled."""


class Hello(msgspec.Struct, frozen=True, kw_only=True, tag="hello"):
    """The worker is ready; ``visible_devices`` is the CUDA_VISIBLE_DEVICES it sees."""

    pid: int
    visible_devices: str | None


class Started(msgspec.Struct, frozen=True, kw_only=True, tag="started"):
    """The answer to a Skip that came too late: Run ``id`` had begun (it may have
    ended), after the Done or Failed of the Run before it."""

    id: int


class Skipped(msgspec.Struct, frozen=True, kw_only=True, tag="skipped"):
    """Run ``id`` was dropped unstarted, as a Skip asked."""

    id: int


class Began(msgspec.Struct, frozen=True, kw_only=True, tag="began"):
    """The running trial's model is built and its training starts now; ``setup`` is the
    seconds spent getting there (loading and building the model). Sent once per trial,
    before any report (also before the Failed of a model that did not build)."""

    setup: float


class Intermediate(msgspec.Struct, frozen=True, kw_only=True, tag="intermediate"):
    value: MetricValue  # a number, or a dict of named numbers


class Final(msgspec.Struct, frozen=True, kw_only=True, tag="final"):
    value: MetricValue


class Done(msgspec.Struct, frozen=True, kw_only=True, tag="done"):
    """The trial returned: the final metric not sent yet (if any), the captured output."""

    final: MetricValue | None = None
    stdout: str = ""
    stderr: str = ""


class Failed(msgspec.Struct, frozen=True, kw_only=True, tag="failed"):
    """The trial raised: the exception as data, and the captured output."""

    error_type: str
    message: str
    traceback: str
    invalid: bool = False
    paths: tuple[str, ...] = ()
    stdout: str = ""
    stderr: str = ""


ToWorker: TypeAlias = Setup | Run | Preload | Skip | Halt | Stop
FromWorker: TypeAlias = (
    Hello | Started | Skipped | Began | Intermediate | Final | Done | Failed)

_encoder = msgspec.msgpack.Encoder()


def frame(message: ToWorker | FromWorker) -> bytes:
    """``message`` as one length-prefixed frame."""
    payload = _encoder.encode(message)
    return _HEADER.pack(len(payload)) + payload


class FrameBuffer:
    """Collects bytes as they arrive and yields the complete frames among them."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete frame's payload, or ``None`` until more bytes arrive."""
        if len(self._buffer) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self._buffer)
        end = _HEADER.size + size
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[_HEADER.size:end])
        del self._buffer[:end]
        return payload
