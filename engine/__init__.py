"""nas-engine: an async, event-driven engine for neural architecture search."""

from __future__ import annotations

from engine._context import ensure_frozen as ensure_frozen
from engine._eventlog import Subscription as Subscription
from engine._journal import RestoredModel as RestoredModel
from engine._objective import Objective as Objective
from engine._progress import Progress as Progress
from engine._progress import show_progress as show_progress
from engine._recipe import RecipeError as RecipeError
from engine.engine import Engine as Engine
from engine.engine import ModelHandle as ModelHandle
from engine.errors import BudgetExhausted as BudgetExhausted
from engine.errors import EngineClosed as EngineClosed
from engine.errors import InWorkerProcess as InWorkerProcess
from engine.errors import NasEngineError as NasEngineError
from engine.errors import NotRebuildable as NotRebuildable
from engine.errors import SearchFailed as SearchFailed
from engine.errors import SubscriberLagged as SubscriberLagged
from engine.errors import TrialError as TrialError
from engine.errors import TrialFailed as TrialFailed
from engine.errors import WorkerLost as WorkerLost
from engine.errors import WorkerStartFailed as WorkerStartFailed
from engine.evaluator import Evaluator as Evaluator
from engine.evaluator import FunctionEvaluator as FunctionEvaluator
from engine.evaluator import load_checkpoint as load_checkpoint
from engine.evaluator import report_final as report_final
from engine.evaluator import report_intermediate as report_intermediate
from engine.evaluator import save_checkpoint as save_checkpoint
from engine.mutable import Categorical as Categorical
from engine.mutable import DuplicateLabelError as DuplicateLabelError
from engine.mutable import LabeledMutable as LabeledMutable
from engine.mutable import Mutable as Mutable
from engine.mutable import MutableDict as MutableDict
from engine.mutable import MutableExpression as MutableExpression
from engine.mutable import MutableList as MutableList
from engine.mutable import Numerical as Numerical
from engine.mutable import Sample as Sample
from engine.mutable import SampleMissingError as SampleMissingError
from engine.mutable import SampleValidationError as SampleValidationError
from engine.mutable import choice as choice
from engine.mutable import lognormal as lognormal
from engine.mutable import loguniform as loguniform
from engine.mutable import normal as normal
from engine.mutable import qlognormal as qlognormal
from engine.mutable import qloguniform as qloguniform
from engine.mutable import qnormal as qnormal
from engine.mutable import quniform as quniform
from engine.mutable import randint as randint
from engine.mutable import uniform as uniform
from engine.space import BaseModelSpace as BaseModelSpace
from engine.space import ExecutableModelSpace as ExecutableModelSpace
from engine.space import Metrics as Metrics
from engine.space import ModelStatus as ModelStatus
from engine.space import RawFormatModelSpace as RawFormatModelSpace
from engine.space import SimplifiedModelSpace as SimplifiedModelSpace
from engine.space import current_model as current_model
from engine.space import model_context as model_context
from engine.store import RunChanged as RunChanged
from engine.store import RunFileError as RunFileError
from engine.store import RunStoreClosed as RunStoreClosed
from engine.store import UnknownEventKind as UnknownEventKind
from engine.workers import InlinePool as InlinePool
from engine.workers import ProcessPool as ProcessPool
from engine.workers import RayPool as RayPool
from engine.workers import TrialOutput as TrialOutput
from engine.workers import WorkerPool as WorkerPool

__all__ = (
    "BaseModelSpace",
    "BudgetExhausted",
    "Engine",
    "EngineClosed",
    "InWorkerProcess",
    "NasEngineError",
    "NotRebuildable",
    "RestoredModel",
    "RunChanged",
    "RunFileError",
    "RunStoreClosed",
    "UnknownEventKind",
    "SearchFailed",
    "TrialError",
    "InlinePool",
    "ModelHandle",
    "Objective",
    "ProcessPool",
    "Progress",
    "RayPool",
    "SubscriberLagged",
    "Subscription",
    "TrialFailed",
    "TrialOutput",
    "WorkerLost",
    "WorkerPool",
    "WorkerStartFailed",
    "Categorical",
    "DuplicateLabelError",
    "Evaluator",
    "ExecutableModelSpace",
    "FunctionEvaluator",
    "LabeledMutable",
    "Metrics",
    "ModelStatus",
    "Mutable",
    "MutableDict",
    "MutableExpression",
    "MutableList",
    "Numerical",
    "RawFormatModelSpace",
    "RecipeError",
    "Sample",
    "SampleMissingError",
    "SampleValidationError",
    "SimplifiedModelSpace",
    "choice",
    "current_model",
    "ensure_frozen",
    "lognormal",
    "loguniform",
    "model_context",
    "normal",
    "qlognormal",
    "qloguniform",
    "qnormal",
    "quniform",
    "randint",
    "load_checkpoint",
    "report_final",
    "report_intermediate",
    "save_checkpoint",
    "show_progress",
    "uniform",
)
