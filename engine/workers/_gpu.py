"""GPU detection and placement for the process pool, without importing torch.

Each worker owns a fixed *slot*: the GPUs (or the share of one GPU) that its trials
see through ``CUDA_VISIBLE_DEVICES``, set in the worker's environment when it is
spawned. With ``gpus_per_trial = 1/n``, n workers share one GPU; with an integer k,
each worker owns k GPUs. A worker runs one trial at a time and a replacement starts
only after the worker it replaces has exited, so no two trials hold the same share.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Mapping, Sequence

import msgspec

from engine._checks import check_count

__all__ = ("Device", "Placement", "detect_devices", "parse_nvidia_smi", "parse_visible_devices")

_SMI_LINE = re.compile(r"^GPU (\d+):", re.MULTILINE)


class Device(msgspec.Struct, frozen=True):
    """One GPU: the id reported in events, and the token CUDA_VISIBLE_DEVICES takes."""

    id: int
    token: str


def parse_visible_devices(value: str) -> list[Device]:
    """The devices a CUDA_VISIBLE_DEVICES value names. Like CUDA, stop at the first
    empty or negative entry; UUID entries (``GPU-...``, ``MIG-...``) get their position
    as id."""
    devices: list[Device] = []
    for position, raw in enumerate(value.split(",")):
        token = raw.strip()
        if not token or token.startswith("-"):
            break
        devices.append(Device(int(token) if token.isdigit() else position, token))
    return devices


def parse_nvidia_smi(text: str) -> list[Device]:
    """The GPUs in ``nvidia-smi -L`` output (``GPU 0: NVIDIA H100 (UUID: ...)``)."""
    return [Device(int(index), index) for index in _SMI_LINE.findall(text)]


def detect_devices(environ: Mapping[str, str]) -> tuple[list[Device], bool]:
    """The GPUs this process may use, and whether their ids follow nvidia-smi's (PCI bus)
    order: CUDA_VISIBLE_DEVICES when set, else ``nvidia-smi -L`` (none when it is missing)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return parse_visible_devices(environ["CUDA_VISIBLE_DEVICES"]), False
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return [], True
    return parse_nvidia_smi(listing.stdout), True


def _shares_per_gpu(gpus_per_trial: float) -> int:
    """How many trials share one GPU (1 for whole GPUs, 0 for none); ValueError for other
    fractions."""
    if (isinstance(gpus_per_trial, bool) or not isinstance(gpus_per_trial, int | float)
            or not math.isfinite(gpus_per_trial) or gpus_per_trial < 0):
        raise ValueError(f"gpus_per_trial must be 0, a fraction 1/n or a whole number, "
                         f"got {gpus_per_trial!r}")
    if gpus_per_trial == 0:
        return 0
    if gpus_per_trial >= 1:
        if gpus_per_trial != int(gpus_per_trial):
            raise ValueError(f"gpus_per_trial above 1 must be a whole number of GPUs, got "
                             f"{gpus_per_trial!r}: use 1, 2, ... or a fraction 1/n")
        return 1
    shares = round(1 / gpus_per_trial)
    if abs(shares * gpus_per_trial - 1) > 1e-6:
        raise ValueError(f"a fractional gpus_per_trial must be 1/n (0.5, 0.25, ...) so that "
                         f"n trials share a GPU evenly, got {gpus_per_trial!r}")
    return shares


class Placement:
    """Which GPUs each worker slot owns, and the environment that pins them."""

    def __init__(self, slots: list[tuple[Device, ...]], *, pci_order: bool) -> None:
        self.slots = slots
        self._pci_order = pci_order

    @classmethod
    def plan(
        cls, workers: int | None, gpus_per_trial: float, gpus: Sequence[int] | None,
        environ: Mapping[str, str] | None = None,
    ) -> Placement:
        """Slots for ``workers`` (None: one per slot there is room for). ``gpus`` lists
        the GPU ids to use; None detects them. ValueError says what does not fit."""
        shares = _shares_per_gpu(gpus_per_trial)
        if gpus_per_trial == 0:
            if gpus is not None:
                raise ValueError("gpus were given but gpus_per_trial is 0: set gpus_per_trial "
                                 "(1, 0.5, ...) to run trials on them")
            count = _worker_count(workers, os.cpu_count() or 1)
            return cls([()] * count, pci_order=False)
        environ = os.environ if environ is None else environ
        devices, pci_order = _devices(gpus, environ)
        pci_order = pci_order and "CUDA_DEVICE_ORDER" not in environ  # keep the user's order
        if not devices:
            raise ValueError(f"gpus_per_trial={gpus_per_trial!r} needs GPUs but none were "
                             "found (CUDA_VISIBLE_DEVICES and nvidia-smi -L list none): pass "
                             "gpus=[...] or use gpus_per_trial=0")
        per_trial = max(1, int(gpus_per_trial))
        room = len(devices) * shares // per_trial
        if room < 1:
            raise ValueError(f"gpus_per_trial={gpus_per_trial!r} needs {per_trial} GPUs per "
                             f"trial but only {len(devices)} GPU(s) were found")
        count = _worker_count(workers, room)
        if count > room:
            raise ValueError(
                f"workers={count} do not fit: {len(devices)} GPU(s) at gpus_per_trial="
                f"{gpus_per_trial!r} give {room} worker slot(s); lower workers or "
                "gpus_per_trial")
        if per_trial > 1:
            slots = [tuple(devices[i * per_trial:(i + 1) * per_trial]) for i in range(count)]
        else:  # spread shares over the GPUs before doubling up on one
            slots = [(devices[i % len(devices)],) for i in range(count)]
        return cls(slots, pci_order=pci_order)

    def gpus(self, slot: int) -> tuple[int, ...]:
        return tuple(device.id for device in self.slots[slot])

    def environment(self, slot: int) -> dict[str, str]:
        """The variables that pin a worker in ``slot`` to its GPUs (none: no GPU)."""
        env = {"CUDA_VISIBLE_DEVICES": ",".join(d.token for d in self.slots[slot])}
        if self._pci_order and self.slots[slot]:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # nvidia-smi's numbering
        return env


def _worker_count(workers: int | None, default: int) -> int:
    if workers is None:
        return default
    check_count("workers", workers)
    return workers


def _devices(gpus: Sequence[int] | None, environ: Mapping[str, str]) -> tuple[list[Device], bool]:
    if gpus is None:
        return detect_devices(environ)
    ids = list(gpus)
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
        raise ValueError(f"gpus must be GPU ids (ints >= 0), got {ids!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"gpus lists a GPU twice: {ids!r}")
    return [Device(i, str(i)) for i in ids], True
