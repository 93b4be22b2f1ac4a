"""The kit's trials: they run in a pool's workers, which find them by this module's
import path (a process or a Ray actor rebuilds the model by recipe)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

from engine._context import report_intermediate
from engine.evaluator import FunctionEvaluator
from engine.mutable import Categorical, SampleValidationError
from engine.space import BaseModelSpace, SimplifiedModelSpace, ensure_frozen

__all__ = ("ProbeSpace", "probe", "probe_trial")


class ProbeSpace(BaseModelSpace):
    """The model space of the probe trials: one frozen choice."""

    def __init__(self) -> None:
        self.x = ensure_frozen(Categorical([1, 2], label="x"))


def probe(action: str, flag: str = "") -> SimplifiedModelSpace:
    """A frozen model whose trial does ``action`` (see :func:`probe_trial`)."""
    evaluator = FunctionEvaluator(probe_trial, action=action, flag=flag)
    return SimplifiedModelSpace.from_model(ProbeSpace(), evaluator).freeze({"x": 1})


def probe_trial(model: ProbeSpace, action: str, flag: str) -> float:
    """``ok``: prints to stdout and stderr, reports 0.5, returns 1.0. ``raise``: prints,
    then raises ValueError. ``invalid``: raises SampleValidationError. ``exit``,
    ``sigkill``, ``segfault``: prints, then ends its process so. ``hang``: reports its
    pid, then waits until ``flag`` exists. ``spawn``: starts a child process, reports the
    child's pid, then waits for ``flag``. ``spawn-exit``: starts a child, reports its
    pid, then exits its process."""
    if action in ("ok", "raise", "exit", "sigkill", "segfault"):
        for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            stream.write(f"probe {action} {name}\n")
            stream.flush()
    if action == "ok":
        report_intermediate(0.5)
        return 1.0
    if action == "raise":
        raise ValueError("the probe failed")
    if action == "invalid":
        raise SampleValidationError("the probe cannot be built", ["model", "x"])
    if action in ("exit", "sigkill", "segfault"):
        _die(action)
    if action.startswith("spawn"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        report_intermediate(float(child.pid))
        if action == "spawn-exit":
            time.sleep(0.2)  # let the report leave first
            os._exit(3)
    else:
        report_intermediate(float(os.getpid()))
    while not os.path.exists(flag):  # "hang" and "spawn"
        time.sleep(0.005)
    return 2.0


def _die(how: str) -> None:
    if how == "exit":
        os._exit(3)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    ctypes.string_at(0)

