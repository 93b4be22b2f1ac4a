"""Worker-side start-up and per-trial bookkeeping for :mod:`engine.workers._worker`:
preloading (so the first trial on a worker trains as fast as the tenth), the honest
start of a trial (its model built), and echoing a trial's output as it comes.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from engine._recipe import Symbol
from engine.space import SimplifiedModelSpace
from engine.workers._wire import Preload, Setup

__all__ = ("ECHO_INTERVAL", "Echo", "TimedModel", "preload", "warm_torch")

#: Seconds between two looks at a running trial's captured output, when echoing.
ECHO_INTERVAL = 0.1


def preload(work: Preload, *, strict: bool) -> None:
    """Do ``work`` (see :class:`~engine.workers._wire.Preload`). ``strict``: the first
    failure raises; else failures are ignored (the trial that needs it reports them)."""
    steps: list[Callable[[], Any]] = [
        *(functools.partial(importlib.import_module, module) for module in work.modules),
        *(symbol.resolve for symbol in work.symbols),
        *(functools.partial(_call, symbol) for symbol in work.calls),
    ]
    for step in steps:
        try:
            step()
        except Exception:
            if strict:
                raise
    if "torch" in sys.modules:
        warm_torch()


def _call(symbol: Symbol) -> None:
    symbol.resolve()()


def warm_torch() -> None:
    """Pay torch's first-training costs now: the first optimizer a process makes
    imports ``torch._dynamo`` (seconds). Best effort: nothing here may fail a worker."""
    with contextlib.suppress(Exception):
        import torch

        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


class TimedModel(SimplifiedModelSpace):
    """A model loaded in a worker that calls ``on_built`` once its module is built: the
    moment its training starts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_built: Callable[[], None] = _nothing

    @classmethod
    def loaded(cls, data: bytes, on_built: Callable[[], None] | None) -> TimedModel:
        """The model ``SimplifiedModelSpace.dump`` wrote, calling ``on_built``."""
        model = cls.load(data)
        assert isinstance(model, TimedModel)  # load() builds a cls
        model.on_built = on_built or _nothing
        return model

    def executable_model(self) -> Any:
        module = super().executable_model()
        self.on_built()
        return module


def _nothing() -> None:
    pass


class Echo:
    """Copies what the running trial writes to its capture files onto ``out`` (the
    worker's inherited stderr, the parent's), each line prefixed ``[model N] ``. A
    thread looks every ``ECHO_INTERVAL`` seconds; :meth:`end` copies the rest."""

    def __init__(self, setup: Setup, out: int) -> None:
        self._files = [os.open(path, os.O_RDONLY)
                       for path in (setup.stdout_path, setup.stderr_path)]
        self._out = out
        self._lock = threading.Lock()
        self._prefix = b""
        self._offsets = [0, 0]
        self._partial = [b"", b""]
        self._active = False
        threading.Thread(target=self._watch, name="nas-engine-echo", daemon=True).start()

    def begin(self, model_id: int) -> None:
        """A trial starts, its capture files empty: echo them from the start."""
        with self._lock:
            self._prefix = f"[model {model_id}] ".encode()
            self._offsets, self._partial = [0, 0], [b"", b""]
            self._active = True

    def end(self) -> None:
        """The trial ended (its output flushed): echo the rest, unfinished lines too."""
        with self._lock:
            self._copy()
            for index, rest in enumerate(self._partial):
                if rest:
                    self._write([rest])
                    self._partial[index] = b""
            self._active = False

    def _watch(self) -> None:
        while True:
            time.sleep(ECHO_INTERVAL)
            with self._lock:
                if self._active:
                    self._copy()

    def _copy(self) -> None:
        for index, fd in enumerate(self._files):
            size = os.fstat(fd).st_size
            if size <= self._offsets[index]:
                continue
            data = os.pread(fd, size - self._offsets[index], self._offsets[index])
            self._offsets[index] += len(data)
            *lines, self._partial[index] = (self._partial[index] + data).split(b"\n")
            self._write(lines)

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(self._prefix + line + b"\n" for line in lines)
        with contextlib.suppress(OSError):  # the parent's stderr is gone: nothing to do
            while data:
                data = data[os.write(self._out, data):]
