"""A training function that outruns the driver: after the step its strategy pauses it
at, it saves and reports ``ahead`` more epochs before the driver hears that step, so
the halt reaches it only then (the pause race of issue 15, made deterministic with a
FIFO handshake instead of timing). Importable by ProcessPool workers."""

from __future__ import annotations

import os
import select
from typing import Any

import engine as e
from tests._checkpoint_fixtures import Counter, value

#: Seconds a side of the handshake waits before it gives up (a failure, never a pace).
PATIENCE = 60.0


def outrun(model: Counter, fifo: str, epochs: int, at: int, ahead: int) -> float:
    """Trains ``epochs`` epochs (checkpoint, then report); on an attempt that starts
    afresh, once it reported step ``at + ahead`` it tells the driver (a byte into the
    FIFO ``fifo``, whose reader :func:`wait_for_worker` is) and trains on. Its final is
    the epoch it continued from."""
    state: Any = e.load_checkpoint()
    start = 0 if state is None else int(state["epoch"])
    for epoch in range(start + 1, epochs + 1):
        e.save_checkpoint({"epoch": epoch, "x": model.x})
        e.report_intermediate(value(model.x, epoch))
        if start == 0 and epoch == at + ahead:
            fd = os.open(fifo, os.O_WRONLY)  # blocks until the driver reads it
            try:
                os.write(fd, b"!")
            finally:
                os.close(fd)
    return float(start)


def open_fifo(path: str) -> int:
    """Make the FIFO ``path`` and open its reading end (without waiting for a writer)."""
    os.mkfifo(path)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def wait_for_worker(fd: int) -> bool:
    """Block (the driver's whole event loop: that is the point) until the worker wrote
    its byte into the FIFO ``fd``; False when it did not within ``PATIENCE``."""
    readable, _, _ = select.select([fd], [], [], PATIENCE)
    return bool(readable) and os.read(fd, 1) == b"!"
