"""Plots of a run file: best-so-far against trials and against time (matplotlib).
"Best" follows the run's objective (see engine._objective). A run with several
objectives gets its Pareto front instead: with two, one scatter of every trained model
with the front highlighted; with more, one such scatter per pair of objectives."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

from engine._front import front, points
from engine._objective import (
    Mode,
    Objective,
    better,
    check_mode,
    fidelity,
    is_score,
    ranked_value,
    score,
)
from engine.cli._report import objective_of, objectives_of, ranking_mode
from engine.space import ModelStatus
from engine.store._read import RunReader, StoredModel

__all__ = ("PlotUnavailable", "best_so_far", "front_points", "plot_run", "run_points")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


Point: TypeAlias = tuple[int, float, float, float, float]


def best_so_far(models: list[StoredModel], mode: Mode, objective: Objective | None = None,
                paused_at: Mapping[int, float] | None = None) -> list[Point]:
    """``(trial number, seconds since the first trial was queued, its value, best value
    so far, its fidelity)`` for each ranked model, in the order the trials finished or
    paused (failed ones count as trials). Its value is a trained model's final, a paused
    one's last intermediate; the best so far is the best at the highest fidelity reached
    so far (``engine._objective.ranked``), so a model stopped or paused after 2 steps
    never stands above one trained to its end. ``paused_at``: when each paused model
    paused (``RunReader.paused_at``; else the start of its latest attempt)."""
    mode = check_mode(mode)
    done = _in_order(models, paused_at or {})
    if not done:
        return []
    start = min(m.queued_at if m.queued_at is not None else when for when, m in done)
    points: list[Point] = []
    best: tuple[float, float] | None = None  # (fidelity, value)
    for trial, (when, m) in enumerate(done, 1):
        value = score(ranked_value(m), objective)  # a dict: its value under objective
        if not is_score(value):
            continue
        reached = fidelity(m)
        if best is None or reached > best[0] or (
                reached == best[0] and better(value, best[1], mode)):
            best = (reached, value)
        points.append((trial, when - start, value, best[1], reached))
    return points


def _in_order(models: list[StoredModel],
              paused_at: Mapping[int, float]) -> list[tuple[float, StoredModel]]:
    """The completed and paused models with the time they ended or paused, in order."""
    timed = []
    for m in models:
        if m.status is ModelStatus.Paused:
            when = paused_at.get(m.id, m.started_at)
        else:
            when = m.ended_at if m.status.completed() else None
        if when is not None:
            timed.append((when, m))
    return sorted(timed, key=lambda pair: (pair[0], pair[1].id))


def run_points(reader: RunReader, mode: str | None = None) -> tuple[Objective, list[Point]]:
    """The objective the plot of ``reader``'s run ranks by (the recorded one; ``mode``
    overrides its direction) and its :func:`best_so_far` points."""
    objective, _ = ranking_mode(objective_of(reader), mode)
    models = reader.models()
    paused = reader.paused_at() if any(m.status is ModelStatus.Paused for m in models) else {}
    return objective, best_so_far(models, objective.mode, objective, paused)


def plot_run(reader: RunReader, path: Path, *, mode: str | None = None) -> int:
    """Write the two plots to ``path`` (the Pareto front for a run with several
    objectives, unless ``mode`` asks for one direction); returns how many ranked models
    (trained, and paused at the step they reached) they show."""
    figure_type = _figure_type()
    objectives = objectives_of(reader)
    if len(objectives) > 1 and mode is None:
        return plot_front(reader, path, objectives, figure_type)
    objective, points = run_points(reader, mode)
    Figure = figure_type
    figure = Figure(figsize=(10, 4), layout="constrained")
    by_trial, by_time = figure.subplots(1, 2, sharey=True)
    full = [p for p in points if p[4] == math.inf]
    short = [p for p in points if p[4] != math.inf]  # say which: ranked at a lower fidelity
    for axes, x in ((by_trial, 0), (by_time, 1)):
        scale = 1 if x == 0 else 60
        axes.scatter([p[x] / scale for p in full], [p[2] for p in full], s=8, color="0.6",
                     label="trained to its end")
        if short:
            axes.scatter([p[x] / scale for p in short], [p[2] for p in short], s=10,
                         marker="x", color="C1",
                         label="stopped early or paused (at the step reached)")
        axes.step([p[x] / scale for p in points], [p[3] for p in points], where="post",
                  label="best so far (at the highest fidelity reached)")
        axes.grid(alpha=0.3)
    by_trial.set(xlabel="trials finished",
                 ylabel=f"final {objective.name} ({objective.mode} is better)")
    by_time.set(xlabel="minutes since the first trial was queued")
    by_trial.legend(loc="best")
    figure.suptitle(reader.path.name)
    figure.savefig(path)
    return len(points)


def _figure_type() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("plotting needs matplotlib: pip install 'nas-engine[plot]' "
                              "(or pip install matplotlib)") from None
    return Figure


def front_points(models: list[StoredModel], objectives: tuple[Objective, ...]) -> tuple[
        list[tuple[float, ...]], list[tuple[float, ...]]]:
    """The points of every trained model with one, and those of the Pareto front (best
    first by the first objective)."""
    trained = [m for m in models if m.status is ModelStatus.Trained]
    everyone = points(trained, lambda m: m.metrics.final, objectives)
    point_of = {id(m): p for m, p in everyone}
    members = front([m for m, _ in everyone], lambda m: m.metrics.final, objectives)
    return [p for _, p in everyone], [point_of[id(m)] for m in members]


def plot_front(reader: RunReader, path: Path, objectives: tuple[Objective, ...],
               figure_type: Any) -> int:
    """Every trained model and the Pareto front, per pair of objectives."""
    everyone, members = front_points(reader.models(), objectives)
    pairs = list(itertools.combinations(range(len(objectives)), 2))
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure = figure_type(figsize=(5 * columns, 4.5 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes, (i, j) in zip(grid.flat, pairs, strict=False):
        axes.scatter([p[i] for p in everyone], [p[j] for p in everyone], s=10, color="0.6",
                     label="trained model")
        ordered = sorted(members, key=lambda p: p[i])
        axes.plot([p[i] for p in ordered], [p[j] for p in ordered], "o-", color="C3",
                  markersize=5, label=f"Pareto front ({len(members)})")
        axes.set(xlabel=_label(objectives[i]), ylabel=_label(objectives[j]))
        axes.grid(alpha=0.3)
        axes.legend(loc="best")
    for axes in list(grid.flat)[len(pairs):]:
        axes.set_visible(False)
    figure.suptitle(reader.path.name)
    figure.savefig(path)
    return len(everyone)


def _label(objective: Objective) -> str:
    return f"{objective.name} ({objective.mode} is better)"
