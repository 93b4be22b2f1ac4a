"""pandas DataFrames of a run's results (pandas is optional: the ``results`` extra).

Models that report several metrics (a dict) get one column per metric: ``final.<name>``
in the models table, ``value.<name>`` in the metrics table; ``final``, ``latest`` and
``value`` then hold the number under the run's first objective (see
``engine._objective.score``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from engine._objective import MetricValue, Objective, score

if TYPE_CHECKING:
    from engine.results import RunResults

__all__ = ("export_parquet", "frame", "import_pandas")

_encoder = msgspec.json.Encoder()
_MODEL_COLUMNS = ("id", "status", "final", "latest", "steps", "attempts", "worker",
                  "duration", "queued_at", "started_at", "ended_at", "reason", "error_type")


def import_pandas() -> Any:
    """The pandas module; ImportError that says how to install it when it is missing."""
    try:
        return importlib.import_module("pandas")
    except ImportError as exc:
        raise ImportError("RunResults.to_pandas needs pandas: install it with "
                          "pip install 'nas-engine[results]' (or pip install pandas)") from exc


def frame(results: RunResults, table: str) -> Any:
    """The DataFrame of ``table`` (models, metrics or events)."""
    pandas = import_pandas()
    first = _first(results)
    if table == "models":
        return pandas.DataFrame(_model_rows(results, first), columns=_model_columns(results))
    if table == "metrics":
        rows, names = [], set[str]()
        for point in results.metrics():
            row = msgspec.structs.asdict(point)
            row.update(_split("value", point.value, first))
            names.update(point.value if isinstance(point.value, dict) else ())
            rows.append(row)
        columns = ["model_id", "attempt", "step", "value", "time",
                   *(f"value.{name}" for name in sorted(names))]
        return pandas.DataFrame(rows, columns=columns)
    if table == "events":
        rows = [msgspec.to_builtins(e) for e in results.events()]
        return pandas.DataFrame(rows, columns=_event_columns(rows))
    raise ValueError(f"unknown table {table!r}: pick models, metrics or events")


def _first(results: RunResults) -> Objective | None:
    objectives = results.objectives()
    return objectives[0] if objectives else None


def _split(column: str, value: MetricValue | None, first: Objective | None) -> dict[str, Any]:
    """``column`` and, for a dict of metrics, one ``column.<name>`` per metric."""
    row: dict[str, Any] = {column: score(value, first)}
    if isinstance(value, dict):
        row.update({f"{column}.{name}": number for name, number in value.items()})
    return row


def _metric_names(results: RunResults) -> list[str]:
    return sorted({name for m in results.models() if isinstance(m.final, dict)
                   for name in m.final})


def _model_columns(results: RunResults) -> list[str]:
    labels = sorted({label for m in results.models() for label in m.sample})
    return [*_MODEL_COLUMNS, *(f"final.{name}" for name in _metric_names(results)),
            *(f"sample.{label}" for label in labels)]


def _model_rows(results: RunResults, first: Objective | None) -> list[dict[str, Any]]:
    rows = []
    for model in results.models():
        row = {name: getattr(model, name) for name in _MODEL_COLUMNS}
        row.update(_split("final", model.final, first), latest=score(model.latest, first))
        row["status"] = model.status.value
        row.update({f"sample.{label}": value for label, value in model.sample.items()})
        rows.append(row)
    return rows


def _event_columns(rows: list[dict[str, Any]]) -> list[str]:
    columns = ["seq", "kind", "time", "model_id"]
    for row in rows:
        columns += [name for name in row if name not in columns]
    return columns


def export_parquet(results: RunResults, output: Path) -> int:
    """Write one row per model to the Parquet file ``output``; returns the row count.
    ImportError naming the ``results`` extra when pyarrow is missing."""
    try:
        pyarrow = importlib.import_module("pyarrow")
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise ImportError("--format parquet needs pyarrow: install it with "
                          "pip install 'nas-engine[results]' (or pip install pyarrow)") from exc
    models, first = results.models(), _first(results)
    names = _metric_names(results)
    columns: dict[str, list[Any]] = {name: [] for name in (*_MODEL_COLUMNS, "sample")}
    for model in models:
        for name in _MODEL_COLUMNS:
            columns[name].append(getattr(model, name))
        columns["status"][-1] = model.status.value
        columns["final"][-1] = score(model.final, first)
        columns["latest"][-1] = score(model.latest, first)
        columns["sample"].append(_encoder.encode(model.sample).decode())
    columns["curve_steps"] = [[s for s, _ in m.curve] for m in models]
    columns["curve_values"] = [[score(v, first) for _, v in m.curve] for m in models]
    for name in names:  # several metrics: one column each
        columns[f"final.{name}"] = [
            m.final.get(name) if isinstance(m.final, dict) else None for m in models]
    schema = _schema(pyarrow)
    for name in names:
        schema = schema.append(pyarrow.field(f"final.{name}", pyarrow.float64()))
    table = pyarrow.table(columns, schema=schema)
    parquet.write_table(table, output)
    return len(models)


def _schema(pyarrow: Any) -> Any:
    text, number, integer = pyarrow.string(), pyarrow.float64(), pyarrow.int64()
    types = {"id": integer, "status": text, "final": number, "latest": number,
             "steps": integer, "attempts": integer, "worker": text, "duration": number,
             "queued_at": number, "started_at": number, "ended_at": number, "reason": text,
             "error_type": text, "sample": text, "curve_steps": pyarrow.list_(integer),
             "curve_values": pyarrow.list_(number)}
    return pyarrow.schema(list(types.items()))
