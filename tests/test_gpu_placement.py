"""GPU detection and placement: pure planning, a fake ``nvidia-smi``, and real workers
that report the CUDA_VISIBLE_DEVICES they see (no GPU needed)."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.workers._gpu import (
    Device,
    Placement,
    detect_devices,
    parse_nvidia_smi,
    parse_visible_devices,
)
from engine.workers.process import ProcessPool
from tests import process_fixtures as fx
from tests.process_fixtures import Recorder, children, run_in, serving

pytestmark = pytest.mark.timeout(60)

SMI = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-6f1c)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-77aa)
  MIG 1g.10gb     Device  0: (UUID: MIG-0a1b)
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0,1", [Device(0, "0"), Device(1, "1")]),
     (" 2, 3 ", [Device(2, "2"), Device(3, "3")]),
     ("", []),
     ("-1", []),
     ("1,-1,2", [Device(1, "1")]),  # CUDA stops at the first invalid entry
     ("GPU-6f1c,GPU-77aa", [Device(0, "GPU-6f1c"), Device(1, "GPU-77aa")])],
)
def test_parse_visible_devices(value: str, expected: list[Device]) -> None:
    assert parse_visible_devices(value) == expected


def test_parse_nvidia_smi_lists_whole_gpus() -> None:
    assert parse_nvidia_smi(SMI) == [Device(0, "0"), Device(1, "1")]


def test_detect_prefers_cuda_visible_devices() -> None:
    assert detect_devices({"CUDA_VISIBLE_DEVICES": "3"}) == ([Device(3, "3")], False)


def test_detect_runs_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!{sys.executable}\nimport sys\nif sys.argv[1:] == ['-L']:\n"
                    f"    print({SMI!r}, end='')\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_devices({}) == ([Device(0, "0"), Device(1, "1")], True)
    fake.unlink()
    assert detect_devices({}) == ([], True)  # no nvidia-smi: no GPU


def test_fractional_shares_spread_over_gpus() -> None:
    placement = Placement.plan(None, 0.5, [0, 1], environ={})
    assert [placement.gpus(s) for s in range(4)] == [(0,), (1,), (0,), (1,)]
    assert placement.environment(2) == {"CUDA_VISIBLE_DEVICES": "0",
                                        "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert len(Placement.plan(None, 0.25, [5], environ={}).slots) == 4
    assert len(Placement.plan(3, 1 / 3, [5], environ={}).slots) == 3


def test_whole_gpus_per_worker() -> None:
    placement = Placement.plan(None, 2, [4, 5, 6, 7], environ={})
    assert [placement.gpus(s) for s in range(2)] == [(4, 5), (6, 7)]
    assert placement.environment(1)["CUDA_VISIBLE_DEVICES"] == "6,7"
    assert Placement.plan(1, 1, [4, 5], environ={}).slots == [(Device(4, "4"),)]


def test_detected_devices_keep_the_users_numbering() -> None:
    placement = Placement.plan(None, 1, None, environ={"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"})
    assert placement.environment(1) == {"CUDA_VISIBLE_DEVICES": "GPU-b"}
    assert placement.gpus(1) == (1,)
    ordered = Placement.plan(None, 1, [0], environ={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"})
    assert ordered.environment(0) == {"CUDA_VISIBLE_DEVICES": "0"}


def test_no_gpu_per_trial_hides_gpus() -> None:
    placement = Placement.plan(3, 0, None, environ={"CUDA_VISIBLE_DEVICES": "0"})
    assert placement.slots == [(), (), ()]
    assert placement.environment(0) == {"CUDA_VISIBLE_DEVICES": ""}
    assert len(Placement.plan(None, 0, None).slots) == (os.cpu_count() or 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"gpus_per_trial": 0.3, "gpus": [0]},
      "a fractional gpus_per_trial must be 1/n (0.5, 0.25, ...) so that n trials share a GPU "
      "evenly, got 0.3"),
     ({"gpus_per_trial": 1.5, "gpus": [0, 1]},
      "gpus_per_trial above 1 must be a whole number of GPUs, got 1.5: use 1, 2, ... or a "
      "fraction 1/n"),
     ({"gpus_per_trial": -1},
      "gpus_per_trial must be 0, a fraction 1/n or a whole number, got -1"),
     ({"workers": 5, "gpus_per_trial": 0.5, "gpus": [0, 1]},
      "workers=5 do not fit: 2 GPU(s) at gpus_per_trial=0.5 give 4 worker slot(s); lower "
      "workers or gpus_per_trial"),
     ({"gpus_per_trial": 2, "gpus": [0]},
      "gpus_per_trial=2 needs 2 GPUs per trial but only 1 GPU(s) were found"),
     ({"gpus_per_trial": 1, "gpus": []},
      "gpus_per_trial=1 needs GPUs but none were found (CUDA_VISIBLE_DEVICES and "
      "nvidia-smi -L list none): pass gpus=[...] or use gpus_per_trial=0"),
     ({"gpus": [0]},
      "gpus were given but gpus_per_trial is 0: set gpus_per_trial (1, 0.5, ...) to run "
      "trials on them"),
     ({"gpus_per_trial": 1, "gpus": [0, 0]}, "gpus lists a GPU twice: [0, 0]"),
     ({"gpus_per_trial": 1, "gpus": [-1]}, "gpus must be GPU ids (ints >= 0), got [-1]")],
)
def test_bad_gpu_combinations_are_value_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ProcessPool(**kwargs)


def test_gpus_requested_but_none_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ValueError, match=r"^gpus_per_trial=0\.5 needs GPUs but none were found"):
        ProcessPool(2, gpus_per_trial=0.5)


class Board:
    """Wakes a test whenever any of its trials reports."""

    def __init__(self) -> None:
        self.changed = anyio.Event()

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class Posted(Recorder):
    def __init__(self, model_id: int, board: Board) -> None:
        super().__init__(model_id)
        self.board = board

    def intermediate(self, value: float) -> None:
        super().intermediate(value)
        self.board.notify()


@pytest.mark.anyio
@pytest.mark.parametrize("prefetch", [0, 1])
async def test_each_worker_sees_only_its_share(tmp_path: Path, prefetch: int) -> None:
    """Four workers share two GPUs; a fifth trial waits for a share to come free (in
    the pool, or prefetched by the worker whose trial started first)."""
    pool = ProcessPool(4, gpus_per_trial=0.5, gpus=[0, 1], prefetch=prefetch)
    board = Board()
    flags = [tmp_path / f"go{i}" for i in range(5)]
    trials = [Posted(i, board) for i in range(5)]
    results: dict[int, Any] = {}
    async with serving(pool) as monitor:
        assert [g for _, _, g in monitor.started] == [(0,), (1,), (0,), (1,)]
        async with anyio.create_task_group() as tg:
            for i in range(5):
                await run_in(tg, pool, fx.model(fx.placed, flag=str(flags[i])), trials[i],
                             results)
            while sum(t.reported.is_set() for t in trials) < 4:
                await board.changed.wait()
            await anyio.wait_all_tasks_blocked()
            (last,) = [t for t in trials if not t.calls]  # every share is held: it waits
            first = next(t for t in trials if t.calls)
            flags[first.model_id].touch()
            await last.reported.wait()
            for flag in flags:
                flag.touch()
    seen = {trial.worker: (trial.calls[0][2], results[i].stdout) for i, trial in
            enumerate(trials)}
    assert seen == {"process-0": ((0,), "0\n"), "process-1": ((1,), "1\n"),
                    "process-2": ((0,), "0\n"), "process-3": ((1,), "1\n")}
    assert last.worker == first.worker  # it took the share that came free
    assert children() == []
