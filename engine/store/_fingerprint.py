"""What a run trains, as a fingerprint: refuse to resume it with other settings.

The fingerprint of a frozen model is a flat ``{what: description}`` dict: the model's
class, its init arguments, the evaluator's function, its arguments, and every label of
the space with its domain. An argument whose frozen value is the value the sample chose
for one of its labels is recorded as ``SAMPLED`` (it varies from model to model, and a
frozen model no longer says which argument was a mutable); ``SAMPLED`` matches anything.

The run file keeps the fingerprint of its first model (``meta.fingerprint``). A resumed
run compares each space it submits from (once per space) with it; :class:`RunChanged`
says what differs, unless the engine was told to accept it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from engine._recipe import Call
from engine.evaluator import FunctionEvaluator
from engine.mutable import MutableDict
from engine.space import ExecutableModelSpace, RawFormatModelSpace, SimplifiedModelSpace
from engine.store._schema import RunFileError

__all__ = ("SAMPLED", "RunChanged", "differences", "fingerprint", "space_key")

SAMPLED = "<sampled>"
_MAIN = "__main__"
_MAIN_MODULES = frozenset({_MAIN, "__mp_main__", "__nas_engine_main__"})


class RunChanged(RunFileError):
    """A resumed run's new models differ from the ones the run was made with (another
    model, evaluator, argument or search space). ``differences`` lists what differs."""

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


def fingerprint(model: ExecutableModelSpace) -> dict[str, str]:
    """The fingerprint of a frozen model (see the module docstring)."""
    sample = model.sample or {}
    found: dict[str, str] = {}
    if isinstance(model, SimplifiedModelSpace):
        found["model"] = _callable_name(model.model.factory)
        found.update(_arguments("model", model.model, sample))
        found.update(_labels(model.mutables))
    elif isinstance(model, RawFormatModelSpace):
        found["model"] = _callable_name(type(model.model_space))
    else:
        found["model"] = _callable_name(type(model))
    evaluator = model.evaluator
    if isinstance(evaluator, FunctionEvaluator):
        found["evaluator"] = _callable_name(evaluator.function)
        found.update(_arguments("evaluator", Call(None, (), evaluator.kwargs), sample))
    elif evaluator is not None:
        found["evaluator"] = _callable_name(type(evaluator))
    for label in sample:
        found.setdefault(f"label {label!r}", "in the sample")
    return found


def space_key(model: ExecutableModelSpace) -> object | None:
    """An object every model frozen from the same space shares (None when unknown)."""
    if isinstance(model, SimplifiedModelSpace):
        return model.mutables
    if isinstance(model, RawFormatModelSpace):
        return model.model_space
    return None


def differences(stored: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """What differs between the run's fingerprint and a new model's, one line each."""
    lines = []
    for key in [*stored, *(k for k in new if k not in stored)]:
        old, now = stored.get(key), new.get(key)
        if old == now or SAMPLED in (old, now) or _same_symbol(old, now):
            continue
        if old is None:
            lines.append(f"{key}: {now} now, not in the run")
        elif now is None:
            lines.append(f"{key}: {old} in the run, not now")
        else:
            lines.append(f"{key}: {old} in the run, {now} now")
    return lines


def _same_symbol(old: str | None, now: str | None) -> bool:
    """``__main__:f`` and ``pkg.script:f`` name the same function: a script run as
    ``python -m pkg.script`` (or ``python script.py``) and the same file imported."""
    if old is None or now is None or ":" not in old or ":" not in now:
        return False
    (old_module, old_name), (now_module, now_name) = old.split(":", 1), now.split(":", 1)
    return old_name == now_name and _MAIN in (old_module, now_module)


def _callable_name(obj: Any) -> str:
    """``module:qualname`` of a class or function; for a callable object, of its class
    (its state, a seed say, may differ between runs)."""
    if isinstance(obj, functools.partial):
        return f"partial of {_callable_name(obj.func)}"
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None)
    if not isinstance(name, str):
        return f"{_callable_name(type(obj))} object"
    if isinstance(module, str):
        return f"{_MAIN if module in _MAIN_MODULES else module}:{name}"
    return name


def _arguments(owner: str, call: Call, sample: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    chosen = list(sample.values())
    named = [(f"{owner} argument {i}", v) for i, v in enumerate(call.args)]
    named += [(f"{owner} argument {k!r}", v) for k, v in call.kwargs.items()]
    for key, value in named:
        yield key, SAMPLED if _is_chosen(value, chosen) else repr(value)


def _is_chosen(value: Any, chosen: list[Any]) -> bool:
    try:
        return any(type(value) is type(c) and value == c for c in chosen)
    except Exception:  # an argument with an odd __eq__: treat it as fixed
        return False


def _labels(mutables: MutableDict) -> Iterable[tuple[str, str]]:
    for label, mutable in mutables.items():
        yield f"label {label!r}", repr(mutable)
