"""Plots of a run file: best-so-far against trials and against time (matplotlib).
"Best" follows the run's objective (see engine._objective). A run with several
objectives gets its Pareto front instead: with two, one scatter of every trained model
with the front highlighted; with more, one such scatter per pair of objectives."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from engine._front import front, points
from engine._objective import Mode, Objective, better, check_mode, is_score, score
from engine.cli._report import objective_of, objectives_of, ranking_mode
from engine.space import ModelStatus
from engine.store._read import RunReader, StoredModel

__all__ = ("PlotUnavailable", "best_so_far", "front_points", "plot_run", "run_points")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def best_so_far(models: list[StoredModel], mode: Mode,
                objective: Objective | None = None) -> list[tuple[int, float, float, float]]:
    """``(trial number, seconds since the first trial was queued, its final, best final so
    far)`` for each trained model, in the order the trials finished (failed ones count as
    trials)."""
    done = sorted((m for m in models if m.status.completed() and m.ended_at is not None),
                  key=lambda m: (m.ended_at, m.id))
    if not done:
        return []
    mode = check_mode(mode)
    start = min(m.queued_at if m.queued_at is not None else m.ended_at or 0.0 for m in done)
    points: list[tuple[int, float, float, float]] = []
    best: float | None = None
    for trial, m in enumerate(done, 1):
        final = score(m.metrics.final, objective)  # a dict: its value under objective
        if m.status is not ModelStatus.Trained or not is_score(final):
            continue
        if best is None or better(final, best, mode):
            best = final
        points.append((trial, (m.ended_at or 0.0) - start, final, best))
    return points


def run_points(reader: RunReader, mode: str | None = None) -> tuple[
        Objective, list[tuple[int, float, float, float]]]:
    """The objective the plot of ``reader``'s run ranks by (the recorded one; ``mode``
    overrides its direction) and its :func:`best_so_far` points."""
    objective, _ = ranking_mode(objective_of(reader), mode)
    return objective, best_so_far(reader.models(), objective.mode, objective)


def plot_run(reader: RunReader, path: Path, *, mode: str | None = None) -> int:
    """Write the two plots to ``path`` (the Pareto front for a run with several
    objectives, unless ``mode`` asks for one direction); returns how many trained models
    they show."""
    figure_type = _figure_type()
    objectives = objectives_of(reader)
    if len(objectives) > 1 and mode is None:
        return plot_front(reader, path, objectives, figure_type)
    objective, points = run_points(reader, mode)
    Figure = figure_type
    figure = Figure(figsize=(10, 4), layout="constrained")
    by_trial, by_time = figure.subplots(1, 2, sharey=True)
    trials, seconds, finals, best = ([p[i] for p in points] for i in range(4))
    minutes = [s / 60 for s in seconds]
    for axes, xs in ((by_trial, trials), (by_time, minutes)):
        axes.scatter(xs, finals, s=8, color="0.6", label="trial")
        axes.step(xs, best, where="post", label="best so far")
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
