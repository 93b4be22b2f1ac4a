"""Text reports of a run file for the ``nas-engine`` CLI: summary, best table, failure
reasons, exports. "Best" follows the objective the run recorded (see engine._objective)."""

from __future__ import annotations

import csv
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import msgspec

from engine._front import front, points
from engine._objective import (
    MetricValue,
    Mode,
    Objective,
    check_mode,
    fidelity,
    objective_from_meta,
    objectives_from_meta,
    ranked,
    ranked_value,
)
from engine.events import EngineStopped
from engine.pareto import hypervolume, modes_of
from engine.space import ModelStatus
from engine.store._read import RunReader, StoredModel
from engine.store._schema import RunFileError

__all__ = ("best_models", "export_csv", "export_jsonl", "failure_reasons", "objective_of",
           "objectives_of", "ranking_mode", "show", "show_model")

_encoder = msgspec.json.Encoder()
_FIELDS = ("id", "status", "final", "attempts", "duration", "queued_at", "started_at",
           "ended_at", "worker", "reason", "intermediates")


_REASON_WIDTH = 100  # characters of a failure reason that show shows


def objective_of(reader: RunReader) -> Objective | None:
    """The objective the run recorded; RunFileError when its meta value is damaged."""
    try:
        return objective_from_meta(reader.meta())
    except ValueError as exc:
        raise RunFileError(f"{reader.path}: {exc}") from None


def objectives_of(reader: RunReader) -> tuple[Objective, ...]:
    """Every objective the run recorded; RunFileError when the meta value is damaged."""
    try:
        return objectives_from_meta(reader.meta())
    except ValueError as exc:
        raise RunFileError(f"{reader.path}: {exc}") from None


def ranking_mode(recorded: Objective | None, requested: str | None) -> tuple[Objective, str]:
    """The objective to rank by (``requested`` overrides the recorded direction, which
    defaults to max) and a note on where it came from, for the reader."""
    if requested is None:
        if recorded is None:
            return Objective(), "the run recorded no objective"
        return recorded, "recorded in the run"
    chosen = Objective(name=recorded.name if recorded else "metric", mode=check_mode(requested))
    if recorded is not None and recorded.mode != chosen.mode:
        return chosen, f"--mode; the run records {recorded.mode}"
    return chosen, "--mode"


def best_models(models: Iterable[StoredModel], mode: Mode,
                objective: Objective | None = None) -> list[StoredModel]:
    """Ranked models, highest fidelity first (trained to the end, then stopped early or
    left paused at a later step), best first at each (ties: lower id first): trained
    ones by their final, paused ones by their last intermediate. Models that reported
    several metrics rank by their value under ``objective``."""
    return ranked(sorted(models, key=lambda m: m.id), objective, mode)


def failure_reasons(models: Iterable[StoredModel],
                    status: ModelStatus = ModelStatus.Failed) -> list[tuple[str, list[int]]]:
    """The reasons of the models in ``status`` (error type and message of a failed one;
    the first line), most frequent first, each with its models' ids in id order."""
    ids: dict[str, list[int]] = {}
    for m in sorted(models, key=lambda m: m.id):
        if m.status is status:
            reason = (m.reason or "no reason recorded").strip().splitlines() or [""]
            ids.setdefault(reason[0], []).append(m.id)
    return sorted(ids.items(), key=lambda item: -len(item[1]))


def show(reader: RunReader, out: TextIO, *, top: int, mode: str | None = None,
         reference: Sequence[float] | None = None) -> None:
    """The run's state, status counts, why models failed, and its ``top`` best models
    by the run's recorded objective (``mode`` overrides its direction)."""
    models = reader.models()
    objective, source = ranking_mode(objective_of(reader), mode)
    created = reader.meta().get("created")
    when = time.strftime(" (created %Y-%m-%d %H:%M:%S)",
                         time.localtime(float(created))) if created else ""
    out.write(f"run     {reader.path}{when}\n")
    out.write(f"engine  {_engine_state(reader)}\n")
    counts = Counter(m.status.value for m in models)
    summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    out.write(f"models  {len(models)}" + (f": {summary}" if summary else "") + "\n")
    stopped = [m for m in models if m.metrics.stopped_at is not None]
    if stopped:
        out.write(f"stopped {len(stopped)} trained models were stopped early by their "
                  "strategy: ranked below full trainings, at the step they reached\n")
    out.write(_paused(models))
    reasons = "".join(_reasons(models, status)
                      for status in (ModelStatus.Failed, ModelStatus.Invalid))
    out.write(reasons)
    if reasons:
        out.write(f"  (a model's error, traceback and output: nas-engine show {reader.path} "
                  "--model ID)\n")
    objectives = objectives_of(reader)
    if len(objectives) > 1 and mode is None:
        out.write(_front_text(models, objectives, top))
        if reference is not None:
            out.write(_hypervolume_text(models, objectives, reference))
        return
    best = best_models(models, objective.mode, objective)
    if not best:
        out.write("\nno trained model yet\n")
        return
    paused = sum(m.status is ModelStatus.Paused for m in best)
    which = (f"{len(best)} trained" if not paused else
             f"{len(best)} ranked ({len(best) - paused} trained, {paused} paused)")
    out.write(f"\nbest {min(top, len(best))} of {which} ({objective.mode} final "
              f"{objective.name}, {source}):\n")
    out.write(_table(best[:top]))


def _front_text(models: list[StoredModel], objectives: tuple[Objective, ...], top: int) -> str:
    """The Pareto front of the trained models, one column per objective."""
    trained = [m for m in models if m.status is ModelStatus.Trained]
    members = front(trained, lambda m: m.metrics.final, objectives)
    if not members:
        return "\nno trained model with every objective yet\n"
    listed = ", ".join(str(o) for o in objectives)
    shown = f"the first {top} of " if len(members) > top else ""
    lines = [f"\npareto front: {len(members)} of {len(trained)} trained ({listed}; "
             f"{shown}best {objectives[0].name} first):\n",
             f"{'rank':>4}  {'id':>6}  " + "  ".join(f"{o.name:>12}" for o in objectives)
             + "  sample\n"]
    for rank, m in enumerate(members[:top], 1):
        final = m.metrics.final
        values = [final[o.name] if isinstance(final, dict) else final for o in objectives]
        lines.append(f"{rank:>4}  {m.id:>6}  " + "  ".join(
            f"{v:>12.6g}" for v in values if v is not None)
            + f"  {_encoder.encode(m.sample).decode()}\n")
    return "".join(lines)


def _hypervolume_text(models: list[StoredModel], objectives: tuple[Objective, ...],
                      reference: Sequence[float]) -> str:
    if len(reference) != len(objectives):
        raise ValueError(f"--reference needs one value per objective ({len(objectives)}: "
                         f"{', '.join(o.name for o in objectives)}), got {list(reference)!r}")
    trained = [m for m in models if m.status is ModelStatus.Trained]
    found = [p for _, p in points(trained, lambda m: m.metrics.final, objectives)]
    volume = hypervolume(found, modes_of(objectives), reference)
    return f"hypervolume {volume:.6g} (reference {', '.join(f'{r:g}' for r in reference)})\n"


def _paused(models: list[StoredModel], shown: int = 10) -> str:
    """The paused models (resumable by a later run of this file): each with the step it
    reached and the step of the checkpoint it would continue from."""
    paused = [m for m in models if m.status is ModelStatus.Paused]
    if not paused:
        return ""
    items = [f"{m.id} at step {len(m.metrics.intermediates)} ("
             + (f"checkpoint of step {m.checkpoint})" if m.checkpoint is not None
                else "no checkpoint: it would start afresh)") for m in paused[:shown]]
    more = f", and {len(paused) - shown} more" if len(paused) > shown else ""
    return (f"paused  {len(paused)} models, resumable by a later run of this file: "
            + "; ".join(items) + more + "\n")


def _reasons(models: list[StoredModel], status: ModelStatus) -> str:
    reasons = failure_reasons(models, status)
    if not reasons:
        return ""
    lines = [f"\n{status.value} models, by reason:\n"]
    for reason, ids in reasons:
        text = reason if len(reason) <= _REASON_WIDTH else reason[:_REASON_WIDTH - 3] + "..."
        some = ", ".join(map(str, ids[:3])) + (", ..." if len(ids) > 3 else "")
        lines.append(f"{len(ids):>6}  {text}  (model{'s' if len(ids) > 1 else ''} {some})\n")
    return "".join(lines)


def show_model(reader: RunReader, out: TextIO, model_id: int) -> bool:
    """Model ``model_id`` in full: status, sample, metrics, its latest error with the
    traceback, and the output the run kept of each failed attempt. False (nothing
    written) when the run has no such model."""
    model = next((m for m in reader.models() if m.id == model_id), None)
    if model is None:
        return False
    out.write(f"model   {model.id}: {model.status.value}, {model.attempts} attempt"
              f"{'s' if model.attempts != 1 else ''}\n")
    out.write(f"sample  {_encoder.encode(model.sample).decode()}\n")
    if model.metrics.final is not None:
        out.write(f"final   {metric_text(model.metrics.final)}\n")
    if model.reason:
        out.write(f"reason  {model.reason}\n")
    if model.status is ModelStatus.Paused:
        out.write("checkpoint  " + (f"step {model.checkpoint} (a resume continues from it)"
                                    if model.checkpoint is not None else
                                    "none (a resume starts it afresh)") + "\n")
    failure = reader.last_failure(model_id)
    if failure is not None and failure.traceback:
        out.write(f"\ntraceback of attempt {failure.attempt}:\n{_ended(failure.traceback)}")
    outputs = reader.outputs(model_id)
    for kept in outputs:
        for name, text in (("stdout", kept.stdout), ("stderr", kept.stderr)):
            if text:
                out.write(f"\n{name} of attempt {kept.attempt}:\n{_ended(text)}")
    if not outputs and failure is not None:
        out.write("\nno output kept: its failed attempts printed nothing (or an older "
                  "nas-engine wrote the run)\n")
    return True


def metric_text(value: MetricValue | None) -> str:
    """A final for a table: ``0.93``, or ``accuracy=0.93 params=1.2e+04`` for a dict."""
    if isinstance(value, dict):
        return " ".join(f"{name}={number:.6g}" for name, number in value.items())
    return "-" if value is None else f"{value:.6g}"


def _ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


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
        if fidelity(m) != math.inf:  # say which: where it ranks
            how = "paused" if m.status is ModelStatus.Paused else "stopped"
            duration += f" ({how} at step {fidelity(m):.0f})"
        sample = _encoder.encode(m.sample).decode()
        lines.append(f"{rank:>4}  {m.id:>6}  {metric_text(ranked_value(m)):>12}  "
                     f"{m.attempts:>8}  {duration:>9}  {sample}\n")
    return "".join(lines)


def export_jsonl(reader: RunReader, out: TextIO) -> None:
    """One JSON object per model (id order), without blobs."""
    for model in reader.models():
        fields = msgspec.structs.asdict(model)
        del fields["blob"]
        metrics = msgspec.structs.asdict(model.metrics)
        if metrics["stopped_at"] is None:  # only a model stopped early says it
            del metrics["stopped_at"]
        if fields["checkpoint"] is None:  # only a paused model with a checkpoint says it
            del fields["checkpoint"]
        fields["metrics"] = metrics
        out.write(_encoder.encode(fields).decode() + "\n")


def export_csv(reader: RunReader, out: TextIO) -> None:
    """One row per model: the model's fields, then one ``sample.<label>`` column each."""
    models = reader.models()
    labels = sorted({label for m in models for label in m.sample})
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*_FIELDS, *(f"sample.{label}" for label in labels)])
    for m in models:
        final = m.metrics.final  # several metrics: their JSON object
        row: list[Any] = [m.id, m.status.value,
                          _encoder.encode(final).decode() if isinstance(final, dict) else final,
                          m.attempts, m.duration,
                          m.queued_at, m.started_at, m.ended_at, m.worker, m.reason,
                          _encoder.encode(m.metrics.intermediates).decode()]
        row += [_cell(m.sample.get(label)) for label in labels]
        writer.writerow(["" if v is None else v for v in row])


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _encoder.encode(value).decode()
