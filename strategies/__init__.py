"""Search strategies for nas-engine: each proposes samples, submits the frozen models to
an :class:`engine.Engine` and learns from the results."""

from __future__ import annotations

from strategies.base import NOT_YET as NOT_YET
from strategies.base import BaseStrategy as BaseStrategy
from strategies.base import Mode as Mode
from strategies.base import NotYet as NotYet
from strategies.base import RankedSample as RankedSample
from strategies.base import StopReason as StopReason
from strategies.base import Strategy as Strategy
from strategies.base import fidelity as fidelity
from strategies.base import pareto_front as pareto_front
from strategies.base import rank as rank
from strategies.base import ranked_samples as ranked_samples
from strategies.base import sample_key as sample_key
from strategies.base import search as search
from strategies.bayes_opt import BayesOpt as BayesOpt
from strategies.evolution import Individual as Individual
from strategies.evolution import Reevaluation as Reevaluation
from strategies.evolution import RegularizedEvolution as RegularizedEvolution
from strategies.grid import GridSearch as GridSearch
from strategies.model_based import ModelBased as ModelBased
from strategies.multi_objective import MultiObjectiveEvolution as MultiObjectiveEvolution
from strategies.multi_objective import MultiObjectiveRandomSearch as MultiObjectiveRandomSearch
from strategies.multi_objective import ParetoArchive as ParetoArchive
from strategies.random_search import RandomSearch as RandomSearch
from strategies.schedulers import ASHA as ASHA
from strategies.schedulers import Hyperband as Hyperband
from strategies.schedulers import MedianStopping as MedianStopping
from strategies.schedulers import PromotionASHA as PromotionASHA
from strategies.schedulers import PromotionHyperband as PromotionHyperband
from strategies.schedulers import Scheduler as Scheduler

__all__ = (
    "ASHA",
    "BaseStrategy",
    "BayesOpt",
    "GridSearch",
    "Hyperband",
    "Individual",
    "MedianStopping",
    "Mode",
    "ModelBased",
    "MultiObjectiveEvolution",
    "MultiObjectiveRandomSearch",
    "NOT_YET",
    "NotYet",
    "ParetoArchive",
    "PromotionASHA",
    "PromotionHyperband",
    "RandomSearch",
    "RankedSample",
    "Reevaluation",
    "RegularizedEvolution",
    "Scheduler",
    "StopReason",
    "Strategy",
    "fidelity",
    "pareto_front",
    "rank",
    "ranked_samples",
    "sample_key",
    "search",
)
