"""Schedulers: strategies that act on intermediate results, around any proposer
(see :mod:`strategies.schedulers._base`).

- :class:`ASHA` and :class:`Hyperband`, stopping variant (``_stopping``): a model that
  is not in the top of a rung is stopped there.
- :class:`PromotionASHA` and :class:`PromotionHyperband`, promotion variant
  (``_promotion``, rungs in ``_ladder``): models pause at rungs and the best paused ones
  are resumed to the next.
- :class:`MedianStopping` (``_median``): the median stopping rule.
"""

from __future__ import annotations

from strategies.schedulers._base import Scheduler as Scheduler
from strategies.schedulers._base import bracket_weights as bracket_weights
from strategies.schedulers._base import quantile as quantile
from strategies.schedulers._base import rung_levels as rung_levels
from strategies.schedulers._median import MedianStopping as MedianStopping
from strategies.schedulers._promotion import PromotionASHA as PromotionASHA
from strategies.schedulers._promotion import PromotionHyperband as PromotionHyperband
from strategies.schedulers._stopping import ASHA as ASHA
from strategies.schedulers._stopping import Hyperband as Hyperband

__all__ = ("ASHA", "Hyperband", "MedianStopping", "PromotionASHA", "PromotionHyperband",
           "Scheduler", "bracket_weights", "quantile", "rung_levels")
