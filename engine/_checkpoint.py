"""Checkpoints: training code saves and loads its state through the evaluator context.

Worker side. While a trial runs, a :class:`CheckpointSpot` (a context variable, like the
reporter) says where the trial's model keeps its checkpoints (a folder of the run) and
from which step it continues. :func:`save_checkpoint` writes the state there atomically
(a temporary file, then a rename); :func:`load_checkpoint` reads back the state the
engine chose to continue from. The state goes through ``torch.save`` when torch is
imported in the process (state dicts, optimizer state), else through ``pickle``; either
way it is the training code's own data, written and read by this run only.

Steps. A checkpoint belongs to the intermediate result that follows it: the loop order
is *train an epoch, save_checkpoint, report_intermediate*, so a checkpoint saved after
``n`` reports is the state of step ``n + 1`` (the report that comes next says how good
it is). A strategy that pauses a model on hearing step ``k`` thus finds the checkpoint
of step ``k`` already on disk. A model continued from a checkpoint of step ``k`` keeps
its first ``k`` intermediate results; its next report is step ``k + 1``.

Engine side. :class:`CheckpointRoot` is the run's folder (``<run file>.checkpoints``,
or a temporary folder for a run without a file), one sub-folder per model id
(``step-00000012.pt``). The engine, not the worker, prunes a model's folder, because
only the engine knows which steps it accepted: a worker trains on past the step its
strategy paused or stopped it at until the halt reaches it, and a worker that pruned
to its own newest saves would delete the checkpoint of the paused step (the model
would then silently resume from scratch). So a save deletes nothing, and each report
the engine accepts deletes all but the two newest checkpoints at or below its step
(:class:`Pruner`, :func:`prune_reported`): those after it are the worker's lead, which
the next reports prune in turn, so a running model keeps two checkpoints plus the few
its worker saved ahead of the reports the engine has handled (and, for a model whose
first save comes late, the saves before its folder is seen: see :class:`Pruner`). A
new attempt continues from the newest checkpoint at or below the last step the run
keeps (:meth:`CheckpointRoot.continue_from`: the paused step, the last report before a
worker died, the last journaled report after the driver was killed), and the one
before it covers a journal that had not committed the last report when the driver was
killed. A paused model keeps only those two
(:meth:`CheckpointRoot.paused`); an ended model's folder is deleted.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
import re
import shutil
import sys
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = (
    "CheckpointRoot",
    "CheckpointSpot",
    "Pruner",
    "checkpoint_spot",
    "latest_checkpoint",
    "load_checkpoint",
    "prune_reported",
    "save_checkpoint",
    "spot_for",
    "use_checkpoints",
)

#: Checkpoints kept per model folder at or below the last step the engine accepted.
KEEP = 2
_NAME = re.compile(r"^step-(\d{8})\.(pt|pkl)$")


class CheckpointSpot:
    """Where one running trial keeps its checkpoints: ``folder`` (created at the first
    save), the step it continues from (``resume_step``, 0 for a fresh start), and how
    many intermediate results it reported since. ``check`` (optional) is called before
    a save and raises when the trial was stopped (a thread that outlived its trial)."""

    def __init__(self, folder: str, resume_step: int = 0,
                 check: Callable[[], None] | None = None) -> None:
        self.folder, self.resume_step, self.check = folder, resume_step, check
        self.reported = 0

    @property
    def step(self) -> int:
        """The step the next report will have."""
        return self.resume_step + self.reported + 1


_spot: contextvars.ContextVar[CheckpointSpot | None] = contextvars.ContextVar(
    "nas_engine_checkpoint", default=None)


@contextlib.contextmanager
def use_checkpoints(spot: CheckpointSpot | None) -> Iterator[None]:
    """Run the block as a trial whose checkpoints live at ``spot`` (None: none)."""
    token = _spot.set(spot)
    try:
        yield
    finally:
        _spot.reset(token)


def spot_for(trial: object, check: Callable[[], None] | None = None) -> CheckpointSpot | None:
    """The spot of the trial a pool runs: from the ``checkpoint_dir`` and
    ``resume_step`` the engine's Trial carries (None for a trial without them)."""
    folder = getattr(trial, "checkpoint_dir", None)
    if folder is None:
        return None
    return CheckpointSpot(folder, int(getattr(trial, "resume_step", 0)), check)


def checkpoint_spot() -> CheckpointSpot | None:
    return _spot.get()


def _spot_or_raise(what: str) -> CheckpointSpot:
    spot = _spot.get()
    if spot is None:
        raise RuntimeError(
            f"{what}() was called outside a trial that an Engine runs: checkpoints belong "
            "to a run, so call it from an evaluator's function while an Engine runs it")
    return spot


def save_checkpoint(state: Any) -> None:
    """Save ``state`` (a dict of state dicts, the optimizer's state, the epoch...) as the
    checkpoint of the intermediate result reported next: call it after training an
    epoch and before ``report_intermediate`` of that epoch. Atomic: either the new
    checkpoint is complete on disk, or the previous one stays the latest. Deletes
    nothing: the engine prunes the folder as it accepts reports (see the module's
    docstring). Uses ``torch.save`` when torch is imported, else
    ``pickle``; a state that cannot be serialised raises (TypeError or
    pickle.PicklingError) and changes nothing."""
    spot = _spot_or_raise("save_checkpoint")
    if spot.check is not None:
        spot.check()
    folder = Path(spot.folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch = sys.modules.get("torch")
    suffix = "pt" if torch is not None else "pkl"
    target = folder / f"step-{spot.step:08d}.{suffix}"
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".saving-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            if torch is not None:
                torch.save(state, file)
            else:
                pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def load_checkpoint() -> Any:
    """The state saved by the checkpoint this trial continues from, or None when it
    starts afresh (a new model, or one that saved no checkpoint yet). Continue the
    training loop after the epoch the state holds: the next report is the step after
    the checkpoint's."""
    spot = _spot_or_raise("load_checkpoint")
    if spot.resume_step == 0:
        return None
    found = find_checkpoint(Path(spot.folder), spot.resume_step)
    if found is None:
        raise FileNotFoundError(
            f"the checkpoint of step {spot.resume_step} is missing from {spot.folder}: "
            "it was removed while the run was stopped")
    if found.suffix == ".pt":
        import torch

        # The file was written by this run's own training code (torch.save of its
        # state, which may hold more than tensors): load it whole, on the CPU.
        return torch.load(found, map_location="cpu", weights_only=False)
    with found.open("rb") as file:
        return pickle.load(file)


def _steps(folder: str | Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            match = _NAME.match(entry.name)
            if match is not None:
                found[int(match.group(1))] = Path(entry.path)
    return found


def find_checkpoint(folder: Path, step: int) -> Path | None:
    return _steps(folder).get(step)


def latest_checkpoint(folder: Path, at_most: int | None = None) -> int | None:
    """The step of the newest checkpoint in ``folder`` not after step ``at_most``."""
    steps = [s for s in _steps(folder) if at_most is None or s <= at_most]
    return max(steps, default=None)


#: Reports between two looks for the folder of an attempt that has saved nothing so far.
LOOK_EVERY = 64


class Pruner:
    """Prunes one attempt's checkpoint folder as the engine accepts its reports
    (:func:`prune_reported`). Most models save no checkpoint, and a look at a folder
    costs a system call, about as much as the rest of a report: until the folder is
    seen, it is looked for at the attempt's reports 1, 2, 4, 8... and then every
    ``LOOK_EVERY`` reports, so a model that saves from its first epoch is pruned from
    its first report, and one that starts later keeps at most about ``LOOK_EVERY``
    extra checkpoints until it is seen. Once seen, every report prunes. ``seen``: the
    folder exists (an attempt continued from a checkpoint).

    ``committed`` (a run with a run file): the seq of the run file's last committed
    event. A report counts for pruning only once its event is committed: the run file
    lags the engine by up to a batch, and a run resumed after its driver was killed
    continues a model from its newest checkpoint at or below the steps the file holds,
    so those survive; the checkpoints of the reports not yet committed stay too."""

    def __init__(self, folder: str, *, seen: bool = False,
                 committed: Callable[[], int] | None = None) -> None:
        self.folder, self._seen, self._committed = folder, seen, committed
        self._reports, self._look = 0, 1
        self._waiting: deque[tuple[int, int]] = deque()  # (seq, step) not committed
        self._safe = 0  # the newest reported step whose event is committed

    def reported(self, step: int, seq: int = 0) -> None:
        """The engine accepted this attempt's report of ``step``, as event ``seq``."""
        if self._committed is None:
            self._safe = step
        else:
            waiting = self._waiting
            waiting.append((seq, step))
            committed = self._committed()
            while waiting and waiting[0][0] <= committed:
                self._safe = waiting.popleft()[1]
        if not self._seen:
            self._reports += 1
            if self._reports < self._look:
                return
            self._look = min(2 * self._look, self._look + LOOK_EVERY)
            if not os.path.isdir(self.folder):
                return
            self._seen = True
        if self._safe:
            prune_reported(self.folder, self._safe)


def prune_reported(folder: str | Path, step: int, *, drop_later: bool = False) -> int | None:
    """The engine accepted the report of ``step``: delete all but the ``KEEP`` newest
    checkpoints in ``folder`` at or below it, and return the newest left (None: none).
    Those after it, saved by a worker that is ahead of the reports the engine handled,
    stay (the engine may yet stop taking reports before them, and then needs the
    checkpoint of ``step``), unless ``drop_later``: a pause, whose resume continues from
    ``step``, never after it. One ``scandir`` when the folder exists (a model that
    saves no checkpoint has none)."""
    steps = _steps(folder)
    kept = sorted(s for s in steps if s <= step)[-KEEP:]
    for found, path in steps.items():
        if found not in kept and (drop_later or found <= step):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return kept[-1] if kept else None


class CheckpointRoot:
    """The run's checkpoint folder: one sub-folder per model id. ``temporary``: it was
    made for a run without a file, and :meth:`close` removes it."""

    def __init__(self, path: Path, *, temporary: bool) -> None:
        self.path, self.temporary = path, temporary

    @classmethod
    def for_run(cls, run_file: Path | None) -> CheckpointRoot:
        """``<run file>.checkpoints``, or a new folder in the temporary directory (a
        name no other run has). Either is made at the first save, not before: a run
        that keeps no checkpoint touches no disk for them."""
        if run_file is None:
            name = f"nas-engine-checkpoints-{uuid.uuid4().hex}"
            return cls(Path(tempfile.gettempdir()) / name, temporary=True)
        return cls(run_file.with_name(run_file.name + ".checkpoints"), temporary=False)

    def folder(self, model_id: int) -> Path:
        return self.path / str(model_id)

    def latest(self, model_id: int, at_most: int | None = None) -> int | None:
        """The newest checkpoint step of ``model_id`` not after ``at_most``. A model's
        folder holds a few files at most, so this scan is cheap enough for the loop."""
        return latest_checkpoint(self.folder(model_id), at_most)

    def continue_from(self, model_id: int, at_most: int) -> int:
        """The step a new attempt of ``model_id`` continues from: its newest checkpoint
        not after ``at_most`` (the steps the run has seen), else 0. Checkpoints after
        it belong to a future that is dropped, and are deleted."""
        steps = _steps(self.folder(model_id))
        chosen = max((s for s in steps if s <= at_most), default=0)
        for step, path in steps.items():
            if step > chosen:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return chosen

    def paused(self, model_id: int, step: int) -> int | None:
        """``model_id`` paused at ``step`` (its worker ended the attempt): delete its
        checkpoints after ``step`` and all but the ``KEEP`` newest before; the newest
        left, or None."""
        return prune_reported(self.folder(model_id), step, drop_later=True)

    def remove(self, model_id: int) -> None:
        """Delete ``model_id``'s checkpoints (it can no longer be resumed)."""
        shutil.rmtree(self.folder(model_id), ignore_errors=True)

    def keep_only(self, model_ids: set[int]) -> None:
        """Delete the folders of every model not in ``model_ids`` (at a resume: the
        models that ended while the driver could not clean up after them)."""
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.path):
                if not (entry.name.isdigit() and int(entry.name) in model_ids):
                    shutil.rmtree(entry.path, ignore_errors=True)

    def close(self, keep: set[int]) -> None:
        """At the engine's stop: remove a temporary root, else every folder not in
        ``keep`` (paused models), and the root itself when it is left empty."""
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        self.keep_only(keep)
        with contextlib.suppress(OSError):
            self.path.rmdir()  # only when empty
