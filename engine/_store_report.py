"""Text reports of a run file for the ``nas-engine`` CLI: summary, best table, exports."""

from __future__ import annotations

import csv
import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import msgspec

from engine._store_read import RunReader, StoredModel
from engine.events import EngineStopped
from engine.space import ModelStatus

__all__ = ("best_models", "export_csv", "export_jsonl", "show")

Mode = Literal["max", "min"]
_encoder = msgspec.json.Encoder()
_FIELDS = ("id", "status", "final", "attempts", "duration", "queued_at", "started_at",
           "ended_at", "worker", "reason", "intermediates")


def best_models(models: Iterable[StoredModel], mode: Mode) -> list[StoredModel]:
    """Trained models with a final metric, best first (ties: lower id first)."""
    scored = [m for m in models if m.status is ModelStatus.Trained
              and m.metrics.final is not None and not math.isnan(m.metrics.final)]
    sign = -1.0 if mode == "max" else 1.0
    return sorted(scored, key=lambda m: (sign * (m.metrics.final or 0.0), m.id))


def show(reader: RunReader, out: TextIO, *, top: int, mode: Mode) -> None:
    """The run's state, status counts and its ``top`` best models."""
    models = reader.models()
    created = reader.meta().get("created")
    when = time.strftime(" (created %Y-%m-%d %H:%M:%S)",
                         time.localtime(float(created))) if created else ""
    out.write(f"run     {reader.path}{when}\n")
    out.write(f"engine  {_engine_state(reader)}\n")
    counts = Counter(m.status.value for m in models)
    summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    out.write(f"models  {len(models)}" + (f": {summary}" if summary else "") + "\n")
    best = best_models(models, mode)
    if not best:
        out.write("no trained model yet\n")
        return
    out.write(f"\nbest {min(top, len(best))} of {len(best)} trained ({mode} final metric):\n")
    out.write(_table(best[:top]))


def _engine_state(reader: RunReader) -> str:
    last, event = reader.last_seq(), reader.last_engine_event()
    pid = reader.writer_pid()
    if pid is not None:
        return f"running in process {pid} (last event {last})"
    if isinstance(event, EngineStopped):
        return f"stopped ({event.reason}) at event {event.seq}"
    if event is None:
        return "never started"
    return f"not running; it stopped without an engine_stopped event (last event {last})"


def _table(models: list[StoredModel]) -> str:
    head = f"{'rank':>4}  {'id':>6}  {'final':>12}  {'attempts':>8}  {'duration':>9}  sample\n"
    lines = [head]
    for rank, m in enumerate(models, 1):
        duration = f"{m.duration:.1f}s" if m.duration is not None else "-"
        sample = _encoder.encode(m.sample).decode()
        lines.append(f"{rank:>4}  {m.id:>6}  {m.metrics.final:>12.6g}  {m.attempts:>8}  "
                     f"{duration:>9}  {sample}\n")
    return "".join(lines)


def export_jsonl(reader: RunReader, out: TextIO) -> None:
    """One JSON object per model (id order), without blobs."""
    for model in reader.models():
        fields = msgspec.structs.asdict(model)
        del fields["blob"]
        out.write(_encoder.encode(fields).decode() + "\n")


def export_csv(reader: RunReader, out: TextIO) -> None:
    """One row per model: the model's fields, then one ``sample.<label>`` column each."""
    models = reader.models()
    labels = sorted({label for m in models for label in m.sample})
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*_FIELDS, *(f"sample.{label}" for label in labels)])
    for m in models:
        row: list[Any] = [m.id, m.status.value, m.metrics.final, m.attempts, m.duration,
                          m.queued_at, m.started_at, m.ended_at, m.worker, m.reason,
                          _encoder.encode(m.metrics.intermediates).decode()]
        row += [_cell(m.sample.get(label)) for label in labels]
        writer.writerow(["" if v is None else v for v in row])


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _encoder.encode(value).decode()
