"""Schedulers: strategies that act on intermediate results, around any proposer.

- :mod:`._stopping`: :class:`ASHA` and :class:`Hyperband` (stopping variant) and
  :class:`MedianStopping`: a model that looks hopeless at a rung is stopped.
"""

from __future__ import annotations

from strategies.schedulers._stopping import ASHA as ASHA
from strategies.schedulers._stopping import MedianStopping as MedianStopping
from strategies.schedulers._stopping import Scheduler as Scheduler
from strategies.schedulers._stopping import quantile as quantile
from strategies.schedulers._stopping import rung_levels as rung_levels

__all__ = ("ASHA", "MedianStopping", "Scheduler", "quantile", "rung_levels")
