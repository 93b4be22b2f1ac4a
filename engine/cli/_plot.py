"""Plots of a run file: best-so-far against trials and against time (matplotlib).
"Best" follows the run's objective (see engine._objective)."""

from __future__ import annotations

from pathlib import Path

from engine._objective import Mode, Objective, better, check_mode, is_score
from engine.cli._report import objective_of, ranking_mode
from engine.space import ModelStatus
from engine.store._read import RunReader, StoredModel

__all__ = ("PlotUnavailable", "best_so_far", "plot_run", "run_points")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def best_so_far(models: list[StoredModel],
                mode: Mode) -> list[tuple[int, float, float, float]]:
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
        final = m.metrics.final
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
    return objective, best_so_far(reader.models(), objective.mode)


def plot_run(reader: RunReader, path: Path, *, mode: str | None = None) -> int:
    """Write the two plots to ``path``; returns how many trained models they show."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("plotting needs matplotlib: pip install 'nas-engine[plot]' "
                              "(or pip install matplotlib)") from None
    objective, points = run_points(reader, mode)
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
