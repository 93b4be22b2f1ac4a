"""Plots of a run file: best-so-far against trials and against time (matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

from engine._store_read import StoredModel
from engine.space import ModelStatus

__all__ = ("PlotUnavailable", "best_so_far", "plot_run")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def best_so_far(models: list[StoredModel],
                mode: str) -> list[tuple[int, float, float, float]]:
    """``(trial number, seconds since the first trial was queued, its final, best final so
    far)`` for each trained model, in the order the trials finished (failed ones count as
    trials)."""
    done = sorted((m for m in models if m.status.completed() and m.ended_at is not None),
                  key=lambda m: (m.ended_at, m.id))
    if not done:
        return []
    start = min(m.queued_at if m.queued_at is not None else m.ended_at or 0.0 for m in done)
    points: list[tuple[int, float, float, float]] = []
    best = math.nan
    for trial, m in enumerate(done, 1):
        final = m.metrics.final
        if m.status is not ModelStatus.Trained or final is None or math.isnan(final):
            continue
        if math.isnan(best) or (final > best if mode == "max" else final < best):
            best = final
        points.append((trial, (m.ended_at or 0.0) - start, final, best))
    return points


def plot_run(models: list[StoredModel], path: Path, *, mode: str, title: str) -> int:
    """Write the two plots to ``path``; returns how many trained models they show."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("plotting needs matplotlib: pip install 'nas-engine[plot]' "
                              "(or pip install matplotlib)") from None
    points = best_so_far(models, mode)
    figure = Figure(figsize=(10, 4), layout="constrained")
    by_trial, by_time = figure.subplots(1, 2, sharey=True)
    trials, seconds, finals, best = ([p[i] for p in points] for i in range(4))
    minutes = [s / 60 for s in seconds]
    for axes, xs in ((by_trial, trials), (by_time, minutes)):
        axes.scatter(xs, finals, s=8, color="0.6", label="trial")
        axes.step(xs, best, where="post", label="best so far")
        axes.grid(alpha=0.3)
    by_trial.set(xlabel="trials finished", ylabel=f"final metric ({mode} is better)")
    by_time.set(xlabel="minutes since the first trial was queued")
    by_trial.legend(loc="best")
    figure.suptitle(title)
    figure.savefig(path)
    return len(points)
